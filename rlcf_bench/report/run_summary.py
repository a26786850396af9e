"""What ``rlcf-bench run`` prints at its end: the runs it just executed as a compact matrix.

Per task, the paper layout's shape on the primary metric: methods as rows (a method with
non-default options, another model, reward model or version is its own row, labelled as in
:mod:`rlcf_bench.report.paper`), the command's datasets as columns, then the average over the
dataset group a suite declares (e.g. ``OOD avg``, with its stratified interval) or, where none
covers the datasets, their plain mean; rows ordered by that last column, best first, the reward
models' own reference runs last. Two Δ columns give the last column's difference to the declared
reference method and to the family baseline with the 95% interval of the difference, ``*`` when
significant after the multiplicity adjustment (:mod:`rlcf_bench.report.claims`); a plain mean's
Δ is the mean of the datasets' differences, untested. A notes column says what a reader must not
miss: the reason a row stands apart (the reward model's reference run, another model, or another
protocol or versions than the dataset's main group), BELOW its own reward model, repetitions
folded into the row (stream orders, view seeds) and reuse.

One line above the tables says how many runs the command made and how many rows show them: the
other stream orders and view seeds of one experiment are folded into its first run's row
(:mod:`rlcf_bench.report.online`). Everything else — every metric, p-values, MDDs, costs — is in
``rlcf-bench report``. The default run (the embedded suite, 140 runs) fits in 40 lines.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..types import MetricValue, TaskMetrics
from . import fmt
from .averages import AverageRow, PooledComparison
from .claims import ADJUSTMENT_WORDS, claim_counts
from .paper import PaperCell, _average_column, _cell, _labels, _row_key
from .paper_cells import SIG, cell_text, delta_text
from .render import DEFAULT_CLAIMS, ClaimOptions, build_for
from .rows import GROUP_FIELDS, Comparison, LeaderboardRow, Report

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost

#: Comparability fields that make "another model" (any other differing field: protocol or versions).
_MODEL_FIELDS = {"model", "model_version"}


@dataclass
class _Line:
    """One row of a task's matrix: the runs of one (method, options, model, reward model, version)."""

    label: str
    runs: dict[str, LeaderboardRow] = field(default_factory=dict)  # dataset -> its row
    reference: bool = False  # the reward model's own zero-shot run, shown for context


def apart_reason(row: LeaderboardRow, main: Sequence[str] | None) -> str:
    """Why ``row`` is not ranked with its dataset's main group, in a few words: the reward
    model's reference run, another model, or another protocol or versions (named)."""
    if row.ranked_with_main or main is None:
        return ""
    differ = [(name, words) for (name, words), value, other in zip(GROUP_FIELDS, row.comparability_key, main)
              if value != other]
    if row.reference_for and {n for n, _ in differ} <= _MODEL_FIELDS:
        return "the reward model's reference run (another model: context)"
    if {n for n, _ in differ} <= _MODEL_FIELDS:
        return f"another model ({row.model}) than the main group: ranked apart"
    return f"other {', '.join(words for _, words in differ)} than the main group: ranked apart"


def _other_setting(row: LeaderboardRow, main: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """The comparability fields (other than the dataset's and the model's, which the label
    already names) where ``row`` differs from its dataset's main group: ``(words, value)``."""
    if row.ranked_with_main or main is None:
        return ()
    return tuple((words, value) for (name, words), value, other in zip(GROUP_FIELDS, row.comparability_key, main)
                 if value != other and name not in _MODEL_FIELDS | {"dataset", "dataset_version"})


def _main_keys(report: Report) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(s.task, s.dataset): g.key for s in report.sections for g in s.groups if g.is_main}


def _by_datasets(found: dict[str, list[str]], n_datasets: int) -> list[str]:
    """``note``, ``note (micro-hard, micro-noise)`` or ``note (3 of 5 datasets)`` when it holds on
    only some datasets."""
    def where(datasets: list[str]) -> str:
        return ", ".join(datasets) if len(datasets) <= 2 else f"{len(datasets)} of {n_datasets} datasets"

    return [text if len(ds) == n_datasets else f"{text} ({where(ds)})" for text, ds in found.items()]


def _notes(line: _Line, main: dict[tuple[str, str], tuple[str, ...]], reused: Collection[int]) -> str:
    found: dict[str, list[str]] = defaultdict(list)
    spreads = []
    for dataset, row in line.runs.items():
        reason = apart_reason(row, main.get((row.task, dataset)))
        if reason:
            found[reason].append(dataset)
        rm = row.reward_model_zero_shot
        if rm is not None and rm.below:
            found["BELOW its reward model"].append(dataset)
        if row.run_id in reused:
            found["reused (--fresh re-runs)"].append(dataset)
        if row.orders is not None:
            spreads.append(row.orders)
    out = _by_datasets(found, len(line.runs))
    if len(spreads) == 1 and len(line.runs) == 1:
        out.append(spreads[0].text())
    elif spreads:
        sds = [s.sd for s in spreads]
        what = spreads[0].what if len({s.what for s in spreads}) == 1 else "repetitions"
        out.append(f"{what} folded: sd {fmt.num(min(sds))}" + (f"–{fmt.num(max(sds))}" if len(sds) > 1 else ""))
    return "; ".join(out) or fmt.DASH


