"""pytest-benchmark timing of one sample's 64 views (224×224 from a 500×375 image), with and
without AugMix, on the CPU: the per-sample cost of view generation inside a method's adapt.

Timed run::

    .venv/bin/pytest tests/bench/test_bench_views.py --benchmark-enable -s
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rlcf_bench.tta.views import make_views


@pytest.mark.benchmark
@pytest.mark.parametrize("augmix", [False, True])
def test_bench_views(benchmark: Any, augmix: bool) -> None:
    img = (torch.rand(3, 375, 500, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    seeds = iter(range(10**6))

    def views() -> torch.Tensor:
        return make_views(img, n_views=64, size=224, mean=(0.5,) * 3, std=(0.25,) * 3, augmix=augmix, seed=next(seeds))

    out = benchmark.pedantic(views, rounds=3 if benchmark.enabled else 1, iterations=1)
    assert out.shape == (64, 3, 224, 224) and torch.isfinite(out).all()
