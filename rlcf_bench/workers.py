"""Worker-process lifetime for ``run -j N``: workers never outlive their parent, and an interrupted
parent interrupts its workers (each marks its run ``interrupted``) instead of waiting for them.
:class:`RunOutcome` is what a worker (a process, a rank, the CLI itself) reports for one run."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple


class RunOutcome(NamedTuple):
    """What one run request came to: a result line or an error, the stored run id, reuse."""

    line: str
    error: str | None
    run_id: int | None = None
    reused: bool = False


GRACE_S = 20.0  # time a worker gets to mark its run interrupted before it is ended hard
_STOPPED = threading.Event()


def stopped() -> bool:
    """True once this worker was told to stop: it must not start another run."""
    return _STOPPED.is_set()


def _stop_on_term(_signum: int, _frame: Any) -> None:
    from .errors import Terminated

    _STOPPED.set()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one interruption, handled once
    raise Terminated()


def exit_with_parent(poll_s: float = 0.5) -> None:
    """In a worker: SIGTERM handling, Ctrl-C left to the parent (which forwards SIGTERM), and a
    watchdog that interrupts the worker when its parent dies (then ends it after a grace time)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_term)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_S)
        os._exit(143)

    threading.Thread(target=watch, name="rlcf-bench-parent-watch", daemon=True).start()


@contextlib.contextmanager
def interrupt_workers(pool: Any) -> Iterator[None]:
    """On Ctrl-C/SIGTERM in the parent: cancel what has not started, SIGTERM the workers (they
    mark their runs ``interrupted``), wait for them briefly, then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            with contextlib.suppress(ProcessLookupError, AttributeError, TypeError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for proc in processes:
            proc.join(max(0.0, deadline - time.monotonic()))
        raise
