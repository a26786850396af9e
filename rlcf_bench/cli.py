"""The ``rlcf-bench`` command line.

Global plugin options (``-p NAME``, ``-p no:NAME``, ``--plugins-dir DIR``,
``--disable-plugin-autoload``) are read before the command group is built, because plugins may
add commands (``rlcfb_add_commands``). The built-in commands are module-level click commands that
receive the session's :class:`~rlcf_bench.plugins.PluginHost` as click's context object
(``@click.pass_obj``), as a plugin's commands do; :func:`build_cli` puts them and the plugins' into
a new group per host. Heavy libraries are imported only by commands that need
them, so ``rlcf-bench ls`` stays instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, NoReturn

import click

from . import __version__
from .plugins import PluginHost
from .registry import RegistryError
from .types import protocol_overrides
from .workers import RunOutcome

DEFAULT_SUITE = "micro"
COMPONENT_KINDS: tuple[str, ...] = ("tasks", "datasets", "methods", "models", "reward-models", "suites")
DB_HELP = ("SQLAlchemy URL or SQLite path (else $RLCF_BENCH_DB, else the one default leaderboard: leaderboard/ of "
           "the checkout, or ~/.local/share/rlcf-bench/ when installed; run and report print it)")


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
    """Progress on stderr (quiet mode prints nothing): the command's one suite display when
    ``progress`` is set (``rlcf-bench run``), else a bar per run."""

    plugin_name = "terminal"

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress: Any = None  # a rlcf_bench.progress.SuiteProgress
        self._bar: Any = None

    def rlcfb_run_start(self, run_id: int, spec: Any, n_total: int, n_done: int) -> None:
        if self.progress is not None:
            self.progress.start(run_id, n_total, n_done)
            return
        if self.quiet:
            return
        from tqdm import tqdm

        label = f"{spec.method} on {spec.dataset}"
        self._bar = tqdm(total=n_total, initial=n_done, desc=label, unit="sample", file=sys.stderr,
                         dynamic_ncols=True, leave=False)

    def rlcfb_run_step(self, step: Any) -> None:
        if self.progress is not None:
            self.progress.step(step.run_id, len(step.sample_ids))
        if self._bar is not None:
            self._bar.update(len(step.sample_ids))

    def rlcfb_run_finish(self, result: Any) -> None:
        if self.progress is not None:
            self.progress.end(result.run_id)
        self._close()

    def rlcfb_run_error(self, error: Any) -> None:
        if self.progress is not None and error.run_id is not None:
            self.progress.end(error.run_id)
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


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _root_group() -> click.Group:
    """A new ``rlcf-bench`` group without commands (each session's host adds its plugins' commands to its own)."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"]},
                 epilog="""\b
Examples:
  rlcf-bench ls                                       # what is installed
  rlcf-bench run --method zero-shot --limit 4         # a quick look at the micro suite
  rlcf-bench run                                      # the whole embedded micro suite
  rlcf-bench report --layout paper                    # methods x datasets, averages last
  rlcf-bench run --help                               # options of one command

Plugin options (anywhere on the line): -p NAME, -p no:NAME, --plugins-dir DIR,
--disable-plugin-autoload (or RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD=1); -v/--verbose shows tracebacks.""")
    @click.version_option(__version__, prog_name="rlcf-bench")
    def cli() -> None:
        """rlcf-bench: test-time adaptation of vision-language models, under one protocol."""

    return cli


@click.command("ls", epilog="""\b
Examples:
  rlcf-bench ls                      # everything, kind by kind
  rlcf-bench ls methods              # methods, the tasks each supports, what each needs
  rlcf-bench ls datasets 'micro-*'   # a glob narrows the list""")
@click.argument("kind", required=False, type=click.Choice(list(COMPONENT_KINDS)))
@click.argument("pattern", required=False)
@click.pass_obj
def ls_cmd(host: PluginHost, kind: str | None, pattern: str | None) -> None:
    """List registered components of one KIND (default: every kind), optionally filtered by a glob PATTERN."""
    for k in (kind,) if kind else COMPONENT_KINDS:
        if not kind:
            click.echo(f"{k}:")
        for line in _component_lines(host, k, pattern):
            click.echo(("  " if not kind else "") + line)
        if not kind and k != COMPONENT_KINDS[-1]:
            click.echo("")

@click.command("plugins", epilog="""\b
Examples:
  rlcf-bench plugins
  rlcf-bench plugins --json
  rlcf-bench --plugins-dir . plugins                  # with the plugins in ./*.py""")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def plugins_cmd(host: PluginHost, as_json: bool) -> None:
    """Loaded plugins: names, distributions, versions and hooks implemented."""
    infos = host.plugin_infos()
    if as_json:
        click.echo(json.dumps([i.__dict__ for i in infos], indent=2))
        return
    for info in infos:
        dist = f"{info.distribution or '-'} {info.version or ''}".strip()
        click.echo(f"{info.name:34s} {dist:28s} {', '.join(info.hooks)}")

