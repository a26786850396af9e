"""Zero against the official code (FarinaMatteo/zero @ c609f7c), on fixed features.

Golden: the official ``Zero.zero`` votes per sample (``tools/parity/record_zero.py``). Our Zero
returns a vote share ``(votes + δ·p̄) / (Σ votes + δ)`` (``baselines/rlcf_bench_baselines/zero.py``), which differs from
``votes / Σ votes`` by at most ``δ / Σ votes`` (δ = 1e-3, Σ votes ≥ 19): the tolerance 1e-4 is that
bound, well below one vote (1/20), so the vote counts — selection of the 19 most confident views,
the votes and the tie-break — must be the official ones exactly.

A crafted sample reaches the fallback tie-break (no discarded view predicts a tied class), where
the official code blanks the wrong classes (bitwise NOT of integer indices) and gives the extra
vote to class 3, which is not tied: ``tie_break=official`` reproduces those votes, the default
gives the vote to a tied class.
"""

from __future__ import annotations

import pytest
import torch
from episodic_inputs import drive, feature_context, fixed_features, run_method, zero_fallback_views

SHARE_ATOL = 1e-4


@pytest.mark.parametrize("batch_size", [4, 1])
def test_zero_votes_are_the_official_ones(batch_size, golden):
    from rlcf_bench_baselines.zero import Zero

    tensors, meta = golden("zero")
    votes = tensors["votes"]
    assert meta["repository"] == "FarinaMatteo/zero"
    assert (votes.sum(-1) > 19).sum() == 3, "the inputs exercise the tie-break on 3 samples"
    share = run_method(Zero, batch_size=batch_size)
    torch.testing.assert_close(share, votes / votes.sum(-1, keepdim=True), rtol=0, atol=SHARE_ATOL)
    assert torch.equal(share.argmax(-1), votes.argmax(-1))


def test_zero_fallback_tie_break_official_option(golden):
    from rlcf_bench_baselines.zero import Zero

    votes = golden("zero")[0]["votes_fallback"]
    assert votes[0].tolist()[:4] == [9.0, 9.0, 1.0, 1.0]  # the extra vote went to class 3, not a tied one
    ctx_text = fixed_features()[0]
    for rule, expected in (("official", votes), ("mask", None)):
        share = drive(Zero, {"tie_break": rule}, feature_context(ctx_text), zero_fallback_views(), 1).outputs
        counts = share * (share.new_tensor(20.0) + 1e-3)  # Σ votes = 19 kept + 1 extra, plus δ
        if expected is not None:
            torch.testing.assert_close(counts, expected, rtol=0, atol=SHARE_ATOL * 20)
        else:
            assert counts[0, 3] < 0.5 and counts[0, :2].max() > 9.5  # the extra vote goes to a tied class
