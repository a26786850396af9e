"""The ``rlcf-bench`` command line.

Global plugin options (``-p NAME``, ``-p no:NAME``, ``--plugins-dir DIR``,
``--disable-plugin-autoload``) are read before the command group is built, because plugins may
add commands (``rlcfb_add_commands``). Heavy libraries are imported only by commands that need
them, so ``rlcf-bench ls`` stays instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .plugins import PluginError, PluginHost
from .registry import RegistryError

DEFAULT_SUITE = "micro"


class GlobalOptions:
    def __init__(self) -> None:
        self.plugins: list[str] = []
        self.blocked: list[str] = []
        self.plugins_dirs: list[str] = []
        self.autoload = True
        self.verbose = False


def split_global_options(argv: Sequence[str]) -> tuple[GlobalOptions, list[str]]:
    """Take the plugin options out of ``argv`` wherever they appear."""
    opts = GlobalOptions()
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "-p" or arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            value = next(it, None) if arg == "-p" else arg[2:]
            if value is None:
                raise click.UsageError("-p needs a value: -p NAME or -p no:NAME")
            (opts.blocked.append(value[3:]) if value.startswith("no:") else opts.plugins.append(value))
        elif arg == "--plugins-dir" or arg.startswith("--plugins-dir="):
            value = next(it, None) if arg == "--plugins-dir" else arg.split("=", 1)[1]
            if value is None:
                raise click.UsageError("--plugins-dir needs a directory")
            opts.plugins_dirs.append(value)
        elif arg == "--disable-plugin-autoload":
            opts.autoload = False
        elif arg in ("-v", "--verbose"):
            opts.verbose = True
        else:
            rest.append(arg)
    return opts, rest


class TerminalReporter:
    """Progress bar and result lines on stderr (quiet mode prints nothing)."""

    plugin_name = "terminal"

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: Any = None

    def rlcfb_run_start(self, run_id: int, spec: Any, n_total: int, n_done: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        label = f"{spec.method} on {spec.dataset}"
        self._bar = tqdm(total=n_total, initial=n_done, desc=label, unit="sample", file=sys.stderr,
                         dynamic_ncols=True, leave=False)

    def rlcfb_run_step(self, step: Any) -> None:
        if self._bar is not None:
            self._bar.update(len(step.sample_ids))

    def rlcfb_run_finish(self, result: Any) -> None:
        self._close()

    def rlcfb_run_error(self, error: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _make_hookimpls(obj: Any) -> Any:
    from .hookspecs import hookimpl

    for name in ("rlcfb_run_start", "rlcfb_run_step", "rlcfb_run_finish", "rlcfb_run_error"):
        hookimpl(getattr(type(obj), name))
    return obj


def build_host(opts: GlobalOptions, quiet: bool = False) -> PluginHost:
    reporter = _make_hookimpls(TerminalReporter(quiet=quiet))
    host = PluginHost(autoload=opts.autoload, blocked=opts.blocked, plugins_dirs=opts.plugins_dirs,
                      extra=[reporter, *opts.plugins])
    host.cli_options = opts  # type: ignore[attr-defined]  # worker processes rebuild the same plugin set
    return host


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def build_cli(host: PluginHost) -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]},
                 epilog="Plugin options (anywhere on the line): -p NAME, -p no:NAME, --plugins-dir DIR, "
                        "--disable-plugin-autoload (or RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD=1); "
                        "-v/--verbose shows tracebacks.")
    @click.version_option(__version__, prog_name="rlcf-bench")
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """rlcf-bench: test-time adaptation of vision-language models, under one protocol."""
        ctx.obj = host  # plugin commands find the session's host with ctx.find_object(PluginHost)

    @cli.command("ls")
    @click.argument("kind", type=click.Choice(["tasks", "datasets", "methods", "models", "reward-models", "suites"]))
    @click.argument("pattern", required=False)
    def ls_cmd(kind: str, pattern: str | None) -> None:
        """List registered components (optionally filtered by a glob PATTERN)."""
        reg = host.registry(kind)
        for name in reg.names(pattern):
            spec = reg.get(name)
            extra = ""
            if kind == "methods":
                extra = f"  tasks={','.join(sorted(spec.tasks))}"
                extra += "  needs reward model" if "reward_model" in spec.requires else ""
                extra += "  online" if not spec.episodic else ""
            elif kind == "datasets":
                extra = f"  tasks={','.join(sorted(spec.task_kinds))}"
            elif kind == "reward-models":
                extra = "  " + " + ".join(f"{w:g}*{m}" for m, w in spec.members)
            version = getattr(spec, "version", "")
            desc = getattr(spec, "description", "")
            click.echo(f"{name:28s} v{version:<8s} [{spec.provider}]{extra}" + (f"  — {desc}" if desc else ""))

    @cli.command("plugins")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    def plugins_cmd(as_json: bool) -> None:
        """Loaded plugins: names, distributions, versions and hooks implemented."""
        infos = host.plugin_infos()
        if as_json:
            click.echo(json.dumps([i.__dict__ for i in infos], indent=2))
            return
        for info in infos:
            dist = f"{info.distribution or '-'} {info.version or ''}".strip()
            click.echo(f"{info.name:34s} {dist:28s} {', '.join(info.hooks)}")

    @cli.command("validate")
    def validate_cmd() -> None:
        """Build every registry and check for clashes, unknown hooks and broken specs."""
        problems = 0
        for kind in ("tasks", "datasets", "methods", "models", "reward-models", "suites"):
            try:
                reg = host.registry(kind)
                click.echo(f"ok    {kind:14s} {len(reg)} registered")
            except Exception as exc:  # report all kinds, not just the first failure
                problems += 1
                click.echo(f"FAIL  {kind:14s} {exc}")
        if not problems:
            problems += _validate_cross_references(host)
        sys.exit(1 if problems else 0)

    @cli.command("run")
    @click.option("--suite", default=None, help=f"named suite (default: {DEFAULT_SUITE})")
    @click.option("--task", default=None, help="task name (default: the suite's)")
    @click.option("--dataset", "datasets", multiple=True, help="dataset name (repeatable; default: the suite's)")
    @click.option("--method", "methods", multiple=True, help="method name (repeatable; default: the suite's)")
    @click.option("--model", default=None, help="policy model: registered name, ARCH@TAG or ARCH@/path (default: the suite's)")
    @click.option("--reward-model", default=None, help="reward model: registered name, model name, or m1*w1+m2*w2")
    @click.option("-m", "method_options", multiple=True, help="method option key=value (repeatable)")
    @click.option("--data-param", "data_params", multiple=True, help="dataset parameter key=value")
    @click.option("--protocol-param", "protocol_params", multiple=True,
                  help="task protocol parameter key=value (e.g. direction=t2i for retrieval); changes the protocol hash")
    @click.option("--limit", type=click.IntRange(min=1), default=None,
                  help="at most N samples per run (never ranked with full runs)")
    @click.option("--seed", type=click.IntRange(min=0), default=None, help="protocol seed (default: the task's)")
    @click.option("--views", type=click.IntRange(min=1), default=None, help="views per sample (default: the task's, 64)")
    @click.option("--precision", type=click.Choice(["auto", "fp32", "amp-fp16", "amp-bf16"]), default=None,
                  help="mixed precision (default: auto)")
    @click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="samples adapted at once (execution only; results do not depend on it)")
    @click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
                  help="runs executed in parallel processes, one thread each (default: the CPU cores on CPU, 1 on GPU)")
    @click.option("--data-root", default=None, help="root of real datasets (else $RLCF_BENCH_DATA_ROOT, else the config file)")
    @click.option("--db", default=None, help="SQLAlchemy URL or SQLite path (else $RLCF_BENCH_DB, else leaderboard/leaderboard.sqlite)")
    @click.option("--on-corrupt", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
                  help="a sample whose image cannot be decoded: stop the run naming the file, or skip it "
                       "(recorded per sample, counted as the 'skipped' metric)")
    @click.option("--fresh", is_flag=True, help="start new attempts instead of resuming or reusing stored runs")
    @click.option("--dry-run", is_flag=True, help="print the planned runs and exit")
    @click.option("--quiet", "-q", is_flag=True, help="no progress bar, no table")
    def run_cmd(suite: str | None, task: str | None, datasets: tuple[str, ...], methods: tuple[str, ...],
                model: str | None, reward_model: str | None, method_options: tuple[str, ...], data_params: tuple[str, ...],
                protocol_params: tuple[str, ...],
                limit: int | None, seed: int | None, views: int | None, precision: str | None, device: str | None,
                batch_size: int | None, jobs: int | None, data_root: str | None, db: str | None, on_corrupt: str,
                fresh: bool, dry_run: bool, quiet: bool) -> None:
        """Run a suite (default: the embedded micro suite); options narrow or override it."""
        from .planning import PlanError, plan_runs

        if quiet:
            for plugin in host.pm.get_plugins():
                if isinstance(plugin, TerminalReporter):
                    plugin.quiet = True
        overrides: dict[str, Any] = {}
        for key, value in (("limit", limit), ("seed", seed), ("n_views", views), ("precision", precision)):
            if value is not None:
                overrides[key] = value
        overrides.update(_pairs(protocol_params, "--protocol-param"))
        try:
            requests = plan_runs(
                host, suite=suite or DEFAULT_SUITE, suite_explicit=suite is not None, task=task, datasets=datasets,
                methods=methods, model=model, reward_model=reward_model, options=_pairs(method_options, "-m"),
                data_params=_pairs(data_params, "--data-param"), overrides=overrides,
            )
        except (PlanError, RegistryError, ValueError) as exc:
            _fail(str(exc))
        if dry_run:
            for req in requests:
                click.echo(req.describe())
            return
        _execute(host, requests, db=db, device=device, batch_size=batch_size, data_root=data_root, fresh=fresh,
                 quiet=quiet, jobs=jobs, on_corrupt=on_corrupt)

    @cli.command("report")
    @click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json", "html"]), default="markdown")
    @click.option("--task", default=None)
    @click.option("--dataset", default=None)
    @click.option("--method", default=None)
    @click.option("--out", default=None, help="write to this file (or, with --all-formats, this folder)")
    @click.option("--all-formats", is_flag=True, help="write markdown, CSV, JSON and HTML into --out")
    @click.option("--db", default=None)
    def report_cmd(fmt: str, task: str | None, dataset: str | None, method: str | None, out: str | None,
                   all_formats: bool, db: str | None) -> None:
        """Leaderboard report from the stored runs (markdown, CSV, JSON or a self-contained HTML page)."""
        from . import report

        store = _open_store(db, create=False)
        _store_references(host, store)
        if all_formats:
            if not out:
                _fail("--all-formats needs --out FOLDER")
            for path in report.write_report(store, out, host=host, task=task, dataset=dataset, method=method):
                click.echo(str(path))
            return
        text = report.render(store, fmt, host=host, task=task, dataset=dataset, method=method)
        if out:
            from pathlib import Path

            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
            click.echo(out)
        else:
            click.echo(text)

    @cli.command("compare")
    @click.argument("run_a", type=int)
    @click.argument("run_b", type=int)
    @click.option("--db", default=None)
    def compare_cmd(run_a: int, run_b: int, db: str | None) -> None:
        """Paired comparison of two runs on the samples they share."""
        from . import report

        click.echo(report.compare(_open_store(db, create=False), run_a, run_b))

    host.add_commands(cli)
    return cli


def _open_store(db: str | None, *, create: bool = True) -> Any:
    """Open the store (``create=False``: an existing one only — ``report`` never creates one).
    Refusals (:class:`~rlcf_bench.errors.StoreError`) reach the CLI's error boundary."""
    from .store import Store

    return Store(db, create=create)


