"""The paper layout: methods as rows, datasets as columns, the average at the end.

One :class:`PaperTable` per task, on its primary metric (the column a paper's table reports).
Only the *main* comparable group of each dataset contributes (runs listed apart, e.g. limited
runs, would not be like-for-like), plus the reward models' own zero-shot reference runs. A row
is one (method, non-default options, model, reward model, method version); its average is the
mean over the table's datasets and is left empty when the row misses one of them (an average
over fewer datasets would not be comparable with the others). Where a suite declares a dataset
group of this task whose datasets are all in the table (the paper's "OOD avg",
:attr:`rlcf_bench.types.SuiteSpec.averages`), the last column is that group's average instead,
named after it, with the stratified interval of the report's average row
(:mod:`rlcf_bench.report.averages`) where the row's runs are the ones that row averages.

Columns follow the suites' order: the datasets of no declared group first (as the report lists
them), then the declared group's datasets in the order the suite declares them, next to their
average. Display names (``names``: a method, model, dataset, metric, task or average name to the
text a paper prints; declared by plugins, overridden by ``report --label KEY=TEXT``,
:mod:`rlcf_bench.report.labels`) replace the names in row labels, column titles and captions.

Rows are ordered by the method family the suites declare (the reference method first, then each
family, its baseline among its members, then the methods of no family), and within a family by
the last column. The best value of each column among the measured rows is marked (values compared
as printed, two decimals, so printed ties are both marked), and so is every value *not
significantly different* from it: its paired test against the column's best run (the group's best
on a dataset, the stratified test on the average) has a multiplicity-adjusted p of 5% or more
(:mod:`rlcf_bench.report.claims`). Two Δ columns follow the last one: the last column's
difference to the reference method's and to the family baseline's, with the 95% interval of the
difference and ``*`` when significant after the adjustment (from the average's stratified test, or
the dataset's paired test when the table has one dataset; untested, a dash, otherwise). The
reward models' reference rows are context and never marked. Paper numbers stored as references for the same
(task, dataset, method, model, reward model, metric) become optional *reported* rows, shown in
grey below the measured ones and never marked best.

The formats live in :mod:`rlcf_bench.report.paper_formats`; all of them render these numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from ..store import Reference
from ..types import NO_COMPARISONS, Comparisons, DatasetAverage, MetricValue, TaskMetrics
from .averages import AverageRow, PooledComparison
from .rows import Comparison, LeaderboardRow, Report
from .tasks import GENERIC

AVERAGE = "average"
REFERENCE_SUFFIX = " — reward model's reference run"
DIGITS = 2  # what the text formats print; best marks compare values at this precision


@dataclass(frozen=True)
class PaperCell:
    """One number of the table (``value`` None: no run for this dataset)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    best: bool = False
    run_id: int | None = None
    tied: bool = False  # not significantly different from the column's best (adjusted p >= 5%)

    @property
    def present(self) -> bool:
        return self.value is not None and not math.isnan(self.value)


@dataclass(frozen=True)
class PaperRow:
    """``kind`` is ``measured`` (a stored run per column), ``reference`` (the reward model's own
    zero-shot: measured, shown for context, never marked best) or ``reported`` (a paper number)."""

    label: str
    kind: str
    cells: tuple[PaperCell, ...]  # one per dataset, then the average
    source: str = ""
    vs_reference: Comparison | PooledComparison | None = None  # the last column against the reference method
    vs_baseline: Comparison | PooledComparison | None = None  # ... against the family baseline
    family: str = ""
    method: str = ""  # the method's name (what a --method filter selects)
    short_label: str = ""  # the label without REFERENCE_SUFFIX (a format that marks reference rows instead)

    @property
    def name(self) -> str:
        return self.short_label or self.label


