"""MTA against the official code (MaxZanella/MTA @ cafafdf), on fixed features.

Golden: the official ``solve_mta`` logits per sample (``tools/parity/record_mta.py``). Tolerance:
logits (``100 · cos``, |z| ≤ 24) within 2e-4 absolute in fp32 on the CPU — the two solvers run the
same 5 × (5 + 5) fixed-point iterations with other float orderings (ours: exact pairwise distances,
samples batched; recorded max |Δ| 4.6e-5) — and identical predictions.
"""

from __future__ import annotations

import pytest
import torch
from episodic_inputs import run_method

LOGIT_ATOL = 2e-4


@pytest.mark.parametrize("batch_size", [4, 1])
def test_mta_logits_are_the_official_ones(batch_size, golden):
    from rlcf_bench_baselines.mta import MTA

    tensors, meta = golden("mta")
    assert meta["repository"] == "MaxZanella/MTA"
    logits = run_method(MTA, batch_size=batch_size)
    torch.testing.assert_close(logits, tensors["logits"], rtol=0, atol=LOGIT_ATOL)
    assert torch.equal(logits.argmax(-1), tensors["logits"].argmax(-1))