@click.command("validate", epilog="""\b
Example:
  rlcf-bench validate                                 # exit status 1 on any problem""")
@click.pass_obj
def validate_cmd(host: PluginHost) -> None:
    """Build every registry and check for clashes, unknown hooks and broken specs."""
    problems = 0
    for kind in COMPONENT_KINDS:
        try:
            reg = host.registry(kind)
            click.echo(f"ok    {kind:14s} {len(reg)} registered")
        except Exception as exc:  # report all kinds, not just the first failure
            problems += 1
            click.echo(f"FAIL  {kind:14s} {exc}")
    if not problems:
        problems += _validate_cross_references(host)
    sys.exit(1 if problems else 0)

@click.command("run", epilog="""\b
Examples:
  rlcf-bench run                                      # the embedded micro suite
  rlcf-bench run --method zero-shot --method rlcf-prompt --limit 20
  rlcf-bench run --dataset micro-noise --method tpt-prompt -m lr=1e-3 -m steps=2
  rlcf-bench run --suite paper-table1 --data-root /data   # the paper's Table 1 on real data
  rlcf-bench run --dry-run                            # the planned runs, nothing executed""")
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
@click.option("--orders", type=click.IntRange(min=1), default=None,
              help="stream orders (order seeds 0..N-1) per online method; episodic methods run once (default: the suite's)")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="view seeds per run: the protocol seed and the N-1 after it, a protocol hash each; reports "
                   "show the spread (default: the suite's, 1)")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="protocol seed (default: the task's)")
@click.option("--views", type=click.IntRange(min=1), default=None,
              help="views per sample (default: the suite's setting, else the task's: 32 in the micro suite, "
                   "64 in the paper's suites)")
@click.option("--precision", type=click.Choice(["auto", "fp32", "tf32", "amp-fp16", "amp-bf16"]), default=None,
              help="mixed precision (default: auto)")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="samples adapted at once (default: 8; execution only; results do not depend on it)")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="runs executed in parallel processes, one thread each (default: the CPU cores on CPU, 1 on GPU)")
@click.option("--shard", default=None, metavar="K/N",
              help="compute shard K of N (0 <= K < N) of every run, e.g. one job-array task; the shard "
                   "that completes a run stores its metrics (under torchrun the ranks are the shards)")
@click.option("--data-root", default=None, help="root of real datasets (else $RLCF_BENCH_DATA_ROOT, else the config file)")
@click.option("--db", default=None, help=DB_HELP)
@click.option("--on-corrupt", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="a sample whose image cannot be decoded: stop the run naming the file, or skip it "
                   "(recorded per sample, counted as the 'skipped' metric)")
@click.option("--fresh", is_flag=True, help="start new attempts instead of resuming or reusing stored runs")
@click.option("--no-feature-cache", "no_feature_cache", is_flag=True,
              help="encode every run's views itself instead of sharing the frozen view features across the "
                   "runs of this invocation (results are the same; also RLCF_BENCH_FEATURE_CACHE=0)")