def _plain_delta(runs: Sequence[LeaderboardRow], attr: str) -> str:
    deltas = [c.delta for r in runs if (c := getattr(r, attr)) is not None]
    return f"{fmt.signed(sum(deltas) / len(deltas))} (untested)" if deltas else fmt.DASH


def _deltas(runs: Sequence[LeaderboardRow], average: AverageRow | None) -> tuple[str, str]:
    """The two Δ cells: the average row's stratified tests, a single dataset's paired tests, or
    (no declared group) the plain mean of the datasets' differences, untested."""
    if average is not None or len(runs) == 1:
        both = (average.vs_reference, average.vs_baseline) if average is not None else (runs[0].vs_reference,
                                                                                          runs[0].vs_baseline)
        return delta_text(both[0]), _named(both[1], delta_text(both[1]))
    base = next((r.vs_baseline for r in runs if r.vs_baseline is not None), None)
    return _plain_delta(runs, "vs_reference"), _named(base, _plain_delta(runs, "vs_baseline"))


def _named(c: Comparison | PooledComparison | None, text: str) -> str:
    """The family baseline's Δ, short (its interval is in the full report): ``tpt-prompt: +1.92*``."""
    if c is None or text == fmt.DASH:
        return text
    return f"{c.against_method}: {text.split(' [')[0]}{SIG if text.endswith(SIG) else ''}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table padded to aligned columns: the first and last (labels, notes) left-aligned,
    the numbers between right-aligned."""
    last = len(headers) - 1
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if 0 < j < last else c.ljust(w)
                                 for j, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if 0 < j < last else "-" * (w + 2) for j, w in enumerate(widths)) + "|"
    return [line(headers), rule, *(line(r) for r in rows)]


def _common_prefix(datasets: Sequence[str]) -> str:
    """The ``name-`` prefix every column shares (``micro-``), left out of the headers."""
    if len(datasets) < 2:
        return ""
    common = os.path.commonprefix(list(datasets))
    return common[:common.rfind("-") + 1]


def _task_matrix(task: str, task_rows: list[LeaderboardRow], report: Report, reused: Collection[int]) -> list[str]:
    datasets = tuple(dict.fromkeys(r.dataset for r in task_rows))
    first = task_rows[0]
    metric = next((r.primary_metric for r in task_rows if r.primary_metric), None) or "metric"
    main = _main_keys(report)
    labels = _labels(list(dict.fromkeys(_row_key(r) for r in task_rows)), {})  # slugs: the terminal names
    lines: dict[tuple[Any, ...], _Line] = {}
    for r in task_rows:  # a run apart by protocol or versions is a row of its own, never hidden behind another
        other = _other_setting(r, main.get((r.task, r.dataset)))
        label = labels[_row_key(r)] + "".join(f" ({words} {value[:8]})" for words, value in other)
        lines.setdefault((*_row_key(r), other), _Line(label)).runs.setdefault(r.dataset, r)
    for line in lines.values():
        line.reference = all(apart_reason(r, main.get((r.task, d))).startswith("the reward model's")
                             for d, r in line.runs.items())
    name, averaged, average = _average_column(task, first.task_kind, datasets, report.average_groups, report.averages)
    with_average = len(datasets) > 1
    higher = first.meta.metric(metric).higher_is_better if metric in {m.name for m in first.meta.metrics} else True
    body: list[tuple[tuple[int, float], list[str]]] = []
    for line in lines.values():
        cells = [(_cell(line.runs[d].metrics.get(metric), line.runs[d]) if d in line.runs else PaperCell(None))
                 for d in datasets]
        last = average.cell(cells) if with_average else cells[0]
        avg_row = average.row(cells) if with_average else None
        ref_text, base_text = (fmt.DASH, fmt.DASH) if line.reference else _deltas(list(line.runs.values()), avg_row)
        shown = [cell_text(c, False) for c in cells]
        if with_average:
            shown.append(fmt.value_with_ci(None) if not last.present else cell_text(last, True))
        value = last.value if last.present and last.value is not None else math.nan
        rank = math.inf if math.isnan(value) else (-value if higher else value)
        body.append(((int(line.reference), rank), [line.label, *shown, ref_text, base_text,
                                                    _notes(line, main, reused)]))
    body.sort(key=lambda item: item[0])
    reference = report.comparisons.reference or "reference"
    last_name = (f"{name} [95% CI]" if averaged else "average") if with_average else ""
    prefix = _common_prefix(datasets)
    headers = ["method", *(d[len(prefix):] for d in datasets), *([last_name] if with_average else []),
               f"Δ vs {reference}",
               "Δ vs family baseline", "notes"]
    table = [row for _, row in body]
    if all(row[-2] == fmt.DASH for row in table):  # no family baseline ran: no column
        headers.pop(-2)
        table = [row[:-2] + row[-1:] for row in table]
    ns = sorted({r.primary_n for r in task_rows})
    n_text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"
    unit = " (%)" if first.meta.score.percent else ""
    order = f"rows by {name}" + (f" over {len(averaged)} datasets" if averaged else "") if with_average else "rows by value"
    names = f" · datasets {prefix}*" if prefix else ""
    heading = f"{task} · {metric}{unit} · {n_text} per dataset{names} · {first.model} · {order}, best first"
    return [heading, *_table(headers, table)]


def _folded_text(subject: str, n_runs: int, rows: Sequence[LeaderboardRow], wanted: Collection[int]) -> str:
    """``This command: 140 run(s), shown as 100 row(s); 40 more (stream orders 1, 2 of tda, ...)
    are folded into their first run's row``."""
    folded: list[int] = []
    orders: set[int] = set()
    seeds: set[int] = set()
    methods: list[str] = []
    for row in rows:
        spread = row.orders
        if spread is None:
            continue
        for rid, order, seed in zip(spread.run_ids, spread.order_seeds, spread.view_seeds or (None,) * spread.n):
            if rid != row.run_id and rid in wanted:
                folded.append(rid)
                orders.add(order or 0)
                seeds.add(seed or 0)
                methods.append(row.method)
    direct = sum(1 for r in rows if r.run_id in wanted)
    text = f"{subject}: {n_runs} run(s)" + (f", shown as {direct} row(s)" if direct else "")
    if folded:
        what = []
        if len(orders - {0}) or len(orders) > 1:
            what.append("stream orders " + ", ".join(map(str, sorted(orders))))
        if len(seeds - {0}) or len(seeds) > 1:
            what.append("view seeds " + ", ".join(map(str, sorted(seeds))))
        text += (f"; {len(folded)}{' more' if direct else ''} ({' and '.join(what)} of "
                 f"{', '.join(dict.fromkeys(methods))}) are folded "
                 "into their first run's row (notes: the spread)")
        earlier = len(rows) - direct
        if earlier:
            text += (f"; {earlier} row(s) of earlier runs are shown for them (their cells are the first run's, "
                     "e.g. seed 0's)")
    others = n_runs - direct - len(folded)
    if others > 0:
        text += f"; {others} not shown (hidden, or not finished)"
    return text + "."


