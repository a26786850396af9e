"""The GPU path's checks (docs/gpu.md), on the tiny fixture: CPU vs CUDA fp32 equality of adapting
methods, fp16 vs fp32 agreement, fp16 batch invariance, run-twice determinism, the online
methods, retrieval and captioning, and no host-device sync inside a tuning method's batch
(``torch.cuda.set_sync_debug_mode``). Skipped without CUDA; ``make gpu-check`` runs them.

None of these has run on hardware yet (this project's CI has no GPU): the tolerances are the
ones the code's design implies, to be confirmed the first time they run.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_fixtures", "rlcf_bench_models")
ADAPTING = ("tpt-prompt", "rlcf-prompt", "tpt-image", "rlcf-image")
ONLINE = ("tda", "dmn-zs", "dpe", "boostadapter")


def _run(make_host: Any, store: Any, method: str, device: str, *, precision: str | None = None,
         batch_size: int = 4, task: str = "classification", dataset: str = "tiny-colors", model: str = "tiny-clip",
         reward: str | None = "tiny-clip-teacher", options: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    runner = Runner(make_host(*PLUGINS), store, ExecutionOptions(device=device, batch_size=batch_size, fresh=True))
    over: tuple[tuple[str, Any], ...] = (("limit", 8),)
    if task == "classification":
        over += (("n_views", 16),)
    if precision:
        over += (("precision", precision),)
    spec = runner.host.registry("methods").get(method, task)
    result = runner.run(RunRequest(task, dataset, method, model, method_options=options, protocol_overrides=over,
                                   reward_model=reward if "reward_model" in spec.requires else None))
    assert result.status == "finished"
    return {r.sample_id: r for r in store.sample_records(result.run_id)}


def _confidences(rows: dict[str, Any]) -> dict[str, float]:
    return {k: float(r.extra["confidence"]) for k, r in rows.items()}


@pytest.mark.parametrize("method", ADAPTING)
def test_cpu_and_cuda_agree_in_fp32(make_host: Any, store: Any, method: str) -> None:
    cpu = _run(make_host, store, method, "cpu", precision="fp32")
    gpu = _run(make_host, store, method, "cuda", precision="fp32")  # TF32 off (apply_precision_settings)
    assert [r.prediction for r in cpu.values()] == [gpu[k].prediction for k in cpu]
    c, g = _confidences(cpu), _confidences(gpu)
    assert max(abs(c[k] - g[k]) for k in c) < 1e-4


@pytest.mark.parametrize("method", ADAPTING)
def test_fp16_agrees_with_fp32(make_host: Any, store: Any, method: str) -> None:
    fp32 = _run(make_host, store, method, "cuda", precision="fp32")
    fp16 = _run(make_host, store, method, "cuda", precision="amp-fp16")
    assert sum(fp32[k].prediction == fp16[k].prediction for k in fp32) >= len(fp32) - 1  # a near-tie may flip


@pytest.mark.parametrize("method", ADAPTING)
def test_fp16_results_do_not_depend_on_the_batch_size(make_host: Any, store: Any, method: str) -> None:
    one = _run(make_host, store, method, "cuda", precision="amp-fp16", batch_size=1)
    eight = _run(make_host, store, method, "cuda", precision="amp-fp16", batch_size=8)
    assert [r.prediction for r in one.values()] == [eight[k].prediction for k in one]
    a, b = _confidences(one), _confidences(eight)
    assert max(abs(a[k] - b[k]) for k in a) < 1e-3  # other batch shapes pick other kernels


@pytest.mark.parametrize("method", ADAPTING)
def test_a_run_twice_stores_the_same_bits(make_host: Any, store: Any, method: str) -> None:
    first = _run(make_host, store, method, "cuda", precision="amp-fp16", batch_size=8)
    second = _run(make_host, store, method, "cuda", precision="amp-fp16", batch_size=8)
    assert {k: (r.prediction, r.extra) for k, r in first.items()} == {k: (r.prediction, r.extra) for k, r in second.items()}


@pytest.mark.parametrize("method", ONLINE)
def test_online_methods_run_on_cuda_as_on_cpu(make_host: Any, store: Any, method: str) -> None:
    cpu = _run(make_host, store, method, "cpu", precision="fp32")
    gpu = _run(make_host, store, method, "cuda", precision="fp32")
    assert sum(cpu[k].prediction == gpu[k].prediction for k in cpu) >= len(cpu) - 1


@pytest.mark.parametrize("method", ("zero-shot", "rlcf"))
def test_retrieval_on_cuda(make_host: Any, store: Any, method: str) -> None:
    options = (("steps", "1"), ("lr", "5e-3")) if method == "rlcf" else ()
    cpu = _run(make_host, store, method, "cpu", task="retrieval", dataset="tiny-captions", reward="tiny-clip",
               precision="fp32", options=options)
    gpu = _run(make_host, store, method, "cuda", task="retrieval", dataset="tiny-captions", reward="tiny-clip",
               precision="fp32", options=options)
    assert sum(cpu[k].prediction == gpu[k].prediction for k in cpu) >= len(cpu) - 1


@pytest.mark.parametrize("method", ("zero-shot", "rlcf"))
def test_captioning_on_cuda(make_host: Any, store: Any, method: str) -> None:
    options = (("steps", "1"), ("k", "3")) if method == "rlcf" else ()
    rows = _run(make_host, store, method, "cuda", task="captioning", dataset="tiny-captioning", model="tiny-captioner",
                reward="tiny-clip", options=options)
    assert rows and all(r.prediction for r in rows.values())


@pytest.mark.parametrize("method", ADAPTING)
def test_no_sync_inside_a_tuning_batch(make_host: Any, store: Any, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's own detector, around the method's adapt and predict after the first batch (views are
    generated before; fp32: amp-fp16 pays one sync per step for its overflow check, as GradScaler)."""
    spec = make_host(*PLUGINS).registry("methods").get(method, "classification")
    cls, seen = spec.method_cls, {"n": 0}
    adapt, predict = cls.adapt, cls.predict

    def strict(fn: Any) -> Any:
        def run(self: Any, batch: Any) -> Any:
            batch.views  # noqa: B018 - the views module's uploads are not this check's concern
            seen["n"] += 1
            if seen["n"] <= 2:  # the first batch (adapt + predict) builds per-run caches
                return fn(self, batch)
            torch.cuda.set_sync_debug_mode("error")
            try:
                return fn(self, batch)
            finally:
                torch.cuda.set_sync_debug_mode(0)

        return run

    monkeypatch.setattr(cls, "adapt", strict(adapt))
    monkeypatch.setattr(cls, "predict", strict(predict))
    _run(make_host, store, method, "cuda", precision="fp32", batch_size=4)
    assert seen["n"] >= 4
