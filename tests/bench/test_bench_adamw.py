"""pytest-benchmark timings of one AdamW step over what image-tower tuning updates: every
parameter of the micro student's image tower, one copy per sample for a batch of 4 (0.36 M
floats each, 66 tensors), on one thread as in a runner process. ``loop`` is torch's default on
the CPU (a Python loop of elementwise passes per tensor), ``fused`` what the tuners use
(``rlcf_bench.tta.optim``, ``docs/performance.md#adamw-on-the-cpu``). Timed run::

    .venv/bin/pytest tests/bench/test_bench_adamw.py --benchmark-enable -s
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

BATCH = 4


@pytest.fixture(scope="module")
def tower_copies() -> list[torch.Tensor]:
    from rlcf_bench.device import bench_device
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.session import ComponentSession

    visual = ComponentSession(PluginHost(), device=bench_device()).model("micro-student").visual
    return [p.detach().unsqueeze(0).repeat(BATCH, *[1] * p.dim()) for p in visual.parameters()]


@pytest.mark.benchmark
@pytest.mark.parametrize("kind", ["loop", "fused"])
def test_bench_adamw_step_over_the_image_tower(benchmark: Any, tower_copies: list[torch.Tensor], kind: str) -> None:
    from rlcf_bench.tta.optim import adamw

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = [torch.nn.Parameter(t.clone()) for t in tower_copies]
        g = torch.Generator().manual_seed(0)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * 1e-3
        opt = (adamw(params, lr=1e-5, weight_decay=5e-4) if kind == "fused"
               else torch.optim.AdamW(params, lr=1e-5, weight_decay=5e-4))
        assert bool(opt.defaults["fused"]) == (kind == "fused")
        benchmark.pedantic(opt.step, rounds=20 if benchmark.enabled else 1, iterations=1,
                           warmup_rounds=2 if benchmark.enabled else 0)
        moved = max(float((p.detach() - t).abs().max()) for p, t in zip(params, tower_copies))
        assert 0 < moved < 1e-3  # the step moved the parameters by about lr per step
        if benchmark.enabled:
            per_sample = benchmark.stats.stats.median * 1000 / BATCH
            benchmark.extra_info["ms_per_sample_step"] = round(per_sample, 3)
            print(f"\nAdamW {kind}: {per_sample:.2f} ms per sample and step (median)")
    finally:
        torch.set_num_threads(threads)
