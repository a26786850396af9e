"""pytest-benchmark timings of one TTA episode per method, with a per-section breakdown.

Default run (``--benchmark-disable``): each benchmark executes once as a test. Timed run::

    .venv/bin/pytest tests/bench/test_bench_methods.py --benchmark-enable -s

The model is ``tiny-clip`` (policy and reward) with 16 views by default; set
``RLCF_BENCH_BENCH_MODEL=ViT-B-16`` to time open_clip's ViT-B-16 architecture with random
weights instead (CPU minutes). The breakdown (views, image_encoder, text_encoder, reward,
backward+optimizer; device-synchronised, nested sections are not exclusive: the reward's image
encoder is only in ``reward``) is printed and stored in ``benchmark.extra_info``. On a shared
machine these timings are noisy.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

METHODS = ("tpt-prompt", "rlcf-prompt", "tpt-image", "rlcf-image")


def _context(n_views: int, n_classes: int) -> tuple[Any, Any]:
    from rlcf_bench.device import AmpHelper, SectionTimer, bench_device, configure_threads
    from rlcf_bench.tta.reward import CLIPReward
    from rlcf_bench.types import MethodContext, RunProtocol
    from rlcf_bench_fixtures.tiny import TinyColors, load_tiny_clip
    from rlcf_bench_tasks.classification import ClassificationTask

    configure_threads()  # RLCF_BENCH_THREADS, as the runner does
    device = bench_device()  # RLCF_BENCH_DEVICE, else CUDA when available
    arch = os.environ.get("RLCF_BENCH_BENCH_MODEL", "tiny-clip")
    if arch == "tiny-clip":
        model = load_tiny_clip("tiny-clip", device)
        classnames = TinyColors.classnames
    else:
        import open_clip
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        from rlcf_bench.tta.vlm import OpenClipVLM

        torch.manual_seed(0)
        model = OpenClipVLM(open_clip.create_model(arch, pretrained=None), open_clip.get_tokenizer(arch),
                            name=f"{arch}@random", image_size=224)
        classnames = tuple(IMAGENET_CLASSNAMES[:n_classes])
    reward = CLIPReward([(model, 1.0)], name=model.name, policy_mean=model.mean, policy_std=model.std)
    protocol = RunProtocol(seed=0, n_views=n_views, selection_ratio=0.1, precision="fp32")
    dataset = TinyColors(4)
    task = ClassificationTask(dataset, protocol)
    ctx = MethodContext(task="classification", protocol=protocol, device=device, amp=AmpHelper(device, "fp32"),
                        model=model, reward_model=reward, seed=0, classnames=classnames,
                        templates=("a photo of a {}.",))
    ctx.timer = SectionTimer(device)
    ctx.cache["profile_timer"] = SectionTimer(device)
    return ctx, task


def _method(name: str, ctx: Any) -> Any:
    from rlcf_bench.plugins import PluginHost

    host = PluginHost(autoload=False, extra=["rlcf_bench_baselines", "rlcf_bench_rlcf"])
    spec = host.registry("methods").get(name)
    method = spec.method_cls(spec.config_cls())
    method.setup(ctx)
    return method


def time_episode(benchmark: Any, name: str, *, n_views: int = 16, n_classes: int = 200) -> tuple[Any, dict[str, float]]:
    """Benchmark one episode (adapt + predict of one sample, views lazy and timed) of method
    ``name``; returns the context and the mean per-section breakdown in ms (also printed and
    stored in ``benchmark.extra_info``)."""
    ctx, task = _context(n_views=n_views, n_classes=n_classes)
    method = _method(name, ctx)
    profile = ctx.cache["profile_timer"]
    totals: dict[str, float] = {}

    def setup() -> tuple[tuple[Any], dict[str, Any]]:
        batch = task.make_batch([(0, "tiny-0000")], ctx.model, ctx.device)  # views stay lazy (timed)
        method.reset()
        profile.reset()
        return (batch,), {}

    def episode(batch: Any) -> None:
        method.adapt(batch)
        method.predict(batch)
        for k, v in profile.totals.items():
            totals[k] = totals.get(k, 0.0) + v
        totals["_n"] = totals.get("_n", 0.0) + 1

    benchmark.pedantic(episode, setup=setup, rounds=3 if benchmark.enabled else 1, iterations=1,
                       warmup_rounds=1 if benchmark.enabled else 0)
    method.reset()
    n = totals.pop("_n")
    breakdown = {k: round(v / n, 3) for k, v in sorted(totals.items())}
    benchmark.extra_info["breakdown_ms"] = breakdown
    print(f"\n{name} ({ctx.model.name}, {ctx.protocol.n_views} views, {len(ctx.classnames)} classes) "
          f"breakdown ms/episode: {breakdown}")
    return ctx, breakdown


@pytest.mark.benchmark
@pytest.mark.parametrize("name", METHODS)
def test_bench_episode(benchmark: Any, name: str) -> None:
    _, breakdown = time_episode(benchmark, name)
    assert {"views", "image_encoder", "backward+optimizer"} <= set(breakdown)
    if "prompt" in name:
        assert "text_encoder" in breakdown
    if name.startswith("rlcf"):
        assert breakdown.get("reward", 0) > 0
