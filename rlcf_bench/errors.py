"""The command line's error boundary: one line per known failure, a traceback only with ``-v``.

Every failure a user can cause or meet (a bad option, a store that is not a database, a missing
CUDA device, a plugin whose hook raises, ...) is printed as::

    error: <what> — <why> (<hint>)

Exit codes: 0 success, 1 some runs failed, 2 invalid input or a refused store/plugin/device,
130 interrupted by SIGINT, 143 terminated by SIGTERM. Unknown exceptions are still one line
(their type and message) with a hint to re-run with ``-v`` for the traceback.
"""

from __future__ import annotations

import signal
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_FAILED_RUNS = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class BenchError(Exception):
    """A known failure: ``what`` failed, ``why``, and what to do about it (``hint``)."""

    exit_code: int = EXIT_USAGE

    def __init__(self, what: str, why: str, hint: str | None = None) -> None:
        super().__init__(what, why, hint)
        self.what, self.why, self.hint = what, why, hint

    def __str__(self) -> str:
        return f"{self.what} — {self.why}" + (f" ({self.hint})" if self.hint else "")


class StoreError(BenchError):
    """The leaderboard store cannot be opened, created or written (nothing was changed)."""


class DataError(BenchError):
    """A dataset file cannot be read (e.g. a corrupt image under the ``fail`` policy)."""


class PluginError(RuntimeError):
    """A plugin could not be loaded, or two plugins clash (raised by :mod:`rlcf_bench.plugins`, and
    importable from there; defined here so that the error boundary imports no plugin host)."""


class ComponentError(RuntimeError):
    """A component cannot be built here (a dataset without its data root, ...)."""


class RegistryError(KeyError):
    """An unknown or ambiguous name in a registry (raised by :mod:`rlcf_bench.registry`, and
    importable from there; defined here so that the error boundary imports no registry, which
    imports the types, which raise :class:`PluginError`)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that the runner marks its run ``interrupted``."""


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise Terminated()


_PYTHON_FORMAT = warnings.formatwarning


def _bench_format(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  line: str | None = None) -> str:
    if getattr(category, "one_line", False):
        return f"warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


def install_warning_format() -> None:
    """A warning whose category sets ``one_line = True`` (a setting that silently does nothing,
    e.g. :class:`rlcf_bench.tta.prompts.SettingHasNoEffect`) prints as ``warning: <message>``
    with no source line; every other warning keeps Python's format."""
    warnings.formatwarning = _bench_format


def install_signal_handlers() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread (SIGINT already raises
    ``KeyboardInterrupt``)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def describe(exc: BaseException) -> str:
    """The one-line ``<what> — <why> (<hint>)`` of a failure (no ``error:`` prefix)."""
    if isinstance(exc, BenchError):
        return str(exc)
    for translate in _TRANSLATORS:
        text = translate(exc)
        if text is not None:
            return text
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}" + (f" — {message}" if message else "") + " (re-run with -v for the traceback)"


def _sqlalchemy(exc: BaseException) -> str | None:
    try:
        from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, (ArgumentError, NoSuchModuleError)):
        return f"database URL — {str(exc).splitlines()[0]} (expected a SQLite path or a URL like " \
               "postgresql+psycopg://user@host/db)"
    if isinstance(exc, DBAPIError):
        why = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return f"database — {why} (check the --db / $RLCF_BENCH_DB store and that it is reachable)"
    return None


def _known_kinds(exc: BaseException) -> str | None:
    if isinstance(exc, (PluginError, RegistryError)):
        return str(exc)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"{getattr(exc, 'filename', None) or 'file'}: {exc.strerror or exc}"
    return None


_TRANSLATORS: list[Callable[[BaseException], str | None]] = [_known_kinds, _sqlalchemy]


def usage(exc: Any, args: list[str]) -> NoReturn:
    """A click usage error (bad option value, unknown option) as one ``error:`` line."""
    command = next((a for a in args if not a.startswith("-")), "")
    print(f"error: invalid command line — {exc.format_message()} (see: rlcf-bench {command} --help)".replace("  ", " "),
          file=sys.stderr)
    sys.exit(exc.exit_code)


def resume_hint(argv: list[str] | None = None) -> str:
    args = " ".join(sys.argv[1:] if argv is None else argv)
    return f"finished samples are kept; resume with: rlcf-bench {args}".rstrip()


def fail(exc: BaseException, *, verbose: bool, code: int | None = None) -> NoReturn:
    """Print ``exc`` as one line (plus the traceback when ``verbose``) and exit."""
    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    from .fs_names import fs_text  # a message may quote a file name that is not UTF-8

    print(f"error: {fs_text(describe(exc))}", file=sys.stderr)
    sys.exit(code if code is not None else getattr(exc, "exit_code", EXIT_USAGE))


def interrupted(exc: BaseException, argv: list[str] | None = None) -> NoReturn:
    """SIGINT → exit 130, SIGTERM → exit 143, after saying how to resume."""
    term = isinstance(exc, Terminated)
    print(f"error: interrupted — {'SIGTERM' if term else 'SIGINT'} received ({resume_hint(argv)})", file=sys.stderr)
    sys.exit(EXIT_SIGTERM if term else EXIT_SIGINT)
