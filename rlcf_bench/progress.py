"""One progress display for a whole ``rlcf-bench run``: runs done / total, samples per second, ETA.

Serial runs feed it from the terminal reporter's lifecycle hooks; parallel runs from the same
hooks in each worker process, forwarded through a queue (:class:`ProgressForwarder`) and drained
by the parent. The ETA is the samples still to do divided by the rate so far, where a run that
has not started yet is counted as the mean size of the runs that have (runs reused from the
store have no samples to do). Off when stderr is not a terminal (logs stay clean) and with
``--quiet``; result lines printed through :meth:`SuiteProgress.write` never tear the bar.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SuiteProgress:
    """The state and the one-line display of a command's runs."""

    def __init__(self, n_runs: int, *, enabled: bool = True, file: Any = None,
                 clock: Any = time.monotonic) -> None:
        self.n_runs = n_runs
        self.runs_done = 0
        self.samples = 0
        self._todo: dict[int, int] = {}  # run id -> samples it has to execute (resumed ones excluded)
        self._done: dict[int, int] = {}  # run id -> samples executed so far
        self._active: set[int] = set()
        self._never_started = 0  # runs done without executing anything (reused, or failed before starting)
        self._clock = clock
        self._t0 = clock()
        self._last_draw = 0.0
        self._file = file or sys.stderr
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            interactive = bool(getattr(self._file, "isatty", lambda: False)())
            self._bar = tqdm(total=None, bar_format="{desc}", file=self._file, disable=not interactive, leave=False)

    # ------------------------------------------------------------------ events
    def start(self, run_id: int, n_total: int, n_done: int) -> None:
        self._todo[run_id] = max(0, n_total - n_done)
        self._done[run_id] = 0
        self._active.add(run_id)
        self._draw()

    def step(self, run_id: int, n: int) -> None:
        self.samples += n
        self._done[run_id] = self._done.get(run_id, 0) + n
        self._draw()

    def end(self, run_id: int) -> None:
        self._active.discard(run_id)

    def run_done(self, run_id: int | None = None) -> None:
        """One run of the command is over (``run_id`` None: it failed before it had one)."""
        self.runs_done += 1
        if run_id is None or run_id not in self._todo:
            self._never_started += 1
        self._active.discard(run_id)
        self._draw(force=True)

    # ------------------------------------------------------------------ numbers
    @property
    def rate(self) -> float | None:
        elapsed = self._clock() - self._t0
        return self.samples / elapsed if elapsed > 0 and self.samples else None

    def remaining_samples(self) -> float | None:
        if not self._todo:
            return None
        active = sum(max(0, self._todo[r] - self._done.get(r, 0)) for r in self._active)
        mean_size = sum(self._todo.values()) / len(self._todo)
        not_started = max(0, self.n_runs - len(self._todo) - self._never_started)
        return active + not_started * mean_size

    def eta_seconds(self) -> float | None:
        rate, left = self.rate, self.remaining_samples()
        return None if rate is None or left is None else left / rate

    def text(self) -> str:
        rate = self.rate
        speed = f"{rate:.1f} samples/s" if rate is not None else "— samples/s"
        return (f"runs {self.runs_done}/{self.n_runs} · {self.samples} samples · {speed} · "
                f"ETA {_clock(self.eta_seconds())}")

    # ------------------------------------------------------------------ display
    def _draw(self, force: bool = False) -> None:
        if self._bar is None:
            return
        now = self._clock()
        if force or now - self._last_draw >= 0.2:
            self._last_draw = now
            self._bar.set_description_str(self.text(), refresh=True)

    def write(self, line: str) -> None:
        """Print a line above the display (to stderr)."""
        if self._bar is not None and not self._bar.disable:
            self._bar.write(line, file=self._file)
        else:
            print(line, file=self._file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressForwarder:
    """A worker process's lifecycle hooks, sent to the parent's :class:`SuiteProgress`."""

    plugin_name = "progress-forwarder"

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def rlcfb_run_start(self, run_id: int, spec: Any, n_total: int, n_done: int) -> None:
        self.queue.put(("start", run_id, n_total, n_done))

    def rlcfb_run_step(self, step: Any) -> None:
        self.queue.put(("step", step.run_id, len(step.sample_ids)))

    def rlcfb_run_finish(self, result: Any) -> None:
        self.queue.put(("end", result.run_id))

    def rlcfb_run_error(self, error: Any) -> None:
        if error.run_id is not None:
            self.queue.put(("end", error.run_id))


def drain(queue: Any, progress: SuiteProgress) -> None:
    """Apply every forwarded event waiting in ``queue``."""
    import queue as queue_mod

    while True:
        try:
            kind, run_id, *rest = queue.get_nowait()
        except queue_mod.Empty:
            return
        if kind == "start":
            progress.start(run_id, *rest)
        elif kind == "step":
            progress.step(run_id, *rest)
        else:
            progress.end(run_id)
