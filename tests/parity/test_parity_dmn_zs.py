"""DMN-ZS against the official code (YBZh/DMN, ``direct_inference`` zero-shot): per sample, the
fused probabilities and the memory after the sample, on a 64-sample stream with a memory of 3 per
class (the official ``--memory_size 3``) so that it fills and evicts (golden/dmn_zs.safetensors)."""

from __future__ import annotations

import torch.nn.functional as F
from online_parity import assert_logits, assert_same_entries, cache_entries, golden_entries, run_stream

PROBS_ATOL = 1e-4


def test_dmn_zs_matches_the_official_code_sample_by_sample(golden):
    from rlcf_bench_baselines.dmn_zs import DMNConfig, DMNZeroShot

    g, meta = golden("dmn_zs")
    assert int(meta["memory_evicted"]) > 0
    config = DMNConfig(memory_size=int(meta["memory_size"]))
    a = config.fusion_weight  # the official reports pred_vanilla + a·pred_global with a searched afterwards
    centre = F.normalize(g["views"][:, 0], dim=-1)
    probs, states = run_stream(DMNZeroShot(config), g, "imagenet-a", lambda m: cache_entries(m.memory, centre))
    for i, memory in enumerate(states):
        assert_same_entries(memory, golden_entries(g["memory_ids"][i], g["memory_scores"][i]), f"sample {i}, memory")
    assert_logits(probs, (g["pred_vanilla"] + a * g["pred_global"]) / (1 + a), atol=PROBS_ATOL)