@dataclass(frozen=True)
class PaperTable:
    task: str
    task_kind: str
    metric: str
    datasets: tuple[str, ...]
    rows: tuple[PaperRow, ...]
    average: str = AVERAGE  # the last column's name: a declared group's (e.g. "OOD avg") or "average"
    averaged: tuple[str, ...] = ()  # the datasets the last column averages (empty: all of them)
    meta: TaskMetrics = GENERIC  # the task's metric metadata (unit, the metric's direction)
    reference: str = ""  # the declared reference method (the first Δ column's)
    seeds: tuple[int, ...] = ()  # the protocol (view) seeds of the measured runs shown
    scope: str = ""  # a filtered table: what its marks refer to (rlcf_bench.report.filters)
    tested: bool = True  # False: a further metric's table, without paired-test marks (``_untested_table``)
    names: Mapping[str, str] = field(default_factory=dict)  # display names (module docstring)

    def title(self, name: str) -> str:
        """A name as the table prints it (its display name where one is declared)."""
        return self.names.get(name, name)

    @property
    def columns(self) -> tuple[str, ...]:
        """The column titles after the row label: the datasets, then the last column."""
        return (*(self.title(d) for d in self.datasets), self.title(self.average))

    @property
    def unit(self) -> str:
        return "%" if self.meta.score.percent else ""

    @property
    def metric_title(self) -> str:
        """The metric as a reader names it: a declared display name, the task's label for it, or the name."""
        return self.names.get(self.metric) or self.meta.metric(self.metric).label or self.metric

    @property
    def caption(self) -> str:
        """What a person would write under the table (the marks are explained by :attr:`legend`)."""
        unit = f" ({self.unit})" if self.unit else ""
        n = len(self.datasets)
        where = f"on {self.columns[0]}" if n == 1 else f"on {n} datasets"
        if self.averaged:
            last = f", with their {self.title(self.average)} ({', '.join(self.title(d) for d in self.averaged)})"
        else:
            last = "" if n == 1 else ", with their average"
        seeds = ", ".join(map(str, self.seeds)) or "n/a"
        reference = self.title(self.reference) if self.reference else "the reference method"
        return (f"{self.title(self.task)}: {self.metric_title}{unit} {where}{last}. "
                + (f"Δ: the last column's difference to {reference} and to the method's family baseline, "
                   f"with its 95% interval. " if self.tested else
                   "No Δ columns or paired tests here (the report tests the primary metric). ")
                + f"Protocol seed {seeds}, one run per cell." + (f" {self.scope}" if self.scope else ""))

    @property
    def legend(self) -> str:
        """The marks' meaning (bold, †, *, the reference rows, the reported rows)."""
        out = ("Bold: best measured value per column; †: not significantly different from it (paired test, "
               "adjusted p ≥ 0.05); *: significant after the multiplicity adjustment." if self.tested else
               "Bold: best measured value per column.")
        if any(r.kind == "reference" for r in self.rows):
            reference = self.title(self.reference) if self.reference else "the reference method"
            out += f" ‡: the reward model's own run of {reference}, for context (never ranked)."
        if any(r.kind == "reported" for r in self.rows):
            out += " Grey: numbers reported in papers for the same setting."
        return out

    @property
    def sources(self) -> tuple[tuple[str, str], ...]:
        """(column title, dataset name) of the datasets given as paths and headed by a short name."""
        return tuple((self.title(d), d) for d in self.datasets if self.title(d) != d and ":" in d and "/" in d)

    @property
    def sources_text(self) -> str:
        return "; ".join(f"{title} = {name}" for title, name in self.sources)

    @property
    def delta_columns(self) -> tuple[str, ...]:
        """The Δ columns after the last one."""
        return (f"Δ vs {self.title(self.reference) if self.reference else 'reference'}", "Δ vs family baseline")


@dataclass(frozen=True)
class _AverageColumn:
    """Which cells the last column averages (indices into the table's datasets) and the report's
    average rows with intervals, by the run ids they average."""

    indices: tuple[int, ...]
    intervals: dict[tuple[int, ...], AverageRow]

    def row(self, cells: Sequence[PaperCell]) -> AverageRow | None:
        """The report's average row behind these cells (None: a plain, untested average)."""
        chosen = [cells[i] for i in self.indices]
        if not chosen or not all(c.present for c in chosen):
            return None
        return self.intervals.get(tuple(c.run_id or 0 for c in chosen))

    def cell(self, cells: Sequence[PaperCell]) -> PaperCell:
        chosen = [cells[i] for i in self.indices]
        if not chosen or not all(c.present for c in chosen):
            return PaperCell(None)
        value = sum(c.value for c in chosen) / len(chosen)  # type: ignore[misc]
        row = self.row(cells)
        if row is None:
            return PaperCell(value)
        return PaperCell(value, row.ci_low, row.ci_high, tied=row.vs_best is not None and not row.vs_best.significant)