@click.option("--dry-run", is_flag=True, help="print the planned runs and exit")
@click.option("--quiet", "-q", is_flag=True, help="no progress display, no result lines, no table")
@click.pass_obj
def run_cmd(host: PluginHost, suite: str | None, task: str | None, datasets: tuple[str, ...], methods: tuple[str, ...],
            model: str | None, reward_model: str | None, method_options: tuple[str, ...], data_params: tuple[str, ...],
            protocol_params: tuple[str, ...],
            limit: int | None, orders: int | None, seeds: int | None, seed: int | None, views: int | None, precision: str | None,
            device: str | None, batch_size: int | None, jobs: int | None, shard: str | None, data_root: str | None,
            db: str | None, on_corrupt: str, fresh: bool, no_feature_cache: bool, dry_run: bool,
            quiet: bool) -> None:
    """Run a suite (default: the embedded micro suite); options narrow or override it.

    Under torchrun (or with --shard K/N) each process computes its share of every run."""
    invoked = datetime.now(timezone.utc)  # --fresh joins an attempt of its run started since (another process)
    from .planning import PlanError, plan_runs
    from .sharding import Shard, launched, leads

    try:
        parts = Shard.parse(shard) if shard is not None else None
    except ValueError as exc:
        _fail(str(exc))
    if (parts is not None or launched()) and (jobs or 1) > 1:
        _fail("--jobs runs whole runs in local processes; with --shard or torchrun each process is one shard")
    if parts is not None and fresh:
        _fail("--fresh with --shard: each shard would start its own attempt; start fresh with a new --db")
    if quiet or not leads():
        for plugin in host.pm.get_plugins():
            if isinstance(plugin, TerminalReporter):
                plugin.quiet = True
    overrides: dict[str, Any] = {}
    for key, value in (("limit", limit), ("seed", seed), ("n_views", views), ("precision", precision)):
        if value is not None:
            overrides[key] = value
    overrides.update(_pairs(protocol_params, "--protocol-param"))
    try:
        overrides = protocol_overrides(overrides)
        requests = plan_runs(
            host, suite=suite or DEFAULT_SUITE, suite_explicit=suite is not None, task=task, datasets=datasets,
            methods=methods, model=model, reward_model=reward_model, options=_pairs(method_options, "-m"),
            data_params=_pairs(data_params, "--data-param"), overrides=overrides, orders=orders, seeds=seeds,
        )
    except (PlanError, RegistryError, ValueError) as exc:
        _fail(str(exc))
    if dry_run:
        for req in requests:
            click.echo(req.describe())
        return
    _check_preconditions(host, requests, data_root)
    _execute(host, requests, db=db, device=device, batch_size=batch_size, data_root=data_root, fresh=fresh,
             quiet=quiet, jobs=jobs, shard=parts, on_corrupt=on_corrupt, feature_cache=not no_feature_cache,
             invoked=invoked)

@click.command("report", epilog="""\b
Examples:
  rlcf-bench report                                   # one screen: methods x datasets
  rlcf-bench report --layout full                     # the full leaderboard: every group, metric and test
  rlcf-bench report --layout paper --format latex     # methods x datasets, booktabs
  rlcf-bench report --layout paper --intervals --format html --out table.html
  rlcf-bench report --all-formats --out leaderboard/reports
  rlcf-bench report --compare rlcf-image tpt-prompt    # one more paired comparison, in every table
  rlcf-bench report --claims                          # how many comparisons are significant, before/after Holm""")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json", "html", "latex"]), default="markdown",
              show_default=True, help="output format (latex: paper layout only)")
@click.option("--layout", type=click.Choice(["summary", "full", "paper"]), default=None,
              help="default: summary (full with --format, --out or --all-formats). summary: methods x datasets "
                   "on the primary metric, one screen; full: every group, metric and test; paper: the paper's "
                   "table")
@click.option("--intervals", is_flag=True, help="paper layout: print each value's 95% interval")
@click.option("--label", "labels", multiple=True, metavar="KEY=TEXT",
              help="paper layout: print TEXT for the method, dataset, model, metric or task KEY (repeatable; "
                   "overrides the plugins' display names)")
@click.option("--figures", "figures_dir", default=None, metavar="DIR",
              help="also write every figure of the HTML report into DIR as PDF and SVG")
@click.option("--reported/--no-reported", default=True, show_default=True,
              help="paper layout: the paper's own numbers as grey rows")
@click.option("--task", default=None, help="only this task (default: all)")
@click.option("--dataset", "dataset", multiple=True,
              help="only this dataset (repeatable; default: all); ranks, tests and marks stay the unfiltered ones")
@click.option("--method", "method", multiple=True,
              help="only rows of this method (repeatable; default: all); ranks, tests and marks stay the unfiltered ones")
@click.option("--out", default=None, help="write to this file (or, with --all-formats, this folder) instead of stdout")
@click.option("--all-formats", is_flag=True, help="write markdown, CSV, JSON and HTML into --out")
@click.option("--compare", "pairs", type=(str, str), multiple=True, metavar="A B",
              help="also compare method A with method B wherever both ran (repeatable); the suites declare the rest")
@click.option("--adjust", type=click.Choice(["holm", "bh"]), default="holm", show_default=True,
              help="multiplicity adjustment of the p-values over each table's family (bh: Benjamini-Hochberg)")
@click.option("--spread-tests", is_flag=True,
              help="test methods run with several --seeds/--orders over all of them (hierarchical bootstrap)")
@click.option("--claims", "claims_only", is_flag=True,
              help="print only how many comparisons are significant before and after the adjustment")
@click.option("--per-class", "per_class_run", type=click.IntRange(min=1), default=None, metavar="RUN",
              help="per-class accuracy and confusion matrix of one classification run (markdown, csv, json)")
