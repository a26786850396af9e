"""Device selection, mixed precision and device-synchronised timing."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


def select_device(requested: str | None = None) -> torch.device:
    """``--device`` wins; otherwise CUDA when available, else CPU."""
    from .errors import BenchError

    if requested and requested != "auto":
        try:
            dev = torch.device(requested)
        except RuntimeError as exc:
            raise BenchError(f"--device {requested}", "not a device name", "use cpu, cuda, cuda:1 or auto") from exc
        if dev.type not in {"cpu", "cuda"}:
            raise BenchError(f"--device {requested}", f"device type {dev.type!r} is not supported", "use cpu or cuda")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BenchError(f"--device {requested}", "CUDA is not available on this machine",
                             "use --device cpu, or leave --device out to pick CUDA only when present")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BenchError(f"--device {requested}", f"this machine has {torch.cuda.device_count()} CUDA device(s)",
                             "use cuda:0 … or cuda")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "amp-fp16" if device.type == "cuda" else "fp32"
    if precision not in {"fp32", "amp-fp16", "amp-bf16"}:
        raise ValueError(f"precision {precision!r}: expected auto, fp32, amp-fp16 or amp-bf16")
    if precision == "amp-fp16" and device.type != "cuda":
        raise ValueError("precision amp-fp16 needs a CUDA device; use fp32 or amp-bf16 on CPU")
    return precision


@dataclass
class AmpHelper:
    """Autocast plus (for fp16) a GradScaler kept across samples, as the paper's code does.

    ``backward_step(loss, optimizer)`` does zero-grad-free scaled backward + step + update; the
    caller zeroes gradients (``optimizer.zero_grad(set_to_none=True)``) before computing a loss.
    """

    device: torch.device
    precision: str
    init_scale: float = 1000.0
    scaler: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.enabled = self.precision != "fp32"
        self.dtype = {"fp32": torch.float32, "amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}[self.precision]
        if self.precision == "amp-fp16":
            self.scaler = torch.amp.GradScaler(self.device.type, init_scale=self.init_scale)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Wall-clock milliseconds, synchronising the device before each reading."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        synchronize(self.device)
        return time.perf_counter() * 1000.0


class SectionTimer:
    """Accumulates device-synchronised time of named sections inside a method (e.g. ``reward``).

    The runner resets it per batch and stores the totals; methods wrap the reward model's calls in
    ``with ctx.timer.section('reward'):`` so reports can show its share of the latency.
    :meth:`credit` records time that was measured earlier and not spent now (a cached result's
    cost, ``rlcf_bench.view_cache``); the runner adds :attr:`credited_ms` to the batch's adapt time.
    """

    def __init__(self, device: torch.device) -> None:
        self.clock = Clock(device)
        self.totals: dict[str, float] = {}
        self.credited_ms = 0.0

    def reset(self) -> None:
        self.totals = {}
        self.credited_ms = 0.0

    def credit(self, name: str, ms: float) -> None:
        """Count ``ms`` in section ``name`` (and in :attr:`credited_ms`) without spending it."""
        self.totals[name] = self.totals.get(name, 0.0) + ms
        self.credited_ms += ms

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = self.clock.now()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + self.clock.now() - start


class PeakMemory:
    """Peak memory of a run: CUDA ``max_memory_allocated`` on GPU, peak RSS (VmHWM) on CPU.

    On Linux the RSS high-water mark is reset at the start by writing ``5`` to
    ``/proc/self/clear_refs``, so the figure belongs to this run, not to the whole process.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        except Exception:  # pragma: no cover
            return None


def configure_threads() -> None:
    """Respect ``RLCF_BENCH_THREADS`` for CPU runs (defaults to torch's own choice)."""
    n = os.environ.get("RLCF_BENCH_THREADS")
    if n:
        torch.set_num_threads(int(n))
