"""Configuration checks of the methods ported from TTA-VLM (OnZeta, DMN-weak, TTL): a bad ``-m``
value fails when the config is read, before a run is opened. Their behaviour is checked against the
official code in tests/parity/ (test_parity_{onzeta,dmn_weak,ttl}.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("module", "cls", "bad"), [
    ("onzeta", "OnZetaConfig", {"tau_t": 0.0}), ("onzeta", "OnZetaConfig", {"beta": 1.5}),
    ("onzeta", "OnZetaConfig", {"stream_length": 0}), ("onzeta", "OnZetaConfig", {"prompts": "cupl"}),
    ("dmn_weak", "DMNWeakConfig", {"replace": "sometimes"}), ("dmn_weak", "DMNWeakConfig", {"fusion_weight": -1.0}),
    ("ttl", "TTLConfig", {"rank": 0}), ("ttl", "TTLConfig", {"lr": 0.0}),
])
def test_bad_options_fail_when_the_config_is_read(module, cls, bad):
    import importlib

    config_cls = getattr(importlib.import_module(f"rlcf_bench_baselines.{module}"), cls)
    with pytest.raises(ValueError, match=next(iter(bad))):
        config_cls(**bad)


def test_onzeta_maps_the_ports_beta_and_alpha_to_dataset_names():
    from rlcf_bench.tta.online import official_family
    from rlcf_bench_baselines.onzeta import official_beta

    assert [official_beta(official_family(d)) for d in ("imagenet-a", "micro-sketch", "caltech101", "dtd")] == \
        [0.8, 0.8, 0.4, 0.4]