def _average_column(task: str, kind: str, datasets: tuple[str, ...], groups: Sequence[DatasetAverage],
                    averages: Sequence[AverageRow]) -> tuple[str, tuple[str, ...], _AverageColumn]:
    """The declared group of this task whose datasets the table has (the one with most datasets),
    else the plain average over every dataset of the table."""
    fitting = [g for g in groups if g.covers(kind) and set(g.datasets) <= set(datasets)]
    if not fitting:
        return AVERAGE, (), _AverageColumn(tuple(range(len(datasets))), {})
    group = max(fitting, key=lambda g: len(g.datasets))
    rows = {a.run_ids: a for a in averages if a.task == task and a.name == group.name and a.datasets == group.datasets}
    return group.name, group.datasets, _AverageColumn(tuple(datasets.index(d) for d in group.datasets), rows)


def _cell(mv: MetricValue | None, row: LeaderboardRow) -> PaperCell:
    if mv is None:
        return PaperCell(None)
    best = row.vs_best  # a corpus metric's column has no test of its own: no tie mark from another quantity's
    tied = best is not None and best.n_shared > 0 and best.on_primary and not best.significant
    return PaperCell(mv.value, mv.ci_low, mv.ci_high, run_id=row.run_id, tied=tied)


def _mark_best(rows: list[PaperRow], n_columns: int, higher_is_better: bool = True) -> list[PaperRow]:
    """Mark, per column, the measured cells equal (as printed) to the column's best."""
    best: list[float | None] = []
    pick = max if higher_is_better else min
    for j in range(n_columns):
        values = [round(r.cells[j].value, DIGITS) for r in rows  # type: ignore[arg-type]
                  if r.kind == "measured" and r.cells[j].present]
        best.append(pick(values) if values else None)
    out = []
    for r in rows:
        if r.kind != "measured":
            out.append(r)
            continue
        cells = tuple(
            PaperCell(c.value, c.ci_low, c.ci_high,
                      c.present and best[j] is not None and round(c.value, DIGITS) == best[j],  # type: ignore[arg-type]
                      c.run_id, c.tied)
            for j, c in enumerate(r.cells))
        out.append(replace(r, cells=cells))
    return out


def _row_key(row: LeaderboardRow) -> tuple[str, str, str, str, str]:
    return (row.method, row.options_text, row.model, row.reward_model or "", row.method_version)


def _labels(keys: Sequence[tuple[str, str, str, str, str]],
            names: Mapping[str, str]) -> dict[tuple[str, str, str, str, str], str]:
    """The shortest label that still tells the rows apart: the method, its options, then the model
    where it is not the table's usual one, the reward model and the version where they vary
    (each name as its display name where ``names`` has one)."""
    models = Counter(k[2] for k in keys)
    main_model = models.most_common(1)[0][0] if models else ""
    rewards: dict[str, set[str]] = {}
    versions: dict[str, set[str]] = {}
    for m, _, _, rm, v in keys:
        rewards.setdefault(m, set()).add(rm)
        versions.setdefault(m, set()).add(v)
    out = {}
    for key in keys:
        method, opts, model, rm, version = key
        label = names.get(method, method) + (f" v{version}" if len(versions[method]) > 1 else "")
        label += f" [{opts}]" if opts else ""
        extra = []
        if model != main_model:
            extra.append(names.get(model, model))
        if rm and len(rewards[method]) > 1:
            extra.append(f"reward {names.get(rm, rm)}")
        out[key] = label + (f" ({', '.join(extra)})" if extra else "")
    return out