@click.option("--db", default=None, help=DB_HELP)
@click.pass_context
def report_cmd(click_ctx: click.Context, fmt: str, layout: str | None, intervals: bool, reported: bool, task: str | None,
               dataset: tuple[str, ...], method: tuple[str, ...], out: str | None, all_formats: bool,
               pairs: tuple[tuple[str, str], ...], adjust: str, spread_tests: bool, claims_only: bool,
               per_class_run: int | None, db: str | None, labels: tuple[str, ...] = (),
               figures_dir: str | None = None) -> None:
    """Report from the stored runs: one screen of methods x datasets, the full leaderboard, or the paper's table."""
    from . import report
    from .report.labels import parse_labels
    from .report.render import ClaimOptions

    host: PluginHost = click_ctx.obj
    try:
        label_map = parse_labels(labels)
    except ValueError as exc:
        _fail(str(exc))

    if per_class_run is not None:
        _emit(_per_class_text(host, _open_store(db, create=False), per_class_run, fmt), out)
        return
    claims = ClaimOptions(pairs=tuple(pairs), adjustment=adjust, spread_tests=spread_tests)
    if layout is None:  # a plain `report` on the terminal: one screen; asked for a format or a file: everything
        chose_format = click_ctx.get_parameter_source("fmt") is not click.core.ParameterSource.DEFAULT
        layout = "full" if chose_format or out or all_formats else "summary"
    store = _open_store(db, create=False)  # read-only: the paper's rows are overlaid in memory
    if out or all_formats or fmt not in ("json", "csv"):  # scripts reading JSON/CSV get the data alone
        click.echo(f"leaderboard: {store.location}", err=True)
    if not [r for r in store.runs(status="finished", task=task)
            if (not dataset or r.dataset in dataset) and (not method or r.method in method)]:
        click.echo("the leaderboard holds no finished run" + (" matching the filters" if task or dataset or method
                                                              else "") + ": run `rlcf-bench run` first", err=True)
    if figures_dir:
        from .report.figures import write_figures

        built = report.build_for(store, host, task=task, dataset=dataset, method=method, claims=claims)
        for path in write_figures(built, figures_dir):
            click.echo(f"figure: {path}", err=True)
    if claims_only:
        from .report.claims import claim_counts

        built = report.build_for(store, host, task=task, dataset=dataset, method=method, claims=claims)
        click.echo(claim_counts(built).text())
        return
    if all_formats:
        if not out:
            _fail("--all-formats needs --out FOLDER")
        for path in report.write_report(store, out, host=host, task=task, dataset=dataset, method=method,
                                        claims=claims):
            click.echo(str(path))
        return
    if layout == "summary":
        if fmt != "markdown":
            _fail("the summary layout is markdown only (use --layout full for other formats)")
        _emit(_summary_text(host, store, claims, task=task, dataset=dataset, method=method, db=db), out)
        return
    if layout == "paper":
        if fmt == "json":
            _fail("the paper layout has no json format (use --layout full for JSON rows)")
        text = report.render_paper(store, fmt, host=host, task=task, dataset=dataset, method=method,
                                   intervals=intervals, reported=reported, claims=claims, labels=label_map)
    elif fmt == "latex":
        _fail("--format latex needs --layout paper")
    else:
        text = report.render(store, fmt, host=host, task=task, dataset=dataset, method=method, claims=claims)
    _emit(text, out)

@click.command("compare", epilog="""\b
Example:
  rlcf-bench compare 12 7                             # run 12 against run 7 (ids: rlcf-bench report)""")
@click.argument("run_a", type=int)
@click.argument("run_b", type=int)
@click.option("--db", default=None, help=DB_HELP)
@click.pass_obj
def compare_cmd(host: PluginHost, run_a: int, run_b: int, db: str | None) -> None:
    """Paired comparison of two runs on the samples they share."""
    from . import report
    from .report.tasks import catalog_from

    store = _open_store(db, create=False)
    click.echo(report.compare(store, run_a, run_b, tasks=catalog_from(store, host)))

@click.group("store", epilog="""\b
Examples:
  rlcf-bench store merge gpu1.sqlite gpu2.sqlite --db all.sqlite
  rlcf-bench store refresh-references --db leaderboard/leaderboard.sqlite""")
def store_group() -> None:
    """Maintain leaderboard stores: merge them, refresh their reference rows (read commands never write to one)."""

@store_group.command("merge", epilog="""\b
Examples:
  rlcf-bench store merge gpu1.sqlite gpu2.sqlite      # into the default leaderboard
  rlcf-bench store merge --db all.sqlite --dry-run a.sqlite   # what would be added""")
