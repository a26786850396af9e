"""Long measurements of one ``rlcf-prompt`` episode on open_clip's ViT-B-16 architecture
(random weights: cost does not depend on the values). Marked ``slow``: not in the default run.

* **MFU** — model-FLOP utilisation: FLOPs of one episode (counted with
  ``torch.utils.flop_counter.FlopCounterMode``, with the fused multi-head-attention fast path
  switched off while counting, since the counter does not see inside it) divided by the
  episode's wall time, over this machine's measured fp32 matmul FLOP/s (best of a few
  4096×4096 products).
* **Peak memory** — a real ``Runner`` run of a 1000-class ``rlcf-prompt`` episode (1 sample,
  the protocol's 64 views), so the figure is the ``peak_memory_mb`` of the run row (peak RSS on
  CPU, CUDA max allocated on GPU).

Reward model = the same ViT-B-16 (the paper's ViT-L/14 would not fit this CPU budget; it adds
N_selected ViT-L/14 image forwards and no gradient memory). Run directly::

    .venv/bin/python tests/bench/test_measure_rlcf_prompt.py mfu [--classes 200 --views 16]
    .venv/bin/python tests/bench/test_measure_rlcf_prompt.py memory [--classes 1000 --views 64]

or ``.venv/bin/pytest -m slow tests/bench/test_measure_rlcf_prompt.py -s``. On a shared machine
the timings (and so the MFU) are noisy; the FLOP count and the memory are not.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytest
import torch

ARCH = "ViT-B-16"


def vitb16_random(name: str = f"{ARCH}@random", device: Any = "cpu") -> Any:
    import open_clip

    from rlcf_bench.tta.vlm import OpenClipVLM

    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None).to(device)
    return OpenClipVLM(model, open_clip.get_tokenizer(ARCH), name=name, image_size=224, version="random-seed0")


def synthetic_image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 300, 400, generator=g) * 255).to(torch.uint8)


class SyntheticClassification:
    """One (or a few) random images labelled among the first ``n_classes`` ImageNet class names."""

    templates = ("a photo of a {}.",)

    def __init__(self, n_classes: int = 1000, n: int = 1) -> None:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        self.classnames = tuple(IMAGENET_CLASSNAMES[:n_classes])
        self.n = n

    def __len__(self) -> int:
        return self.n

    def sample_id(self, index: int) -> str:
        return f"synthetic-{index:04d}"

    def label(self, index: int) -> int:
        return index % len(self.classnames)

    def load_image(self, index: int) -> torch.Tensor:
        return synthetic_image(index)


def matmul_flops(n: int = 4096, reps: int = 5) -> float:
    """Best fp32 FLOP/s of an ``n×n @ n×n`` product on the bench device (torch's thread setting on
    the CPU), device-synchronised."""
    from rlcf_bench.device import Clock, bench_device

    device = bench_device()
    clock = Clock(device)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = clock.now()
        a @ b
        best = min(best, (clock.now() - t0) / 1000.0)
    return 2 * n**3 / best


def _method_context(model: Any, dataset: Any, n_views: int, selection_ratio: float) -> tuple[Any, Any]:
    from rlcf_bench.device import AmpHelper, SectionTimer, bench_device
    from rlcf_bench.tta.reward import CLIPReward
    from rlcf_bench.types import MethodContext, RunProtocol
    from rlcf_bench_tasks.classification import ClassificationTask

    device = bench_device()
    protocol = RunProtocol(seed=0, n_views=n_views, selection_ratio=selection_ratio, precision="fp32")
    task = ClassificationTask(dataset, protocol)
    reward = CLIPReward([(model, 1.0)], name=model.name, policy_mean=model.mean, policy_std=model.std)
    ctx = MethodContext(task="classification", protocol=protocol, device=device, amp=AmpHelper(device, "fp32"),
                        model=model, reward_model=reward, seed=0, **task.context_fields(model, device))
    ctx.timer = SectionTimer(device)
    ctx.cache["profile_timer"] = SectionTimer(device)
    return ctx, task


def measure_mfu(n_classes: int = 200, n_views: int = 16, selection_ratio: float = 0.1,
                repeats: int = 2) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    from rlcf_bench.device import Clock, bench_device, configure_threads
    from rlcf_bench_rlcf.rlcf_prompt import RLCFPrompt, RLCFPromptConfig

    configure_threads()
    clock = Clock(bench_device())
    model = vitb16_random(device=bench_device())
    ctx, task = _method_context(model, SyntheticClassification(n_classes), n_views, selection_ratio)
    method = RLCFPrompt(RLCFPromptConfig())
    method.setup(ctx)
    item = [(0, "synthetic-0000")]

    def episode() -> None:
        batch = task.make_batch(item, model, ctx.device)
        method.reset()
        method.adapt(batch)
        method.predict(batch)

    # FLOPs of one episode (also the warm-up). The fused MHA fast path hides its FLOPs from the
    # counter, so it is off while counting (same arithmetic, decomposed).
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            episode()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    flops = counter.get_total_flops()
    times, breakdowns = [], []
    for _ in range(repeats):
        ctx.cache["profile_timer"].reset()
        t0 = clock.now()  # device-synchronised
        episode()
        times.append((clock.now() - t0) / 1000.0)
        breakdowns.append({k: round(v) for k, v in ctx.cache["profile_timer"].totals.items()})
    method.reset()
    peak = matmul_flops()
    best = min(times)
    achieved = flops / best
    return {
        "model": f"{ARCH} (random weights), reward = same {ARCH}", "classes": n_classes, "views": n_views,
        "selected": ctx.protocol.n_selected, "steps": method.config.steps, "prompt_tokens": method.tuner.learner.length,
        "threads": torch.get_num_threads(), "episode_tflop": round(flops / 1e12, 3),
        "episode_s": [round(t, 2) for t in times], "achieved_gflops": round(achieved / 1e9, 1),
        "matmul_gflops": round(peak / 1e9, 1), "mfu": round(achieved / peak, 3), "breakdown_ms": breakdowns[-1],
    }


def measure_memory(n_classes: int = 1000, n_views: int = 64, db: str | None = None) -> dict[str, Any]:
    import tempfile

    from rlcf_bench import DatasetSpec, ModelSpec, hookimpl
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    model_name, dataset_name = f"{ARCH}-random", f"synthetic-{n_classes}"

    class _Plugin:
        @hookimpl
        def rlcfb_register_models(self) -> list[ModelSpec]:
            return [ModelSpec(name=model_name, version="random-seed0",
                              load=lambda name, device: vitb16_random(name, device))]

        @hookimpl
        def rlcfb_register_datasets(self) -> list[DatasetSpec]:
            return [DatasetSpec(name=dataset_name, version="1", task_kinds=frozenset({"classification"}),
                                build=lambda root=None: SyntheticClassification(n_classes))]

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_rlcf", "rlcf_bench_models", _Plugin()])
    db = db or f"sqlite:///{tempfile.mkdtemp()}/memory.sqlite"
    store = Store(db)
    from rlcf_bench.device import bench_device

    runner = Runner(host, store, ExecutionOptions(device=str(bench_device()), batch_size=1, warmup=0, fresh=True))
    runner.session.model(model_name)
    rss_loaded = _rss_mb()
    req = RunRequest(task="classification", dataset=dataset_name, method="rlcf-prompt", model=model_name,
                     reward_model=model_name, protocol_overrides=(("n_views", n_views), ("limit", 1)))
    t0 = time.perf_counter()
    result = runner.run(req)
    run = store.get_run(result.run_id)
    assert run is not None
    return {
        "model": f"{ARCH} (random weights), reward = same model", "classes": n_classes, "views": n_views,
        "run_id": result.run_id, "db": db, "status": result.status, "peak_memory_mb": round(run.peak_memory_mb or 0),
        "memory_kind": run.memory_kind, "rss_after_model_load_mb": round(rss_loaded),
        "episode_peak_above_loaded_mb": round((run.peak_memory_mb or 0) - rss_loaded),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


@pytest.mark.slow
def test_measure_mfu_rlcf_prompt_vitb16() -> None:
    out = measure_mfu()
    print("\n" + json.dumps(out, indent=1))
    assert out["episode_tflop"] > 0 and 0 < out["mfu"] < 1.5


@pytest.mark.slow
def test_measure_peak_memory_rlcf_prompt_vitb16_1000_classes() -> None:
    out = measure_memory()
    print("\n" + json.dumps(out, indent=1))
    assert out["status"] == "finished" and out["peak_memory_mb"] > 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["mfu", "memory", "matmul"])
    parser.add_argument("--classes", type=int)
    parser.add_argument("--views", type=int)
    parser.add_argument("--db", help="store URL for the memory run (default: a temporary SQLite file)")
    args = parser.parse_args()
    if args.what == "mfu":
        result = measure_mfu(n_classes=args.classes or 200, n_views=args.views or 16)
    elif args.what == "memory":
        result = measure_memory(n_classes=args.classes or 1000, n_views=args.views or 64, db=args.db)
    else:
        result = {"matmul_gflops": round(matmul_flops() / 1e9, 1), "threads": torch.get_num_threads()}
    print(json.dumps(result, indent=1))