def _measured_rows(task_rows: list[tuple[LeaderboardRow, bool]], datasets: tuple[str, ...],
                   metric: str, average: _AverageColumn, comparisons: Comparisons = NO_COMPARISONS,
                   higher_is_better: bool = True, names: Mapping[str, str] | None = None) -> list[PaperRow]:
    """``task_rows``: (row, is a reward-model reference) pairs; the methods ordered by declared
    family (reference first), then by the last column; references after the methods."""
    by_key: dict[tuple[str, str, str, str, str], dict[str, LeaderboardRow]] = {}
    is_ref: dict[tuple[str, str, str, str, str], bool] = {}
    for row, ref in task_rows:
        key = _row_key(row)
        by_key.setdefault(key, {}).setdefault(row.dataset, row)
        is_ref[key] = is_ref.get(key, True) and ref
    labels = _labels(list(by_key), names or {})
    out: list[tuple[tuple[int, int, float, str], PaperRow]] = []
    families = [f.name for f in comparisons.families]
    for key, per_ds in by_key.items():
        cells = [(_cell(per_ds[d].metrics.get(metric), per_ds[d]) if d in per_ds else PaperCell(None))
                 for d in datasets]
        label = labels[key] + (REFERENCE_SUFFIX if is_ref[key] else "")
        last = average.cell(cells)
        avg_row = average.row(cells)
        only = next(iter(per_ds.values())) if len(datasets) == 1 else None
        vs_ref = avg_row.vs_reference if avg_row is not None else (only.vs_reference if only is not None else None)
        vs_base = avg_row.vs_baseline if avg_row is not None else (only.vs_baseline if only is not None else None)
        method = key[0]
        family = comparisons.family_of(method) or ""
        rank = (0 if method == comparisons.reference else families.index(family) + 1 if family
                else len(families) + 1)
        value = float(last.value) if last.value is not None and last.present else math.nan
        order = -value if higher_is_better else value
        sort_key = (int(is_ref[key]), rank, math.inf if math.isnan(order) else order, label)
        out.append((sort_key, PaperRow(label, "reference" if is_ref[key] else "measured", (*cells, last),
                                       vs_reference=None if is_ref[key] else vs_ref,
                                       vs_baseline=None if is_ref[key] else vs_base, family=family,
                                       method=method, short_label=labels[key] if is_ref[key] else "")))
    return [row for _, row in sorted(out, key=lambda item: item[0])]


def _reported_rows(task: str, datasets: tuple[str, ...], metric: str, task_rows: Sequence[LeaderboardRow],
                   references: Sequence[Reference], average: _AverageColumn,
                   names: Mapping[str, str]) -> list[PaperRow]:
    """Paper numbers for the settings measured in this table (same method, model, reward model)."""
    settings = {(r.method, r.model, r.reward_model or "") for r in task_rows}
    by_key: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for ref in references:
        if ref.task != task or ref.metric != metric or ref.dataset not in datasets:
            continue
        if (ref.method, ref.model, ref.reward_model or "") not in settings:
            continue
        by_key.setdefault((ref.method, ref.model, ref.reward_model or "", ref.source), {})[ref.dataset] = ref.value
    out = []
    for (method, _model, _rm, source), values in by_key.items():
        cells = [PaperCell(values.get(d)) for d in datasets]
        out.append(PaperRow(f"{names.get(method, method)} (reported: {source})", "reported", (*cells, average.cell(cells)),
                            source, method=method))
    return out


def _path_names(datasets: Sequence[str], names: Mapping[str, str]) -> dict[str, str]:
    """Short column titles for datasets given as paths (``folder:/data/photos`` → ``photos``,
    ``csv:/lists/street.csv`` → ``street``) where no display name is declared and the short name
    is unique in the table; a reader's own datasets would otherwise head a column with a path."""
    short = {}
    for d in datasets:
        scheme, sep, rest = d.partition(":")
        if d in names or not sep or "/" not in rest:
            continue
        leaf = PurePosixPath(rest.rstrip("/")).name
        short[d] = (PurePosixPath(leaf).stem if scheme != "folder" else leaf) or d
    counts = Counter(short.values())
    return {d: text for d, text in short.items() if counts[text] == 1}