@click.argument("sources", nargs=-1, required=True)
@click.option("--db", default=None, help="the destination leaderboard (created if new); " + DB_HELP)
@click.option("--dry-run", is_flag=True, help="report what would be merged; write nothing")
def store_merge_cmd(sources: tuple[str, ...], db: str | None, dry_run: bool) -> None:
    """Merge other leaderboards' finished runs into this one, without duplicates.

    A run is identified by its key (task, dataset, method and config, models, protocol hash,
    seed): one the destination lacks is copied with its samples and metrics, one it holds with
    the same per-sample results is skipped, one with other results is a conflict (listed; the
    destination's run is kept; exit code 1). Sources are only read.
    """
    from .store_merge import merge_store

    opened = [_open_store(src, create=False) for src in sources]  # every source checked before any write
    dest = _open_store(db, create=not dry_run)
    for src in opened:
        if src.location == dest.location:
            _fail(f"store merge: {src.location} is the destination itself (expected another leaderboard)")
    conflicts = 0
    for src in opened:
        outcome = merge_store(dest, src, dry_run=dry_run)
        click.echo(outcome.summary(dry_run))
        for line in outcome.conflicts:
            click.echo(f"  conflict: {line}")
        conflicts += len(outcome.conflicts)
    if conflicts:
        sys.exit(1)

@click.group("runs", epilog="""\b
Examples:
  rlcf-bench runs hide 12 13 --reason "before the DPE fix"
  rlcf-bench runs hidden
  rlcf-bench runs unhide 12""")
def runs_group() -> None:
    """Curate stored runs: hide obsolete ones from reports (reversibly)."""

@runs_group.command("hide", epilog="""\b
Examples:
  rlcf-bench runs hide 12 13 --reason "before the DPE fix"
  rlcf-bench runs hidden                              # list them
  rlcf-bench runs unhide 12""")
@click.argument("run_ids", nargs=-1, required=True, type=click.IntRange(min=1))
@click.option("--reason", default="", help="why (shown by `runs hidden`)")
@click.option("--db", default=None, help=DB_HELP)
def runs_hide_cmd(run_ids: tuple[int, ...], reason: str, db: str | None) -> None:
    """Leave runs out of every report; they stay in the store (`runs unhide` shows them again)."""
    _set_hidden(db, run_ids, True, reason)

@runs_group.command("unhide", epilog="""\b
Example:
  rlcf-bench runs unhide 12 13""")
@click.argument("run_ids", nargs=-1, required=True, type=click.IntRange(min=1))
@click.option("--db", default=None, help=DB_HELP)
def runs_unhide_cmd(run_ids: tuple[int, ...], db: str | None) -> None:
    """Show hidden runs in reports again."""
    _set_hidden(db, run_ids, False, "")

@runs_group.command("hidden", epilog="""\b
Example:
  rlcf-bench runs hidden --db leaderboard/leaderboard.sqlite""")
@click.option("--db", default=None, help=DB_HELP)
def runs_hidden_cmd(db: str | None) -> None:
    """List the hidden runs (id, run, reason)."""
    from .store import run_label

    store = _open_store(db, create=False)
    hidden = store.hidden_runs()
    for run in store.runs(status=None, include_hidden=True):
        if run.id in hidden:
            click.echo(f"{run.id:>6}  {run_label(run)}" + (f"  — {hidden[run.id]}" if hidden[run.id] else ""))
    if not hidden:
        click.echo("no hidden runs")

@store_group.command("refresh-references", epilog="""\b
Example:
  rlcf-bench store refresh-references --db leaderboard/leaderboard.sqlite""")
@click.option("--db", default=None, help=DB_HELP)
@click.pass_obj
def refresh_references_cmd(host: PluginHost, db: str | None) -> None:
    """Store the installed plugins' paper numbers (reference rows) in an existing store;
    `run` does this too, `report` only shows them."""
    _open_store(db, create=False).engine.dispose()  # an existing store only, checked before writing
    store = _open_store(db)
    before = len(store.references())
    _store_references(host, store)
    click.echo(f"{store.location}: {len(store.references()) - before} reference row(s) added, "
               f"{len(host.references())} registered")


#: The core's commands; each receives the session's :class:`PluginHost` as click's context object.
BUILTIN_COMMANDS: tuple[click.Command, ...] = (ls_cmd, plugins_cmd, validate_cmd, run_cmd, report_cmd, compare_cmd,
                                               store_group, runs_group)


def build_cli(host: PluginHost) -> click.Group:
    """The command group of one session: the built-in commands, then the plugins' own
    (``rlcfb_add_commands``). Every command receives ``host`` as click's context object
    (``@click.pass_obj``, ``ctx.obj`` or ``ctx.find_object(PluginHost)``), the built-in ones as a
    plugin's do."""
    cli = _root_group()
    cli.context_settings["obj"] = host
    for command in BUILTIN_COMMANDS:
        cli.add_command(command)
    host.add_commands(cli)
    return cli


