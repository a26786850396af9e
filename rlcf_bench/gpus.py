"""Which GPU each process of a job uses: ``torchrun`` ranks and ``run -j N`` workers.

A GPU shared by several processes makes every timing on it meaningless (and can run it out of
memory), so sharing happens only when asked: ``RLCF_BENCH_RANKS_PER_GPU=K`` lets K ranks (or
workers) share one GPU. Otherwise a job with more processes than GPUs is refused with one line
before any process group forms or any store is written (docs/gpu.md#processes).
"""

from __future__ import annotations

import os

RANKS_PER_GPU_ENV = "RLCF_BENCH_RANKS_PER_GPU"


class DeviceMappingError(ValueError):
    """The processes of a job cannot each get a GPU of their own (the message is one line)."""


def ranks_per_gpu() -> int:
    """Processes allowed on one GPU (``RLCF_BENCH_RANKS_PER_GPU``, default 1)."""
    raw = os.environ.get(RANKS_PER_GPU_ENV, "1")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise DeviceMappingError(f"{RANKS_PER_GPU_ENV}={raw!r}: expected a whole number >= 1")
    return value


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def process_device(index: int, count: int, requested: str | None, *, what: str, gpus: int | None = None) -> str:
    """The device of process ``index`` of ``count`` on this node (a rank's ``LOCAL_RANK``, a
    worker's number): GPU ``index mod gpus`` when CUDA is used, refused when more processes than
    ``gpus × RLCF_BENCH_RANKS_PER_GPU`` would share them; ``requested`` CPU devices pass unchanged."""
    gpus = _cuda_count() if gpus is None else gpus
    if requested not in (None, "auto", "cuda") and not str(requested).startswith("cuda"):
        return str(requested)
    if gpus == 0:
        if requested not in (None, "auto"):
            raise DeviceMappingError(f"--device {requested}: CUDA is not available on this machine")
        return "cpu"
    share = ranks_per_gpu()
    if requested not in (None, "auto", "cuda"):  # one named GPU for every process
        if count > share:
            raise DeviceMappingError(
                f"{count} {what} on one GPU ({requested}) would share it and skew every timing: use one "
                f"{what[:-1]} per GPU, or set {RANKS_PER_GPU_ENV}={count} to share it on purpose")
        return str(requested)
    if count > gpus * share:
        raise DeviceMappingError(
            f"{count} {what} on this node but {gpus} GPU(s): use at most {gpus * share} (one per GPU), or set "
            f"{RANKS_PER_GPU_ENV}=K to let K share a GPU on purpose (their timings then interfere)")
    return f"cuda:{index % gpus}"


def worker_devices(requested: str | None, jobs: int, gpus: int | None = None) -> list[str] | None:
    """The device of each of ``jobs`` ``-j`` workers, or None when they run on the CPU."""
    gpus = _cuda_count() if gpus is None else gpus
    on_cpu = requested is not None and requested != "auto" and not requested.startswith("cuda")
    if on_cpu or gpus == 0:
        return None
    return [process_device(i, jobs, requested, what="workers", gpus=gpus) for i in range(jobs)]