def _suite_order(datasets: Sequence[str], kind: str, groups: Sequence[DatasetAverage]) -> tuple[str, ...]:
    """The datasets of no declared group first (in the report's order), then each declared group's
    (of this task kind, the largest group first) in the order its suite declares them."""
    grouped: list[str] = []
    for g in sorted((g for g in groups if g.covers(kind)), key=lambda g: -len(g.datasets)):
        grouped += [d for d in g.datasets if d in datasets and d not in grouped]
    return (*(d for d in datasets if d not in grouped), *grouped)


def build_paper_tables(report: Report, references: Sequence[Reference] = (), *,
                       reported: bool = True, methods: frozenset[str] | None = None,
                       scope: str = "", names: Mapping[str, str] | None = None) -> list[PaperTable]:
    """One table per task of ``report``, from each dataset's main group and its reward-model
    references; paper numbers as ``reported`` rows when ``reported``. ``methods``: show only these
    methods' rows (and the reward models' reference rows), marked as in the whole table; ``scope``
    says so in the caption; ``names``: display names (:mod:`rlcf_bench.report.labels`)."""
    names = dict(names or {})
    by_task: dict[str, list[tuple[LeaderboardRow, bool]]] = {}
    metrics: dict[str, str] = {}
    kinds: dict[str, str] = {}
    metas: dict[str, TaskMetrics] = {}
    order: dict[str, list[str]] = {}
    for section in report.sections:
        main = next((g for g in section.groups if g.is_main), None)
        if main is None or main.primary_metric is None:
            continue
        metric = metrics.setdefault(section.task, main.primary_metric)
        if metric != main.primary_metric:
            continue  # a dataset whose main group lacks the task's metric cannot share its columns
        kinds[section.task] = section.task_kind
        metas[section.task] = section.rows[0].meta
        order.setdefault(section.task, []).append(section.dataset)
        members = [(r, False) for r in main.rows if r.rank is not None]
        members += [(r, True) for r in main.reward_model_refs]
        by_task.setdefault(section.task, []).extend(members)
    tables = []
    for task, task_rows in by_task.items():
        datasets = _suite_order(order[task], kinds[task], report.average_groups)
        table_names = {**_path_names(datasets, names), **names}
        metric = metrics[task]
        name, averaged, average = _average_column(task, kinds[task], datasets, report.average_groups, report.averages)
        meta = metas[task]
        higher = meta.metric(metric).higher_is_better
        rows = _measured_rows(task_rows, datasets, metric, average, report.comparisons, higher, table_names)
        if reported:
            rows += _reported_rows(task, datasets, metric, [r for r, _ in task_rows], references, average,
                                   table_names)
        best = _mark_best(rows, len(datasets) + 1, higher)  # among every measured row, before any is hidden
        if methods is not None:
            best = [r for r in best if r.kind == "reference" or r.method in methods]
        seeds = tuple(sorted({r.seed for r, ref in task_rows if not ref}))
        tables.append(PaperTable(task, kinds[task], metric, datasets, tuple(best), name, averaged, meta,
                                 report.comparisons.reference, seeds, scope=scope, names=table_names))
        tables.extend(_untested_table(tables[-1], task_rows, extra, report.comparisons)
                      for extra in meta.paper_metrics if extra != metric)
    return tables


def _untested_table(primary: PaperTable, task_rows: list[tuple[LeaderboardRow, bool]], metric: str,
                    comparisons: Comparisons) -> PaperTable:
    """A declared further metric's table (:attr:`TaskMetrics.paper_metrics`): the same rows on
    ``metric``, with a plain average and neither Δ columns nor tie marks, since the report's
    paired tests are of the primary metric."""
    indices = tuple(primary.datasets.index(d) for d in primary.averaged) if primary.averaged else \
        tuple(range(len(primary.datasets)))
    higher = primary.meta.metric(metric).higher_is_better
    rows = [replace(r, vs_reference=None, vs_baseline=None,
                                cells=tuple(replace(c, tied=False) for c in r.cells))
            for r in _measured_rows(task_rows, primary.datasets, metric, _AverageColumn(indices, {}), comparisons,
                                    higher)]
    return replace(primary, metric=metric, rows=tuple(_mark_best(rows, len(primary.datasets) + 1, higher)),
                               tested=False)