def _check_preconditions(host: PluginHost, requests: Sequence[Any], data_root: str | None) -> None:
    """Stop before the first run, listing every missing model file and data problem at once."""
    from .preflight import preflight

    problems = preflight(host, requests, data_root=data_root)
    if problems:
        click.echo(f"error: {len(problems)} problem(s) stop these runs; nothing was run:", err=True)
        for problem in problems:
            click.echo("  - " + problem.replace("\n", "\n    "), err=True)
        sys.exit(2)


def _component_lines(host: PluginHost, kind: str, pattern: str | None) -> list[str]:
    """``name  vVERSION  [provider]  details  — description`` per registered component of ``kind``."""
    reg = host.registry(kind)
    lines = []
    for name in reg.names(pattern):
        spec = reg.summary(name)
        extra = ""
        if kind == "methods":
            extra = f"  tasks={','.join(sorted(spec.tasks))}"
            extra += "  needs reward model" if "reward_model" in spec.requires else ""
            extra += f"  {spec.mode}"
        elif kind == "datasets":
            extra = f"  tasks={','.join(sorted(spec.task_kinds))}"
        elif kind == "reward-models":
            extra = "  " + " + ".join(f"{w:g}*{m}" for m, w in spec.members)
        version = getattr(spec, "version", "")
        version_text = f"v{version}" if version else ""
        desc = getattr(spec, "description", "")
        lines.append(f"{name:28s} {version_text:<9s} [{spec.provider}]{extra}" + (f"  — {desc}" if desc else ""))
    return lines


def _open_store(db: str | None, *, create: bool = True) -> Any:
    """Open the store (``create=False``: an existing one only — ``report`` never creates one).
    Refusals (:class:`~rlcf_bench.errors.StoreError`) reach the CLI's error boundary."""
    from .store import Store

    return Store(db, create=create)


def _emit(text: str, out: str | None) -> None:
    """Write a report to ``out`` (printing its path) or to stdout."""
    from pathlib import Path

    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        click.echo(out)
    else:
        click.echo(text)


def _per_class_text(host: PluginHost, store: Any, run_id: int, fmt: str) -> str:
    """``report --per-class RUN``: names from the run's dataset where it is installed here."""
    from .report.per_class import per_class, render_per_class
    from .session import ComponentSession

    if fmt not in ("markdown", "csv", "json"):
        _fail(f"--per-class writes markdown, csv or json (got --format {fmt})")
    run = store.get_run(run_id)
    names: Sequence[str] | None = None
    if run is not None:
        try:
            spec = host.registry("datasets").get(run.dataset)
            names = getattr(ComponentSession(host).dataset(spec, dict(run.dataset_params or {})), "classnames", None)
        except Exception:  # not installed here, or needs a data root: indices are shown instead
            click.echo(f"note: dataset {run.dataset!r} cannot be opened here; classes are shown as indices", err=True)
    try:
        return render_per_class(per_class(store, run_id, names), fmt)
    except ValueError as exc:
        _fail(str(exc))


def _summary_text(host: PluginHost, store: Any, claims: Any, *, task: str | None, dataset: Sequence[str],
                  method: Sequence[str], db: str | None) -> str:
    """``report``'s default: the stored runs as methods x datasets matrices, and how to see more."""
    from .report.run_summary import render_run_summary

    ids = [r.id for r in store.runs(status="finished", task=task)
           if (not dataset or r.dataset in dataset) and (not method or r.method in method)]
    db_flag = f" --db {db}" if db else ""
    more = (f"rlcf-bench report{db_flag} --layout full (every group, metric and test; the paper's table: "
            "--layout paper; files: --all-formats --out DIR)")
    text = render_run_summary(store, ids, host=host, claims=claims, subject="The leaderboard", more=more)
    return text + "\n" if text else ""


def _set_hidden(db: str | None, run_ids: Sequence[int], hidden: bool, reason: str) -> None:
    _open_store(db, create=False).engine.dispose()  # an existing store only, checked before writing
    store = _open_store(db)
    try:
        changed = store.set_hidden(sorted(set(run_ids)), hidden, reason)
    except KeyError as exc:
        _fail(f"runs {'hide' if hidden else 'unhide'}: no run with id {', '.join(map(str, exc.args[0]))} in "
              f"{store.location} (expected ids shown by `rlcf-bench report`); nothing was changed")
    verb = "hidden" if hidden else "shown again"
    click.echo(f"{len(changed)} run(s) {verb}" + (f": {', '.join(map(str, changed))}" if changed else " (no change)"))


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
                    host.registry(kind).summary(name)
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
             data_root: str | None, fresh: bool, quiet: bool, jobs: int | None = None, shard: Any = None,
             on_corrupt: str = "fail", feature_cache: bool = True, invoked: datetime | None = None) -> None:
    from .device import select_device
    from .view_cache import invocation_cache

    select_device(device)  # a missing CUDA device is refused before the store is touched
    with invocation_cache(feature_cache) as cache_dir:  # shared by this invocation's runs, removed at its end
        _execute_with(host, requests, db=db, device=device, batch_size=batch_size, data_root=data_root, fresh=fresh,
                      quiet=quiet, jobs=jobs, shard=shard, on_corrupt=on_corrupt, feature_cache=cache_dir,
                      invoked=invoked)


