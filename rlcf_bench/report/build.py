"""Building the report: from the store's finished runs to ranked groups, comparisons and averages.

The row types and the rules they follow live in :mod:`rlcf_bench.report.rows`, the averages in
:mod:`rlcf_bench.report.averages`; this module puts them together (it imports both, so neither
needs the other's builder).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ..store import Reference, Store
from ..types import NO_COMPARISONS, Comparisons, DatasetAverage
from .averages import AverageNote, AverageRow, build_averages
from .claims import DEFAULT_ADJUSTMENT, adjust_report
from .filters import NameFilter, Selection
from .online import order_spreads, stream_curves
from .options import MethodKey, options_by_run
from .rows import (
    DatasetSection,
    LeaderboardRow,
    Report,
    _attach_reward_model_refs,
    _compare_within,
    _group,
    _latest_attempts,
    _rank,
    _reported_values,
    _rows_from_runs,
)
from .scores import ScoreCache
from .spread_tests import apply_spread_tests
from .tasks import TaskCatalog, catalog_from


def build_report(store: Store, *, task: str | None = None, dataset: NameFilter = None,
                 method: NameFilter = None, method_defaults: Mapping[MethodKey, Mapping[str, Any]] | None = None,
                 averages: Sequence[DatasetAverage] = (), tasks: TaskCatalog | None = None,
                 comparisons: Comparisons = NO_COMPARISONS, adjustment: str = DEFAULT_ADJUSTMENT,
                 spread_tests: bool = False, references: Sequence[Reference] | None = None) -> Report:
    """Build the full report. ``method`` and ``dataset`` (a name or several) only filter what is
    shown: ranks, tests and adjustments are computed on every run of the task, so filtering never
    changes a number (:mod:`rlcf_bench.report.filters`). ``method_defaults`` ((method
    name, task kind) -> default config, see :func:`rlcf_bench.report.options.method_defaults`) decides which
    options each row shows. ``averages``: the dataset groups the suites declare (see
    :func:`rlcf_bench.report.averages.declared_averages`); each gets an average row per method.
    ``tasks``: the tasks' metric metadata (default: what the store recorded,
    :func:`rlcf_bench.report.tasks.catalog_from`). ``comparisons``: the reference method, families
    and pairs the suites declare (:func:`rlcf_bench.report.averages.declared_comparisons`);
    ``adjustment``: the multiplicity adjustment of every p-value (``holm`` or ``bh``,
    :mod:`rlcf_bench.report.claims`), applied to the whole report before ``method`` filters it.
    ``spread_tests``: test rows with several view seeds / stream orders over all of them
    (:mod:`rlcf_bench.report.spread_tests`).
    ``references``: the paper numbers to show (default: the stored ones;
    :func:`rlcf_bench.report.references.reference_rows` adds the installed plugins' without
    writing)."""
    runs, superseded = _latest_attempts(store.runs(status="finished", task=task))
    catalog = tasks if tasks is not None else catalog_from(store)
    cache = ScoreCache(store)
    rows = _rows_from_runs(store, runs, cache, catalog)
    hidden = order_spreads(runs, rows)  # other stream orders: summarised, not listed
    rows = [r for r in rows if r.run_id not in hidden]
    stream_curves(store, rows)
    shown = options_by_run({r.run_id: ((r.method, r.task_kind), r.method_config) for r in rows}, method_defaults or {})
    for row in rows:
        row.options = shown[row.run_id]
    references = store.references() if references is None else references
    sections: list[DatasetSection] = []
    by_dataset: dict[tuple[str, str], list[LeaderboardRow]] = defaultdict(list)
    for row in rows:
        by_dataset[(row.task, row.dataset)].append(row)

    def section_order(item: tuple[tuple[str, str], list[LeaderboardRow]]) -> tuple[int, str, str]:
        (task_name, dataset_name), _ = item
        return (*catalog.task_key(task_name), dataset_name)

    for (task_name, dataset_name), section_rows in sorted(by_dataset.items(), key=section_order):
        groups = _group(section_rows)
        for g in groups:
            _rank(g, catalog)
            _compare_within(g, cache, comparisons)
        _attach_reward_model_refs(groups, section_rows, cache, comparisons.reference)
        for row in section_rows:
            row.reported = _reported_values(row, references)
        kind = section_rows[0].task_kind
        sections.append(DatasetSection(task_name, kind, dataset_name, groups))
    if spread_tests:
        apply_spread_tests(sections, cache)
    average_rows, average_notes = build_averages(sections, averages, cache, comparisons)
    full = Report(sections, superseded, average_rows, [n.text for n in average_notes], tuple(averages), catalog,
                  comparisons)
    adjust_report(full, adjustment)
    selection = Selection.of(method, dataset)
    sections, average_rows, notes = _select(full.sections, full.averages, average_notes, averages, selection)
    return Report(sections, superseded, average_rows, notes, tuple(averages), catalog, comparisons, adjustment,
                  selection.scope_text() if selection.active else "")


def _select(sections: list[DatasetSection], average_rows: list[AverageRow], notes: Sequence[AverageNote],
            groups: Sequence[DatasetAverage],
            selection: Selection) -> tuple[list[DatasetSection], list[AverageRow], list[str]]:
    """The sections, average rows and notes a filter keeps. An average (or its note) whose group
    the dataset filter cuts is replaced by one note saying so: a filtered-out run is never
    reported missing."""
    if not selection.active:
        return sections, average_rows, [n.text for n in notes]
    kept_rows = [a for a in average_rows if selection.method(a.method) and selection.datasets_all(a.datasets)]
    kept_notes = [n.text for n in notes if selection.method(n.method) and selection.datasets_all(n.datasets)]
    shown = [(s.dataset, s.task_kind) for s in sections if selection.dataset(s.dataset)]
    for group in groups:
        cut = selection.left_out(group.datasets)
        if cut and any(d in group.datasets and group.covers(kind) for d, kind in shown):
            kept_notes.append(f"{group.name}: not shown, the dataset filter leaves out {', '.join(cut)} "
                              "(the report without --dataset shows it)")
    out = []
    for section in sections:
        if not selection.dataset(section.dataset):
            continue
        for g in section.groups:
            g.rows = [r for r in g.rows if selection.method(r.method)]
        section.groups = [g for g in section.groups if g.rows]
        if section.groups:
            out.append(section)
    return out, kept_rows, kept_notes


def build_rows(store: Store, *, task: str | None = None, dataset: NameFilter = None,
               method: NameFilter = None, method_defaults: Mapping[MethodKey, Mapping[str, Any]] | None = None,
               tasks: TaskCatalog | None = None, comparisons: Comparisons = NO_COMPARISONS) -> list[LeaderboardRow]:
    """Leaderboard rows of the finished runs, in report order (dataset, group, rank)."""
    return build_report(store, task=task, dataset=dataset, method=method, method_defaults=method_defaults,
                        tasks=tasks, comparisons=comparisons).rows
