"""BoostAdapter against the official code (taolinzhang/BoostAdapter, ``--mode boostadapter``): per
sample, the final logits and both caches after the sample, in three official settings (ImageNet-A,
Caltech101, ImageNet), on a 64-sample stream where both caches fill and evict — the negative one
first-in-first-out, as the official ``update_cache`` (golden/boostadapter.safetensors)."""

from __future__ import annotations

import pytest
from online_parity import assert_logits, assert_same_entries, cache_entries, golden_entries, run_stream


@pytest.mark.parametrize("dataset", ["imagenet-a", "caltech101", "imagenet"])
def test_boostadapter_matches_the_official_code_sample_by_sample(golden, dataset):
    from rlcf_bench_baselines.boostadapter import BoostAdapter, BoostAdapterConfig

    g, meta = golden("boostadapter")
    assert dataset in meta["settings"].split(",") and int(meta[f"{dataset}/neg_evicted"]) > 0
    t = {key.split("/", 1)[1]: value for key, value in g.items() if key.startswith(f"{dataset}/")}
    method = BoostAdapter(BoostAdapterConfig())
    logits, states = run_stream(method, g, dataset,
                                lambda m: (cache_entries(m.pos, t["queries"]), cache_entries(m.neg, t["queries"])))
    for i, (pos, neg) in enumerate(states):
        assert_same_entries(pos, golden_entries(t["pos_ids"][i], t["pos_scores"][i]), f"sample {i}, positive cache")
        assert_same_entries(neg, golden_entries(t["neg_ids"][i], t["neg_scores"][i]), f"sample {i}, negative cache")
    assert_logits(logits, t["logits"])
