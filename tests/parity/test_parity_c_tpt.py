"""C-TPT against the official code (hee-suk-yoon/C-TPT @ 085e6c2) on the tiny CLIP, 1 and 3 steps.

Golden: the official per-sample loop's prediction on view 0, confident views and tuned context
(``tools/parity/record_c_tpt.py``; λ = 50, our default on a dataset that is no ImageNet variant).
Per sample: the same 6 confident views; logits (|z| ≤ 27) within 2e-4 absolute and the context
within 1e-6 in fp32 on the CPU (recorded: 3.4e-5 and 5.6e-8 — the two code bases encode the
prompts with other float orderings: cached view features, truncated prompts, batched contexts);
identical predictions. Batched (4) and one by one.
"""

from __future__ import annotations

import pytest
import torch
from episodic_inputs import run_prompt_method

LOGIT_ATOL = 2e-4
CONTEXT_ATOL = 1e-6


@pytest.mark.parametrize(("steps", "batch_size"), [(1, 4), (1, 1), (3, 4)])
def test_c_tpt_is_the_official_loop(steps, batch_size, golden, tiny_official_clip):
    from rlcf_bench_baselines.c_tpt import CTPT

    tensors, meta = golden("c_tpt")
    assert meta["repository"] == "hee-suk-yoon/C-TPT"
    expected = {k.rsplit("_", 1)[0]: v for k, v in tensors.items() if k.endswith(f"_steps{steps}")}
    ours = run_prompt_method(tiny_official_clip, CTPT, {"steps": steps}, batch_size=batch_size)
    assert torch.equal(ours.selected, expected["selected"].to(ours.selected.dtype))
    torch.testing.assert_close(ours.outputs, expected["logits"], rtol=0, atol=LOGIT_ATOL)
    assert torch.equal(ours.outputs.argmax(-1), expected["logits"].argmax(-1))
    torch.testing.assert_close(ours.tuned, expected["tuned"], rtol=0, atol=CONTEXT_ATOL)
    moved = (tensors["tuned_steps3"] - tensors["tuned_steps1"]).abs().amax()
    assert moved > 1e-3, "the steps move the context (AdamW moves each element by about lr = 5e-3 per step)"