def _store_references(host: PluginHost, store: Any) -> None:
    refs = host.references()
    if refs:
        store.upsert_references(refs)


def _pairs(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{flag} {item!r}: expected key=value")
        pairs.append((key.strip(), value))
    return pairs


def _validate_cross_references(host: PluginHost) -> int:
    problems = 0
    methods = host.registry("methods")
    for spec in methods:
        if not isinstance(spec.tasks, frozenset) or not spec.tasks:
            click.echo(f"FAIL  method {spec.name!r} declares no tasks")
            problems += 1
    for suite in host.registry("suites"):
        try:
            runs = suite.runs(list(methods))
        except ValueError as exc:  # a suite that needs local files named by the user (e.g. CoOp weights)
            click.echo(f"note  suite {suite.name!r} is not configured here: {exc}")
            continue
        except Exception as exc:
            click.echo(f"FAIL  suite {suite.name!r}: {type(exc).__name__}: {exc}")
            problems += 1
            continue
        for r in runs:
            for kind, name in (("tasks", r.task), ("datasets", r.dataset), ("methods", r.method), ("models", r.model)):
                try:
                    host.registry(kind).get(name)
                except RegistryError as exc:
                    click.echo(f"FAIL  suite {suite.name!r}: {exc}")
                    problems += 1
    if not problems:
        click.echo("ok    cross-references")
    return problems


def _default_jobs(device: str | None) -> int:
    import os

    if device and device.startswith("cuda"):
        return 1
    if device is None or device == "auto":
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            import torch

            if torch.cuda.is_available():
                return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _execute(host: PluginHost, requests: Sequence[Any], *, db: str | None, device: str | None, batch_size: int | None,
             data_root: str | None, fresh: bool, quiet: bool, jobs: int | None = None, on_corrupt: str = "fail") -> None:
    from . import report
    from .device import select_device
    from .runner import ExecutionOptions

    select_device(device)  # a missing CUDA device is refused before the store is touched
    store = _open_store(db)
    _store_references(host, store)
    options = ExecutionOptions(device=device, batch_size=batch_size, data_root=data_root, fresh=fresh,
                               on_corrupt=on_corrupt)
    jobs = min(jobs or _default_jobs(device), len(requests))
    if jobs > 1:
        outcomes = _run_parallel(host, requests, store.url, options, jobs, quiet)
    else:
        outcomes = _run_serial(host, requests, store, options, quiet)
    failures = sum(1 for o in outcomes if o is not None)
    if not quiet:
        click.echo(report.render(store, "markdown", host=host))
    if failures:
        click.echo(f"{failures} of {len(requests)} runs failed", err=True)
        sys.exit(1)


def _run_one(runner: Any, req: Any) -> tuple[str, str | None]:
    """Run one request; return (summary line, error message or None)."""
    from .errors import describe
    from .types import DatasetLayoutError

    try:
        result = runner.run(req)
    except DatasetLayoutError as exc:
        return "", f"the dataset layout is wrong, nothing was run:\n{exc}"
    except Exception as exc:  # one failed run must not stop the others; the store keeps its traceback
        if getattr(getattr(runner.host, "cli_options", None), "verbose", False):
            import traceback

            traceback.print_exc()
        return "", describe(exc)
    shown = ", ".join(f"{k}={v.value:.2f}" for k, v in list(result.metrics.items())[:3])
    lat = f", {result.latency.ms_per_sample_mean:.1f} ms/sample" if result.latency else ""
    return f"run {result.run_id}: {shown} (n={result.n_samples}{lat})", None


def _run_serial(host: PluginHost, requests: Sequence[Any], store: Any, options: Any, quiet: bool) -> list[str | None]:
    from .runner import Runner

    runner = Runner(host, store, options)
    outcomes: list[str | None] = []
    for i, req in enumerate(requests, 1):
        if not quiet:
            click.echo(f"[{i}/{len(requests)}] {req.describe()}", err=True)
        line, error = _run_one(runner, req)
        if error is not None:
            click.echo(f"error: {error}", err=True)
        elif not quiet:
            click.echo(f"      {line}", err=True)
        outcomes.append(error)
    return outcomes


_WORKER: dict[str, Any] = {}


def _worker_init(opts: GlobalOptions, db_url: str, options: Any, threads: int) -> None:
    import os

    os.environ["RLCF_BENCH_THREADS"] = str(threads)
    from .runner import Runner
    from .store import Store
    from .workers import exit_with_parent

    exit_with_parent()

    host = build_host(opts, quiet=True)
    _WORKER["runner"] = Runner(host, Store(db_url), options)


def _worker_run(req: Any) -> tuple[str, str | None]:
    from .workers import stopped

    if stopped():
        return "", "interrupted — the worker was stopped before this run started"
    try:
        return _run_one(_WORKER["runner"], req)
    except KeyboardInterrupt:  # the run is marked interrupted; the parent reports and exits
        return "", "interrupted — the worker was stopped (the run is marked interrupted)"


def _run_parallel(host: PluginHost, requests: Sequence[Any], db_url: str, options: Any, jobs: int,
                  quiet: bool) -> list[str | None]:
    """Runs in ``jobs`` spawned processes with one thread each (SQLite WAL lets them write at
    once). Each run still times itself; with one job per core the timings stay per-core figures."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    from .workers import interrupt_workers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // jobs)
    opts = getattr(host, "cli_options", None) or GlobalOptions()
    if not quiet:
        click.echo(f"running {len(requests)} runs in {jobs} parallel processes ({threads} thread(s) each)", err=True)
    ctx = multiprocessing.get_context("spawn")
    outcomes: list[str | None] = [None] * len(requests)
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(opts, db_url, options, threads))
    with pool, interrupt_workers(pool):
        futures = {pool.submit(_worker_run, req): i for i, req in enumerate(requests)}
        done = 0
        from concurrent.futures import as_completed

        for fut in as_completed(futures):
            i = futures[fut]
            done += 1
            try:
                line, error = fut.result()
            except Exception as exc:  # a crashed worker must not hide the other runs
                line, error = "", f"{type(exc).__name__}: {exc}"
            outcomes[i] = error
            if error:
                click.echo(f"error [{requests[i].describe()}]: {error}", err=True)
            elif not quiet:
                click.echo(f"[{done}/{len(requests)}] {requests[i].describe()}\n      {line}", err=True)
    return outcomes


def main(argv: Sequence[str] | None = None) -> None:
    """The entry point and the CLI's one error boundary (see :mod:`rlcf_bench.errors`)."""
    from . import errors

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    errors.install_signal_handlers()
    try:
        opts, rest = split_global_options(args)
        host = build_host(opts)
        cli = build_cli(host)
        code = cli.main(args=rest, prog_name="rlcf-bench", standalone_mode=False)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            errors.interrupted(cause, args)
        sys.exit(1)
    except click.UsageError as exc:
        errors.usage(exc, args)
    except click.ClickException as exc:
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        errors.interrupted(exc, args)
    except Exception as exc:  # the boundary: one line, the traceback only with -v
        errors.fail(exc, verbose=verbose)
    if isinstance(code, int) and code:
        sys.exit(code)
