"""Device selection, mixed precision and device-synchronised timing."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


def bench_device() -> torch.device:
    """The device of the benchmarks and measurements (``make bench``, ``tests/bench``):
    ``RLCF_BENCH_DEVICE`` if set, else CUDA when available, else the CPU — never hard-coded."""
    return select_device(os.environ.get("RLCF_BENCH_DEVICE"))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


PRECISIONS = ("fp32", "tf32", "amp-fp16", "amp-bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``amp-fp16`` on CUDA (the paper's setting), ``fp32`` elsewhere. ``tf32`` (fp32
    tensors, TensorFloat-32 matmuls and convolutions) exists on CUDA only; ``amp-fp16`` runs on the
    CPU too (slowly: it emulates the GPU path in tests and checks)."""
    if precision == "auto":
        return "amp-fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected auto, {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise ValueError("precision tf32 needs a CUDA device (TensorFloat-32 is a GPU format); use fp32 on CPU")
    return precision


def apply_precision_settings(precision: str) -> dict[str, Any]:
    """Set the process-wide numeric switches a run's precision implies, and return them for the
    run's provenance (docs/gpu.md#precision). TF32 matmuls and convolutions are on only for
    ``tf32`` (torch leaves cuDNN's TF32 on by default, so a run labelled fp32 would otherwise
    convolve in TF32); cuDNN is deterministic and does not benchmark (its autotuner may pick
    another algorithm per process, so results could change between runs)."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return precision_settings()


def precision_settings() -> dict[str, Any]:
    """The numeric switches now in force (stored with each run's provenance)."""
    return {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32), "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}


@dataclass
class AmpHelper:
    """Autocast plus, for fp16, loss scaling **per sample** (docs/gpu.md#fp16).

    ``backward_step(loss, optimizer)`` does a (scaled) backward, the optimizer step and the scale
    update; the caller zeroes gradients (``optimizer.zero_grad(set_to_none=True)``) before
    computing a loss. Under ``amp-fp16`` ``loss`` may be per-sample losses ``[B]`` of B
    independent samples whose tuned tensors have a leading sample axis (as
    :func:`rlcf_bench.tta.episode.run_episode` passes them): each sample has its own scale
    (``init_scale`` at the start of every batch, :meth:`reset`), its gradient row is unscaled and
    checked on its own, and a row with an inf/NaN gradient skips *its* step only (its tensors and
    Adam moments are put back) and halves *its* scale. So a sample's result never depends on the
    other samples of its batch, on the batch size, on sharding or on what ran before. A scalar
    ``loss`` is one sample. (The paper's code keeps one GradScaler across the whole run; its scale
    would grow only after 2000 overflow-free steps, and changes results only through fp16
    rounding of the gradients.) Adam's step counter is shared by the rows of a tensor and counts
    the episode's steps, skipped ones included, the same in every batching.
    """

    device: torch.device
    precision: str
    init_scale: float = 1000.0
    backoff: float = 0.5

    def __post_init__(self) -> None:
        self.enabled = self.precision not in {"fp32", "tf32"}
        self.dtype = _DTYPES[self.precision]
        self.per_sample_scaling = self.precision == "amp-fp16"
        self.scales: torch.Tensor | None = None  # [B] fp32, one loss scale per sample of the batch
        self.skipped: torch.Tensor | None = None  # [B] int, steps each sample skipped in the batch

    def reset(self) -> None:
        """A new batch: every sample starts at ``init_scale`` (the runner calls this per batch)."""
        self.scales = self.skipped = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if not self.per_sample_scaling:
            (loss.sum() if loss.dim() else loss).backward()
            optimizer.step()
            return
        losses = loss.float().reshape(-1)
        b = losses.shape[0]
        if self.scales is None or self.scales.shape[0] != b:
            self.scales = torch.full((b,), float(self.init_scale), device=losses.device)
            self.skipped = torch.zeros(b, dtype=torch.int64, device=losses.device)
        (losses * self.scales).sum().backward()
        ok = self._unscale(optimizer, b)
        if bool(ok.all()):  # one sync per step, as the paper's GradScaler (its found_inf check)
            optimizer.step()
            return
        self._step_rows(optimizer, ok)
        self.scales = torch.where(ok, self.scales, self.scales * self.backoff)
        assert self.skipped is not None
        self.skipped = self.skipped + (~ok).long()

    def _rows(self, t: torch.Tensor, b: int) -> torch.Tensor:
        """``t`` as ``[B, ...]`` (a tensor of one sample gains the axis)."""
        if b == 1 and (t.dim() == 0 or t.shape[0] != 1):
            return t.unsqueeze(0)
        if t.dim() == 0 or t.shape[0] != b:
            raise ValueError(f"amp-fp16 with per-sample losses [{b}] needs tuned tensors with a leading sample "
                             f"axis of {b}; got one of shape {tuple(t.shape)}")
        return t

    def _unscale(self, optimizer: torch.optim.Optimizer, b: int) -> torch.Tensor:
        """Divide each gradient row by its sample's scale; True per sample whose rows are finite."""
        assert self.scales is not None
        inv = 1.0 / self.scales
        ok = torch.ones(b, dtype=torch.bool, device=self.scales.device)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = self._rows(p.grad, b)
                g.mul_(inv.to(g.device).view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
                ok &= torch.isfinite(g.reshape(b, -1)).all(dim=1).to(ok.device)
        return ok

    @torch.no_grad()
    def _step_rows(self, optimizer: torch.optim.Optimizer, ok: torch.Tensor) -> None:
        """The step for the rows in ``ok`` only: the others' gradients are zeroed for the update,
        then their tensors and optimizer moments are put back as they were."""
        b = ok.shape[0]
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                keep = ok.to(p.device).view(-1, *([1] * (self._rows(p, b).dim() - 1)))
                g = self._rows(p.grad, b)
                g.copy_(torch.where(keep, g, torch.zeros_like(g)))
                saved.append((p, p.detach().clone()))
                for value in optimizer.state.get(p, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape:
                        saved.append((value, value.clone()))
        optimizer.step()
        for t, before in saved:
            rows, old = self._rows(t, b), self._rows(before, b)
            rows.copy_(torch.where(ok.to(t.device).view(-1, *([1] * (rows.dim() - 1))), rows, old))


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
    """Accumulates the time of named sections inside a method (e.g. ``reward``).

    The runner resets it per batch and reads :attr:`totals` after the batch's closing clock
    reading (which synchronises the device once per batch, whatever the method). Sections never
    synchronise: on CUDA each records a pair of CUDA events, resolved when :attr:`totals` is read
    (device time between the two points of the stream); elsewhere host wall time. So a method
    with a reward section pays no device sync that a method without one does not
    (docs/gpu.md#syncs). Methods wrap the reward model's calls in
    ``with ctx.timer.section('reward'):`` so reports can show its share of the latency.
    :meth:`credit` records time that was measured earlier and not spent now (a cached result's
    cost, ``rlcf_bench.view_cache``); the runner adds :attr:`credited_ms` to the batch's adapt time.
    """

    def __init__(self, device: torch.device) -> None:
        self.clock = Clock(device)
        self.events = device.type == "cuda"
        self._totals: dict[str, float] = {}
        self._pending: list[tuple[str, Any, Any]] = []  # (name, start event, end event), CUDA only
        self.credited_ms = 0.0

    def reset(self) -> None:
        self._totals = {}
        self._pending = []
        self.credited_ms = 0.0

    @property
    def totals(self) -> dict[str, float]:
        """Milliseconds per section so far (resolving recorded events waits for them: read it
        after the batch's closing clock reading, as the runner does)."""
        for name, start, end in self._pending:
            end.synchronize()
            self._totals[name] = self._totals.get(name, 0.0) + float(start.elapsed_time(end))
        self._pending = []
        return self._totals

    def credit(self, name: str, ms: float) -> None:
        """Count ``ms`` in section ``name`` (and in :attr:`credited_ms`) without spending it."""
        self._totals[name] = self._totals.get(name, 0.0) + ms
        self.credited_ms += ms

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        if self.events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._pending.append((name, start, end))
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._totals[name] = self._totals.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0


def model_bytes(*models: Any) -> int:
    """Bytes of the parameters and buffers of ``models`` (wrappers with ``module``, modules, or
    reward models with ``members``), each tensor counted once."""
    seen: set[int] = set()
    total = 0
    stack = [m for m in models if m is not None]
    while stack:
        m = stack.pop()
        members = getattr(m, "members", None)
        if members is not None:
            stack.extend(x[0] if isinstance(x, tuple) else x for x in members)
            continue
        module = getattr(m, "module", m)
        if not isinstance(module, torch.nn.Module):
            continue
        for t in (*module.parameters(), *module.buffers()):
            key = t.data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


def malloc_trim() -> None:
    """Give the C heap's free memory back to the system (glibc), so that the resident size is what
    is in use: memory freed by earlier runs then no longer counts towards a later run's peak."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of one method's run: its own working set, not what other runs left loaded.

    ``reset`` takes the baseline after the run's models are loaded: what is allocated then (CUDA:
    ``memory_allocated``; CPU: the resident set, after :func:`malloc_trim`) holds every model the
    session has loaded, this run's and other runs'. The stored figure is

        own models (parameters + buffers of the run's policy and reward model)
        + (peak during the run − baseline)   ← the method's working set at the run's batch size

    so it does not depend on what ran before in the process (docs/gpu.md#memory). Beside it,
    :meth:`details` gives the per-sample equivalent ``own models + working set / B`` (B the run's
    batch size; image-tower tuners hold B copies of the tower, so this is the figure to compare
    with one-sample-at-a-time code). CUDA's figures are exact allocator counts; the CPU's rest on
    the resident set (VmHWM − VmRSS, Linux), whose high-water mark is reset by writing ``5`` to
    ``/proc/self/clear_refs``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.memory_kind = "cuda_own_peak" if device.type == "cuda" else "cpu_own_peak_rss"
        self.models_mb = 0.0
        self.baseline_mb: float | None = None
        self.batch_size = 1

    def reset(self, *models: Any, batch_size: int = 1) -> None:
        self.models_mb = model_bytes(*models) / 2**20
        self.batch_size = max(1, int(batch_size))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / 2**20
            return
        import gc

        gc.collect()
        malloc_trim()
        with contextlib.suppress(OSError):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        self.baseline_mb = _proc_status_mb("VmRSS")

    def working_set_mb(self) -> float | None:
        """Peak above the baseline since :meth:`reset` (None where it cannot be read)."""
        if self.baseline_mb is None:
            return None
        if self.device.type == "cuda":
            peak: float | None = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = _proc_status_mb("VmHWM")
        return None if peak is None else max(0.0, peak - self.baseline_mb)

    def peak_mb(self) -> float | None:
        ws = self.working_set_mb()
        return None if ws is None else self.models_mb + ws

    def details(self) -> dict[str, Any]:
        """What the stored figure is made of (kept with the run's provenance)."""
        ws = self.working_set_mb()
        return {"kind": self.memory_kind, "batch_size": self.batch_size, "models_mb": round(self.models_mb, 1),
                "working_set_mb": None if ws is None else round(ws, 1),
                "peak_mb": None if ws is None else round(self.models_mb + ws, 1),
                "per_sample_equivalent_mb": None if ws is None else round(self.models_mb + ws / self.batch_size, 1),
                "resident_at_start_mb": None if self.baseline_mb is None else round(self.baseline_mb, 1)}


def _proc_status_mb(field_name: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def configure_threads() -> None:
    """Respect ``RLCF_BENCH_THREADS`` for CPU runs (defaults to torch's own choice)."""
    n = os.environ.get("RLCF_BENCH_THREADS")
    if n:
        torch.set_num_threads(int(n))
