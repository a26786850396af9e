"""The GPU path: device selection, fp16 autocast with a GradScaler, synchronised timing, CUDA peak
memory. Skipped without CUDA (CI has none); run with `make test-all` on a GPU machine."""

from __future__ import annotations

import pytest
import torch

from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _run(host, store, method, device, batch_size=4, precision=None, **kw):
    runner = Runner(host, store, ExecutionOptions(device=device, batch_size=batch_size, fresh=True))
    over = (("n_views", 16),) + ((("precision", precision),) if precision else ())
    return runner.run(RunRequest("classification", "tiny-colors", method, "tiny-clip", protocol_overrides=over, **kw))


def test_zero_shot_on_cuda_matches_cpu(host, store):
    gpu = _run(host, store, "zero-shot", "cuda")
    run = store.get_run(gpu.run_id)
    assert run.device == "cuda" and run.protocol["precision"] == "amp-fp16"
    assert run.memory_kind == "cuda_own_peak" and run.peak_memory_mb > 0
    cpu = _run(host, store, "zero-shot", "cpu")
    g = [r.prediction for r in store.sample_records(gpu.run_id)]
    c = [r.prediction for r in store.sample_records(cpu.run_id)]
    assert sum(a == b for a, b in zip(g, c)) >= len(c) - 1  # fp16 may flip a near-tie


@pytest.mark.parametrize("method", ["tpt-prompt", "rlcf-prompt", "rlcf-image"])
def test_tta_methods_run_with_fp16_autocast_and_grad_scaler(host, store, method):
    kw = {"reward_model": "tiny-clip"} if method.startswith("rlcf") else {}
    result = _run(host, store, method, "cuda", **kw)
    assert result.n_samples == 16 and result.latency.ms_per_sample_mean > 0


def test_batched_episodes_equal_single_episodes_in_fp32(host, store):
    a = _run(host, store, "rlcf-prompt", "cuda", batch_size=1, precision="fp32", reward_model="tiny-clip")
    b = _run(host, store, "rlcf-prompt", "cuda", batch_size=8, precision="fp32", reward_model="tiny-clip")
    pa = [r.prediction for r in store.sample_records(a.run_id)]
    pb = [r.prediction for r in store.sample_records(b.run_id)]
    assert pa == pb