def result_metrics(metrics: Mapping[str, MetricValue], meta: TaskMetrics) -> str:
    """A progress line's numbers: the task's primary metric (its first declared candidate the
    run has) with the samples it is computed on, e.g. ``t2i_r1=28.75 (n=240)``; a task that
    declares none shows its first three metrics."""
    primary = next((m for m in meta.primary if m in metrics), None)
    if primary is None:
        return ", ".join(f"{k}={v.value:.2f}" for k, v in list(metrics.items())[:3])
    mv = metrics[primary]
    return f"{primary}={mv.value:.2f}" + (f" (n={mv.n})" if mv.n is not None else "")


def render_run_summary(store: Any, run_ids: Collection[int] | None, *, reused: Collection[int] = (),
                       host: PluginHost | None = None, claims: ClaimOptions = DEFAULT_CLAIMS,
                       subject: str = "This command", more: str = "rlcf-bench report --layout full") -> str:
    """The matrices of the finished runs among ``run_ids`` (None: every finished run of the
    store; tests within the whole store's groups, as in ``rlcf-bench report``), a line on what is
    folded, and a legend ending with ``more`` (the command that shows everything). A run folded into an earlier run's row (another view seed or stream
    order of one experiment) brings that row, so a command is never left without its table."""
    report = build_for(store, host, claims=claims)
    wanted = {r.run_id for r in report.rows} | {i for r in report.rows if r.orders for i in r.orders.run_ids} \
        if run_ids is None else set(run_ids)
    if not wanted:
        return ""
    rows = [r for s in report.sections for r in s.rows
            if r.run_id in wanted or (r.orders is not None and wanted & set(r.orders.run_ids))]
    if not rows:
        return ""
    position = {rid: i for i, rid in enumerate(run_ids or ())}
    rows.sort(key=lambda r: position.get(r.run_id, len(position)))  # the order the command asked for
    by_task: dict[str, list[LeaderboardRow]] = defaultdict(list)
    for r in rows:
        by_task[r.task].append(r)
    out = [_folded_text(subject, len(wanted), rows, wanted)]
    for task, task_rows in by_task.items():
        out += _task_matrix(task, task_rows, report, set(reused))  # each table opens with its title line
    counts = claim_counts(report)
    out.append(f"Δ: the last column's difference [95% CI]; {SIG}: significant after {ADJUSTMENT_WORDS[counts.adjustment]} "
               f"(whole store: {counts.comparisons} comparison(s), {counts.significant_raw} significant before, "
               f"{counts.significant_adjusted} after). p-values, every metric and cost: {more}.")
    return "\n".join(out)
