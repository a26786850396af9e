"""The GPU path's host-side rules, checked on the CPU (docs/gpu.md): processes mapped to GPUs,
numeric switches owned by the precision and stored with each run, section timing without syncs,
and peak memory that is the run's own."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from rlcf_bench import device as dev
from rlcf_bench.gpus import RANKS_PER_GPU_ENV, DeviceMappingError, process_device, worker_devices


# ------------------------------------------------------------------ processes and GPUs
def test_ranks_get_one_gpu_each_and_more_ranks_than_gpus_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RANKS_PER_GPU_ENV, raising=False)
    assert [process_device(i, 4, None, what="ranks", gpus=4) for i in range(4)] == [f"cuda:{i}" for i in range(4)]
    with pytest.raises(DeviceMappingError, match="4 ranks on this node but 2 GPU") as info:
        process_device(0, 4, "cuda", what="ranks", gpus=2)
    assert "\n" not in str(info.value) and RANKS_PER_GPU_ENV in str(info.value)
    with pytest.raises(DeviceMappingError, match="would share it"):
        process_device(0, 2, "cuda:1", what="ranks", gpus=2)


def test_several_ranks_share_a_gpu_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RANKS_PER_GPU_ENV, "2")
    assert [process_device(i, 4, "auto", what="ranks", gpus=2) for i in range(4)] == ["cuda:0", "cuda:1"] * 2
    assert process_device(1, 2, "cuda:1", what="ranks", gpus=2) == "cuda:1"
    monkeypatch.setenv(RANKS_PER_GPU_ENV, "zero")
    with pytest.raises(DeviceMappingError, match="whole number"):
        process_device(0, 1, None, what="ranks", gpus=1)


def test_cpu_processes_are_left_alone() -> None:
    assert process_device(3, 8, "cpu", what="ranks", gpus=2) == "cpu"
    assert process_device(3, 8, None, what="ranks", gpus=0) == "cpu"
    assert worker_devices("cpu", 8, gpus=2) is None and worker_devices(None, 8, gpus=0) is None


def test_jobs_on_cuda_need_a_gpu_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RANKS_PER_GPU_ENV, raising=False)
    assert worker_devices(None, 2, gpus=2) == ["cuda:0", "cuda:1"]
    with pytest.raises(DeviceMappingError, match="3 workers on this node but 1 GPU"):
        worker_devices("cuda", 3, gpus=1)


# ------------------------------------------------------------------ precision settings
def test_fp32_turns_tf32_off_and_declares_cudnn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # torch's default
    settings = dev.apply_precision_settings("fp32")
    assert settings["tf32_cudnn"] is False and settings["tf32_matmul"] is False
    assert settings["cudnn_deterministic"] is True and settings["cudnn_benchmark"] is False
    assert dev.apply_precision_settings("tf32")["tf32_cudnn"] is True
    dev.apply_precision_settings("fp32")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        dev.resolve_precision("tf32", torch.device("cpu"))


def test_a_run_stores_its_precision_settings_and_memory_parts(runner: Any, store: Any) -> None:
    from rlcf_bench.runner import RunRequest

    result = runner.run(RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip",
                                   protocol_overrides=(("limit", 4), ("n_views", 4))))
    run = store.get_run(result.run_id)
    assert run.provenance["precision_settings"]["tf32_cudnn"] is False
    memory = run.provenance["memory"]
    assert memory["batch_size"] >= 1 and memory["models_mb"] > 0
    assert run.peak_memory_mb == pytest.approx(memory["models_mb"] + memory["working_set_mb"], abs=0.2)
    assert memory["per_sample_equivalent_mb"] <= memory["peak_mb"]


# ------------------------------------------------------------------ timing sections
def test_sections_never_synchronise(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(dev, "synchronize", lambda d: calls.append(d))
    timer = dev.SectionTimer(torch.device("cpu"))
    for _ in range(3):
        with timer.section("reward"):
            torch.ones(4).sum()
    assert calls == [] and timer.totals["reward"] >= 0.0


# ------------------------------------------------------------------ peak memory
def test_peak_memory_counts_the_runs_models_and_working_set_not_other_resident_models() -> None:
    own = torch.nn.Linear(2048, 2048)  # 16 MiB of parameters
    other = torch.nn.Linear(4096, 4096)  # 64 MiB, "loaded by an earlier run", still resident
    memory = dev.PeakMemory(torch.device("cpu"))
    memory.reset(own, batch_size=4)
    work = torch.ones(48 * 2**20 // 4)  # 48 MiB of working set
    work.add_(1)
    del work
    details = memory.details()
    assert details["models_mb"] == pytest.approx(16.0, abs=0.1)
    assert 40 <= details["working_set_mb"] < 48 + 40  # the 64 MiB resident model is not in it
    assert details["per_sample_equivalent_mb"] == pytest.approx(16.0 + details["working_set_mb"] / 4, abs=0.2)
    assert other.weight.numel() > 0


def test_model_bytes_counts_a_shared_tensor_once() -> None:
    class Wrapper:
        def __init__(self, module: torch.nn.Module) -> None:
            self.module = module

    a = torch.nn.Linear(10, 10)

    class Reward:
        members = [Wrapper(a), Wrapper(a)]

    assert dev.model_bytes(Wrapper(a), Reward()) == (100 + 10) * 4
