"""Zero against the official code (FarinaMatteo/zero @ c609f7c), on fixed features.

Golden: the official ``Zero.zero`` votes per sample (``tools/parity/record_zero.py``). Our Zero
returns a vote share ``(votes + δ·p̄) / (Σ votes + δ)`` (``baselines/zero.py``), which differs from
``votes / Σ votes`` by at most ``δ / Σ votes`` (δ = 1e-3, Σ votes ≥ 19): the tolerance 1e-4 is that
bound, well below one vote (1/20), so the vote counts — selection of the 19 most confident views,
the votes and the tie-break — must be the official ones exactly.
"""

from __future__ import annotations

import pytest
import torch
from episodic_inputs import run_method

SHARE_ATOL = 1e-4


@pytest.mark.parametrize("batch_size", [4, 1])
def test_zero_votes_are_the_official_ones(batch_size, golden):
    from baselines.zero import Zero

    tensors, meta = golden("zero")
    votes = tensors["votes"]
    assert meta["repository"] == "FarinaMatteo/zero"
    assert (votes.sum(-1) > 19).sum() == 3, "the inputs exercise the tie-break on 3 samples"
    share = run_method(Zero, batch_size=batch_size)
    torch.testing.assert_close(share, votes / votes.sum(-1, keepdim=True), rtol=0, atol=SHARE_ATOL)
    assert torch.equal(share.argmax(-1), votes.argmax(-1))
