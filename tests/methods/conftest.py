"""Fixtures for the TTA method tests: a tiny-clip method context and tiny-colors batches,
built without the runner (fp32 on CPU), plus a hermetic host that also loads the RLCF family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

METHOD_PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_rlcf")


@pytest.fixture
def method_host(make_host):
    return make_host(*METHOD_PLUGINS)


@pytest.fixture
def make_ctx() -> Callable[..., Any]:
    """``make_ctx(n_views=8, selection_ratio=0.25)`` → (MethodContext, task runtime)."""
    import torch

    from rlcf_bench.device import AmpHelper, SectionTimer
    from rlcf_bench.tta.reward import CLIPReward
    from rlcf_bench.types import MethodContext, RunProtocol
    from rlcf_bench_fixtures.tiny import TinyColors, load_tiny_clip
    from rlcf_bench_tasks.classification import ClassificationTask

    def build(n_views: int = 8, selection_ratio: float = 0.25, seed: int = 0, n: int = 8) -> tuple[Any, Any]:
        device = torch.device("cpu")
        model = load_tiny_clip("tiny-clip", device)
        reward = CLIPReward([(model, 1.0)], name="tiny-clip", policy_mean=model.mean, policy_std=model.std)
        protocol = RunProtocol(seed=seed, n_views=n_views, selection_ratio=selection_ratio, precision="fp32")
        task = ClassificationTask(TinyColors(n), protocol)
        ctx = MethodContext(task="classification", protocol=protocol, device=device, amp=AmpHelper(device, "fp32"),
                            model=model, reward_model=reward, seed=seed, **task.context_fields(model, device))
        ctx.timer = SectionTimer(device)
        return ctx, task

    return build


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two
    spinning OpenMP threads per process slow these tests down ~20× under load: use one."""
    import torch

    monkeypatch.setenv("RLCF_BENCH_THREADS", "1")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
