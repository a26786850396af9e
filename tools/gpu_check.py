"""One call that checks the GPU path on a lent one-GPU machine and prints one summary
(``make gpu-check``; docs/gpu.md#the-check). No internet is needed: with ``--wheels DIR`` (carried
wheels) a missing ``.venv`` is created and the project installed from them.

Steps, each timed, all within about 8 minutes on one H100:

1. install (skipped when ``.venv`` exists; never in ``--dry-run``);
2. the ``gpu``-marked tests (``tests/gpu``);
3. one paper-size episode per main method — random open_clip ViT-B-16 policy, random ViT-L-14
   reward, 200 classes, 64 views — ms per sample (the episode after one warm-up) and stored peak GiB;
4. CPU vs CUDA fp32 equality of an adapting method on the tiny model, with TF32 off (``fp32``)
   and on (``tf32``);
5. ``amp-fp16`` batch invariance (batch 1 vs 8) and run-twice determinism.

``--dry-run`` runs the same steps on the CPU with tiny sizes (the tiny model for every role, 8
views, a few samples; the "CUDA" side of step 4 is the CPU again), so the script itself is tested
where there is no GPU (``tests/host/test_gpu_check.py``). ``--json PATH`` also writes the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MAIN_METHODS = ("zero-shot", "tpt-prompt", "rlcf-prompt", "tpt-image", "rlcf-image")
NEEDS_REWARD = {"rlcf-prompt", "rlcf-image"}
TINY = "tiny-clip"
TINY_DATA = "tiny-colors"


class Step:
    """One line of the summary: name, ok, what was measured, seconds."""

    def __init__(self, name: str) -> None:
        self.name, self.ok, self.detail, self.seconds = name, False, "", 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 1)}


def run_step(steps: list[Step], name: str, fn: Callable[[], tuple[bool, str]]) -> None:
    step = Step(name)
    t0 = time.perf_counter()
    try:
        step.ok, step.detail = fn()
    except Exception as exc:  # a failed step is reported, the others still run
        step.ok, step.detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    step.seconds = time.perf_counter() - t0
    steps.append(step)
    print(f"[{'ok' if step.ok else 'FAIL':4}] {name} ({step.seconds:.0f} s): {step.detail}", flush=True)


# ------------------------------------------------------------------ 1. install
def install(wheels: str | None) -> tuple[bool, str]:
    venv = REPO / ".venv"
    if (venv / "bin" / "python").exists():
        return True, "using the existing .venv"
    if not wheels:
        return False, "no .venv and no --wheels DIR to install from"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", wheels]
    subprocess.run([*pip, "-e", ".[dev]", "-e", "plugins/rlcf-bench-example"], check=True, cwd=REPO)
    return True, f"installed from {wheels} (no index)"


# ------------------------------------------------------------------ 2. gpu tests
def gpu_tests(python: str, dry_run: bool) -> tuple[bool, str]:
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/gpu"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=420)
    tail = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    ok = done.returncode == 0 or (dry_run and done.returncode == 5)  # 5: nothing collected
    return ok, tail


# ------------------------------------------------------------------ the bench, in process
class Bench:
    """A host with the paper-size models and a synthetic 200-class dataset, one store."""

    def __init__(self, device: str, dry_run: bool) -> None:
        from rlcf_bench.plugins import PluginHost
        from rlcf_bench.store import Store

        self.device, self.dry_run = device, dry_run
        self.store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='gpu-check-')}/check.sqlite")
        self.host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf",
                                                      "rlcf_bench_models", "rlcf_bench_fixtures", _paper_plugin()])
        self.sessions: dict[str, Any] = {}

    def run(self, method: str, *, device: str | None = None, precision: str | None = None, batch_size: int = 8,
            limit: int = 8, views: int = 8, model: str = TINY, reward: str = TINY, dataset: str = TINY_DATA,
            warmup: int = 0) -> Any:
        from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
        from rlcf_bench.session import ComponentSession

        dev = device or self.device
        options = ExecutionOptions(device=dev, batch_size=batch_size, warmup=warmup, fresh=True)
        runner = Runner(self.host, self.store, options, session=self.sessions.get(dev))
        self.sessions.setdefault(dev, runner.session)
        assert isinstance(runner.session, ComponentSession)
        over: tuple[tuple[str, Any], ...] = (("n_views", views), ("limit", limit))
        if precision:
            over += (("precision", precision),)
        req = RunRequest("classification", dataset, method, model, reward_model=reward if method in NEEDS_REWARD else None,
                         protocol_overrides=over)
        result = runner.run(req)
        if result.status != "finished":
            raise RuntimeError(f"{method} on {dev}: run {result.status}")
        return result

    def rows(self, result: Any) -> dict[str, tuple[int | None, float]]:
        return {r.sample_id: (r.prediction, float(r.extra.get("confidence", float("nan"))))
                for r in self.store.sample_records(result.run_id)}


def _paper_plugin() -> Any:
    """ViT-B-16 and ViT-L-14 with random weights (cost does not depend on the values) and a
    synthetic 200-class dataset of random images."""
    from rlcf_bench import DatasetSpec, ModelSpec, hookimpl

    def load(arch: str) -> Callable[..., Any]:
        def build(name: str, device: Any) -> Any:
            import open_clip
            import torch

            from rlcf_bench.tta.vlm import OpenClipVLM

            torch.manual_seed(0)
            model = open_clip.create_model(arch, pretrained=None).to(device)
            return OpenClipVLM(model, open_clip.get_tokenizer(arch), name=name, image_size=224, version="random-seed0")

        return build

    class Synthetic:
        templates = ("a photo of a {}.",)

        def __init__(self, n_classes: int = 200, n: int = 16) -> None:
            from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

            self.classnames, self.n = tuple(IMAGENET_CLASSNAMES[:n_classes]), n

        def __len__(self) -> int:
            return self.n

        def sample_id(self, index: int) -> str:
            return f"synthetic-{index:04d}"

        def label(self, index: int) -> int:
            return index % len(self.classnames)

        def load_image(self, index: int) -> Any:
            import torch

            g = torch.Generator().manual_seed(index)
            return (torch.rand(3, 300, 400, generator=g) * 255).to(torch.uint8)

    class Plugin:
        @hookimpl
        def rlcfb_register_models(self) -> list[Any]:
            return [ModelSpec(name="ViT-B-16-random", version="random-seed0", load=load("ViT-B-16")),
                    ModelSpec(name="ViT-L-14-random", version="random-seed0", load=load("ViT-L-14"))]

        @hookimpl
        def rlcfb_register_datasets(self) -> list[Any]:
            return [DatasetSpec(name="synthetic-200", version="1", task_kinds=frozenset({"classification"}),
                                build=lambda root=None: Synthetic())]

    return Plugin()


# ------------------------------------------------------------------ 3. paper-size episodes
def paper_episodes(bench: Bench) -> tuple[bool, str]:
    if bench.dry_run:  # tiny sizes: the tiny model in every role, 8 views
        size: dict[str, Any] = {"limit": 2, "views": 8, "batch_size": 1, "warmup": 1}
    else:
        size = {"limit": 2, "views": 64, "batch_size": 1, "warmup": 1, "model": "ViT-B-16-random",
                "reward": "ViT-L-14-random", "dataset": "synthetic-200"}
    parts = []
    for method in MAIN_METHODS:
        result = bench.run(method, **size)
        run = bench.store.get_run(result.run_id)
        memory = (run.provenance or {}).get("memory", {}) if run else {}
        gib = (run.peak_memory_mb or 0.0) / 1024 if run else 0.0
        parts.append(f"{method} {result.latency.ms_per_sample_mean:.0f} ms/sample, {gib:.2f} GiB "
                     f"(working set {memory.get('working_set_mb', 0) / 1024:.2f} GiB)")
    return True, "; ".join(parts)


# ------------------------------------------------------------------ 4. CPU vs CUDA fp32
def cpu_vs_device(bench: Bench) -> tuple[bool, str]:
    cpu = bench.rows(bench.run("tpt-prompt", device="cpu", precision="fp32"))
    lines, ok = [], True
    for precision in ("fp32", "tf32"):
        if bench.dry_run and precision == "tf32":
            continue  # TF32 exists on CUDA only
        dev = bench.rows(bench.run("tpt-prompt", precision=precision))
        same = sum(cpu[k][0] == dev[k][0] for k in cpu)
        diff = max(abs(cpu[k][1] - dev[k][1]) for k in cpu)
        if precision == "fp32":
            ok = ok and same == len(cpu) and diff <= 1e-4
        lines.append(f"{precision}: {same}/{len(cpu)} predictions equal, max |Δconfidence| {diff:.2e}")
    return ok, "; ".join(lines)


# ------------------------------------------------------------------ 5. fp16 batch invariance, determinism
def fp16_invariance(bench: Bench) -> tuple[bool, str]:
    one = bench.rows(bench.run("tpt-prompt", precision="amp-fp16", batch_size=1))
    eight = bench.rows(bench.run("tpt-prompt", precision="amp-fp16", batch_size=8))
    same = sum(one[k][0] == eight[k][0] for k in one)
    diff = max(abs(one[k][1] - eight[k][1]) for k in one)
    again = bench.rows(bench.run("tpt-prompt", precision="amp-fp16", batch_size=8))
    twice = again == eight
    ok = same == len(one) and twice
    return ok, (f"batch 1 vs 8: {same}/{len(one)} predictions equal, max |Δconfidence| {diff:.2e}; "
                f"run twice: {'identical' if twice else 'DIFFERENT'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU with tiny sizes")
    parser.add_argument("--wheels", default=os.environ.get("RLCF_BENCH_WHEELS"), help="carried wheels to install from")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    steps: list[Step] = []
    t0 = time.perf_counter()
    if not args.dry_run and "GPU_CHECK_IN_VENV" not in os.environ:
        run_step(steps, "install", lambda: install(args.wheels))
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists() and "GPU_CHECK_IN_VENV" not in os.environ and Path(sys.prefix).resolve() != venv_python.parents[1].resolve():
        env = {**os.environ, "GPU_CHECK_IN_VENV": "1"}  # the rest runs in the installed environment
        rest = list(argv if argv is not None else sys.argv[1:])
        return subprocess.run([str(venv_python), __file__, *rest], env=env, cwd=REPO).returncode
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device (use --dry-run to check the script on the CPU)", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    print(f"gpu-check on {name}, torch {torch.__version__}", flush=True)
    run_step(steps, "gpu-marked tests", lambda: gpu_tests(sys.executable, args.dry_run))
    bench = Bench(device, args.dry_run)
    run_step(steps, "paper-size episode per main method", lambda: paper_episodes(bench))
    run_step(steps, "CPU vs CUDA fp32 (TF32 off, on)", lambda: cpu_vs_device(bench))
    run_step(steps, "fp16 batch invariance and determinism", lambda: fp16_invariance(bench))
    total = time.perf_counter() - t0
    ok = all(s.ok for s in steps)
    summary = {"device": name, "dry_run": args.dry_run, "ok": ok, "seconds": round(total, 1),
               "steps": [s.as_dict() for s in steps]}
    print("\n== gpu-check summary ==")
    for s in steps:
        print(f"{'ok  ' if s.ok else 'FAIL'}  {s.name}: {s.detail}")
    print(f"{'all ok' if ok else 'FAILED'} in {total:.0f} s on {name}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