def _execute_with(host: PluginHost, requests: Sequence[Any], *, db: str | None, device: str | None,
                  batch_size: int | None, data_root: str | None, fresh: bool, quiet: bool, jobs: int | None,
                  shard: Any, on_corrupt: str, feature_cache: str | None, invoked: datetime | None = None) -> None:
    from . import distributed, sharding
    from .progress import SuiteProgress
    from .runner import ExecutionOptions

    options = ExecutionOptions(device=device, batch_size=batch_size, data_root=data_root, fresh=fresh,
                               fresh_since=invoked if fresh else None,
                               on_corrupt=on_corrupt, feature_cache=feature_cache)
    progress = SuiteProgress(len(requests), enabled=not quiet and sharding.leads())
    reporters = [p for p in host.pm.get_plugins() if isinstance(p, TerminalReporter)]
    for reporter in reporters:
        reporter.progress = progress
    lead = True
    try:
        if shard is not None or sharding.launched():
            try:
                shared = distributed.execute(host, requests, db=db, options=options, shard=shard, quiet=quiet,
                                             run_one=_run_one, references=lambda s: _store_references(host, s),
                                             progress=progress)
            except click.ClickException as exc:  # stops every rank alike, before anything is computed
                _fail(exc.format_message(), exc.exit_code)
            store, outcomes, lead = shared.store, shared.outcomes, shared.lead
        else:
            store = _open_store(db)
            _store_references(host, store)
            jobs = min(jobs or _default_jobs(device), len(requests))
            if jobs > 1:
                from .gpus import DeviceMappingError, worker_devices

                try:  # N workers on one GPU would skew every timing: each gets its own, or -j is refused
                    devices = worker_devices(device, jobs)
                except DeviceMappingError as exc:
                    _fail(f"--jobs {jobs}: {exc}")
                outcomes = _run_parallel(host, requests, store.url, options, jobs, quiet, progress, devices)
            else:
                outcomes = _run_serial(host, requests, store, options, quiet, progress)
    finally:
        progress.close()
        for reporter in reporters:
            reporter.progress = None
    failures = sum(1 for o in outcomes if o.error is not None)
    if not quiet and lead:
        _print_run_summary(host, store, outcomes, db)
    if failures:
        click.echo(f"{failures} of {len(requests)} runs failed", err=True)
        sys.exit(1)


def _print_run_summary(host: PluginHost, store: Any, outcomes: Sequence[RunOutcome], db: str | None) -> None:
    """The runs just executed (not the whole leaderboard), where they are stored, and how to see more."""
    from .report.run_summary import render_run_summary

    ids = [o.run_id for o in outcomes if o.run_id is not None and o.error is None]
    db_flag = f" --db {db}" if db else ""
    text = render_run_summary(store, ids, reused=[o.run_id for o in outcomes if o.reused and o.run_id is not None],
                              host=host, more=f"rlcf-bench report{db_flag} --layout full")
    if text:
        click.echo(text)
    click.echo(f"leaderboard: {store.location} · paper table: rlcf-bench report{db_flag} --layout paper")


def _run_one(runner: Any, req: Any, shard: Any = None) -> RunOutcome:
    """Run one request (or its ``shard``); return its summary line or error message."""
    from .errors import describe
    from .types import DatasetLayoutError

    try:
        result = runner.run(req) if shard is None else runner.run(req, shard)
    except DatasetLayoutError as exc:
        return RunOutcome("", f"the dataset layout is wrong, nothing was run:\n{exc}")
    except Exception as exc:  # one failed run must not stop the others; the store keeps its traceback
        if getattr(getattr(runner.host, "cli_options", None), "verbose", False):
            import traceback

            traceback.print_exc()
        return RunOutcome("", describe(exc))
    if result.status != "finished":  # a --shard task that left samples to other shards
        return RunOutcome(f"run {result.run_id}: shard {shard} stored; {result.n_samples} samples of the run are "
                          "stored, the shard that completes it stores its metrics", None)
    from .report.run_summary import result_metrics

    shown = result_metrics(result.metrics, runner.host.registry("tasks").get(result.spec.task).metrics)
    lat = f", {result.latency.ms_per_sample_mean:.1f} ms/sample" if result.latency else ""
    reused = " — reused: finished earlier with the same settings (--fresh re-runs it)" if result.reused else ""
    samples = "" if f"(n={result.n_samples})" in shown else f"; {result.n_samples} samples"
    return RunOutcome(f"run {result.run_id}: {shown}{samples}{lat}{reused}", None, result.run_id, result.reused)


