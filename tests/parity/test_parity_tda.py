"""TDA against the official code (kdiAAA/TDA): per sample, the final logits and both caches after
the sample, on a 64-sample stream where both caches fill and evict (golden/tda.safetensors)."""

from __future__ import annotations

from online_parity import assert_logits, assert_same_entries, cache_entries, golden_entries, run_stream


def test_tda_matches_the_official_code_sample_by_sample(golden):
    from rlcf_bench_baselines.tda import TDA, TDAConfig

    g, meta = golden("tda")
    assert meta["config"] == "imagenet-a" and int(meta["pos_evicted"]) > 0 and int(meta["neg_evicted"]) > 0
    method = TDA(TDAConfig())
    logits, states = run_stream(method, g, "imagenet-a",
                                lambda m: (cache_entries(m.pos, g["queries"]), cache_entries(m.neg, g["queries"])))
    assert_logits(logits, g["logits"])
    for i, (pos, neg) in enumerate(states):
        assert_same_entries(pos, golden_entries(g["pos_ids"][i], g["pos_scores"][i]), f"sample {i}, positive cache")
        assert_same_entries(neg, golden_entries(g["neg_ids"][i], g["neg_scores"][i]), f"sample {i}, negative cache")
