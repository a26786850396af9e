"""DMN-weak against TTA-VLM's port (``online_method/dmn_weak.py``, driven per sample as its
``online_tta.py`` does): per sample, the fused probabilities and the memory after the sample, on a
64-sample stream of centre-view features with a memory of 3 per class so that it fills and
replaces (golden/dmn_weak.safetensors). ``-m replace=always`` is the port's rule; the default
(DMN's own) keeps a confident entry against a less confident newcomer."""

from __future__ import annotations

import torch.nn.functional as F
from online_parity import assert_logits, assert_same_entries, cache_entries, golden_entries, run_stream

PROBS_ATOL = 1e-4
#: the port's entropy adds 1e-5 inside the logarithm: -Σ p log(p + 1e-5) vs the exact -Σ p log p
SCORE_ATOL = 1e-4


def _run(g, replace):
    from rlcf_bench_baselines.dmn_weak import DMNWeak, DMNWeakConfig

    config = DMNWeakConfig(memory_size=int(g["memory_ids"].shape[-1]), replace=replace)
    centre = F.normalize(g["views"][:, 0], dim=-1)
    return run_stream(DMNWeak(config), g, "imagenet-a", lambda m: cache_entries(m.memory, centre))


def test_dmn_weak_matches_the_official_port_with_its_replacement_rule(golden):
    g, meta = golden("dmn_weak")
    assert int(meta["memory_replaced"]) > 0
    probs, states = _run(g, "always")
    for i, memory in enumerate(states):
        assert_same_entries(memory, golden_entries(g["memory_ids"][i], g["memory_scores"][i]), f"sample {i}, memory",
                            score_atol=SCORE_ATOL)
    a = 1.0  # the port's fixed α; ours divides by 1 + a
    assert_logits(probs, g["output"] / (1 + a), atol=PROBS_ATOL)


def test_the_default_rule_never_lets_a_less_confident_sample_evict_an_entry(golden):
    g, _meta = golden("dmn_weak")
    _probs, states = _run(g, "better")
    ported = [golden_entries(g["memory_ids"][i], g["memory_scores"][i]) for i in range(len(states))]
    assert any(ours != theirs for ours, theirs in zip(states, ported)), "the stream never tells the two rules apart"
    for before, after in zip(states, states[1:]):
        for c, (old, new) in enumerate(zip(before, after)):
            for gone in set(old) - set(new):
                arrived = set(new) - set(old)
                assert len(arrived) == 1 and new[arrived.pop()] < old[gone], f"class {c}: entry {gone} evicted by a worse one"