def _run_serial(host: PluginHost, requests: Sequence[Any], store: Any, options: Any, quiet: bool,
                progress: Any) -> list[RunOutcome]:
    from .runner import Runner

    runner = Runner(host, store, options)
    outcomes: list[RunOutcome] = []
    for i, req in enumerate(requests, 1):
        if not quiet:
            progress.write(f"[{i}/{len(requests)}] {req.describe()}")
        outcome = _run_one(runner, req)
        progress.run_done(outcome.run_id)
        if outcome.error is not None:
            progress.write(f"error: {outcome.error}")
        elif not quiet:
            progress.write(f"      {outcome.line}")
        outcomes.append(outcome)
    return outcomes


_WORKER: dict[str, Any] = {}


def _worker_init(opts: GlobalOptions, db_url: str, options: Any, threads: int, events: Any = None,
                 devices: Any = None) -> None:
    import dataclasses
    import os

    os.environ["RLCF_BENCH_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warning from HF tokenizers
    from .errors import install_warning_format
    from .progress import ProgressForwarder
    from .runner import Runner
    from .store import Store
    from .workers import exit_with_parent

    exit_with_parent()
    install_warning_format()  # a spawned worker's warnings print as the parent's do

    host = build_host(opts, quiet=True)
    if events is not None:
        host.pm.register(_make_hookimpls(ProgressForwarder(events)))
    if devices is not None:  # this worker's own GPU (rlcf_bench.gpus.worker_devices)
        options = dataclasses.replace(options, device=devices.get())
    _WORKER["runner"] = Runner(host, Store(db_url), options)


def _worker_run(req: Any) -> RunOutcome:
    from .workers import stopped

    if stopped():
        return RunOutcome("", "interrupted — the worker was stopped before this run started")
    try:
        return _run_one(_WORKER["runner"], req)
    except KeyboardInterrupt:  # the run is marked interrupted; the parent reports and exits
        return RunOutcome("", "interrupted — the worker was stopped (the run is marked interrupted)")


def _run_parallel(host: PluginHost, requests: Sequence[Any], db_url: str, options: Any, jobs: int,
                  quiet: bool, progress: Any, devices: Sequence[str] | None = None) -> list[RunOutcome]:
    """Runs in ``jobs`` spawned processes with one thread each (SQLite WAL lets them write at
    once). Each run still times itself; with one job per core the timings stay per-core figures."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .progress import drain
    from .workers import interrupt_workers

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // jobs)
    opts = getattr(host, "cli_options", None) or GlobalOptions()
    if not quiet:
        progress.write(f"running {len(requests)} runs in {jobs} parallel processes ({threads} thread(s) each)")
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue() if not quiet else None
    device_queue = None
    if devices is not None:  # one GPU per worker, handed out as the workers start
        device_queue = ctx.Queue()
        for d in devices:
            device_queue.put(d)
    outcomes: list[RunOutcome] = [RunOutcome("", "not run")] * len(requests)
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                               initargs=(opts, db_url, options, threads, events, device_queue))
    with pool, interrupt_workers(pool):
        futures = {pool.submit(_worker_run, req): i for i, req in enumerate(requests)}
        pending = set(futures)
        done = 0
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if events is not None:
                drain(events, progress)
            for fut in finished:
                i = futures[fut]
                done += 1
                try:
                    outcome = fut.result()
                except Exception as exc:  # a crashed worker must not hide the other runs
                    outcome = RunOutcome("", f"{type(exc).__name__}: {exc}")
                outcomes[i] = outcome
                progress.run_done(outcome.run_id)
                if outcome.error:
                    progress.write(f"error [{requests[i].describe()}]: {outcome.error}")
                elif not quiet:
                    progress.write(f"[{done}/{len(requests)}] {requests[i].describe()}\n      {outcome.line}")
    return outcomes


def main(argv: Sequence[str] | None = None) -> None:
    """The entry point and the CLI's one error boundary (see :mod:`rlcf_bench.errors`)."""
    from . import errors

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    errors.install_signal_handlers()
    errors.install_warning_format()
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
