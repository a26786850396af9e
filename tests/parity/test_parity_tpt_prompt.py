"""tpt-prompt against TPT's official code (azshue/TPT, ``tpt_classification.py``): per sample the
confident views, the logits of view 0 after three steps and the tuned context, batched and one by
one (``tools/parity/record_prompt_tuning.py``; docs/parity.md)."""

from __future__ import annotations

import pytest
from tpt_family_harness import assert_matches, described, run_method


@pytest.mark.parametrize("batch_size", [1, 4])
def test_tpt_prompt_matches_official(golden, tiny_official_clip, batch_size):
    from rlcf_bench_baselines.tpt_prompt import TPTPrompt

    tensors, meta = golden("tpt_prompt")
    ours = run_method(TPTPrompt, described(meta)["options"], tiny_official_clip, meta, batch_size,
                      tuned=lambda m: m.tuner.context.detach().clone())
    assert_matches(ours, tensors)
