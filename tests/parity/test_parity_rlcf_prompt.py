"""rlcf-prompt against RLCF's official code (mzhaoshuai/RLCF ``TPT/tpt_cls_rl.py`` with
``clip_reward.py``): per sample the confident views, the logits of view 0 after three steps and
the tuned context, batched and one by one (``tools/parity/record_prompt_tuning.py``;
docs/parity.md)."""

from __future__ import annotations

import pytest
from tpt_family_harness import assert_matches, described, run_method


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("name", ["rlcf_prompt", "rlcf_prompt_options", "rlcf_prompt_ensemble"])
def test_rlcf_prompt_matches_official(golden, tiny_official_clip, name, batch_size):
    """``rlcf_prompt``: the defaults; ``rlcf_prompt_options``: ``reward_std`` (the official
    ``--reward_amplify``), ``baseline=sample`` (``--process_batch``) and ``entropy_reg=0.1``
    (``--min_entropy_reg``); ``rlcf_prompt_ensemble``: the RLCF-S reward ensemble
    (``--multiple_reward_models 1``, three tiny CLIPs with the official confidence weights)."""
    from rlcf_bench_rlcf.rlcf_prompt import RLCFPrompt

    tensors, meta = golden(name)
    ours = run_method(RLCFPrompt, described(meta)["options"], tiny_official_clip, meta, batch_size,
                      tuned=lambda m: m.tuner.context.detach().clone())
    assert_matches(ours, tensors)
