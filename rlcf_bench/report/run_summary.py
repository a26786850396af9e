"""The compact table ``rlcf-bench run`` prints at its end: only the runs it just executed.

One line per (dataset, method) on the task's primary metric with its 95% interval, the number of
samples actually scored (so ``--limit`` shows), the difference to the group's run of the declared
reference method and to the method's family baseline, each with the 95% interval of the
difference, the raw and adjusted p-values (:mod:`rlcf_bench.report.claims`), and the marks a
reader must not miss (BELOW its own reward model, reused from the store, ranked apart). Per
method, an average line over a dataset group a suite declares (e.g. ``OOD avg``,
:mod:`rlcf_bench.report.averages`) gives the mean with its interval and the stratified tests of
the same equal-weight difference, with the datasets going each way and their heterogeneity;
where no declared group covers the run's datasets, an ``average`` line gives the plain mean over
them (untested). The full leaderboard is ``rlcf-bench report``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from . import fmt
from .averages import AverageRow
from .markdown import render_markdown
from .outline import Heading, Outline, Paragraph, Table, against, average_value, claims_paragraph
from .render import DEFAULT_CLAIMS, ClaimOptions, build_for
from .rows import LeaderboardRow

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost


def _notes(row: LeaderboardRow, reused: bool) -> str:
    out = []
    rm = row.reward_model_zero_shot
    if rm is not None and rm.below:
        out.append(f"BELOW its reward model's reference run ({fmt.num(rm.value)}; significant after adjustment)")
    if row.orders is not None:
        out.append(row.orders.text())
    if reused:
        out.append("reused (stored earlier; --fresh re-runs)")
    if not row.ranked_with_main:
        out.append("ranked apart (other protocol or versions than the main group)")
    return "; ".join(out) or fmt.DASH


def _drop_column(headers: tuple[str, ...], lines: list[tuple[str, ...]],
                 j: int) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    return headers[:j] + headers[j + 1:], [line[:j] + line[j + 1:] for line in lines]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _average_lines(averages: Sequence[AverageRow], task: str, main_model: str) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = []
    for a in averages:
        if a.task != task:
            continue
        label = a.method_label + (f" ({a.model})" if a.model != main_model else "")
        lines.append((f"{a.name} ({len(a.datasets)} datasets)", label, average_value(a), str(a.n),
                      fmt.comparison(a.vs_reference), against(a.vs_baseline),
                      "equal-weight difference, stratified test over the datasets"))
    return lines


def summary_outline(rows: list[LeaderboardRow], reused: Collection[int],
                    averages: Sequence[AverageRow] = (), reference: str = "") -> Outline:
    out = Outline()
    by_task: dict[str, list[LeaderboardRow]] = defaultdict(list)
    for row in rows:
        by_task[row.task].append(row)
    for task, task_rows in by_task.items():
        metric = next((r.primary_metric for r in task_rows if r.primary_metric), None) or "metric"
        unit = " (%)" if task_rows[0].meta.score.percent else ""
        out.add(Heading(2, f"{task} · {metric}{unit}"))
        with_baseline = any(r.vs_baseline is not None for r in task_rows)  # no column where no baseline ran
        headers: tuple[str, ...] = ("dataset", "method", f"{metric} [95% CI]", "n", f"Δ vs {reference or 'reference'}",
                                    "Δ vs family baseline", "notes")
        lines: list[tuple[str, ...]] = []
        per_method: dict[str, list[LeaderboardRow]] = defaultdict(list)
        main_model = Counter(r.model for r in task_rows).most_common(1)[0][0]
        for r in task_rows:
            label = r.method_label + (f" ({r.model})" if r.model != main_model else "")
            lines.append((r.dataset, label, fmt.value_with_ci(r.metrics.get(metric)), str(r.primary_n),
                          fmt.comparison(r.vs_reference), against(r.vs_baseline), _notes(r, r.run_id in reused)))
            per_method[label].append(r)
        n_datasets = len({r.dataset for r in task_rows})
        order = {label: i for i, label in enumerate(per_method)}  # average lines in the table's method order
        declared = sorted(_average_lines(averages, task, main_model), key=lambda line: order.get(line[1], len(order)))
        lines += declared
        if n_datasets > 1 and not declared:
            for label, members in per_method.items():
                values = [r.metrics[metric].value for r in members if metric in r.metrics]
                dz = [r.vs_reference.delta for r in members if r.vs_reference is not None]
                dt = [r.vs_baseline.delta for r in members if r.vs_baseline is not None]
                lines.append((f"average ({len(values)} datasets)", label, fmt.num(_mean(values)),
                              str(sum(r.primary_n for r in members)), fmt.signed(_mean(dz)) + " (not tested)",
                              fmt.signed(_mean(dt)) + " (not tested)" if dt else fmt.DASH,
                              "plain mean; no suite declares these datasets' average"))
        if not with_baseline:
            headers, lines = _drop_column(headers, lines, 5)
        if not any(r.vs_reference is not None for r in task_rows):  # no reference declared or run
            headers, lines = _drop_column(headers, lines, 4)
        out.add(Table("summary", headers, tuple(lines)))
    return out


def render_run_summary(store: Any, run_ids: Collection[int], *, reused: Collection[int] = (),
                       host: PluginHost | None = None, claims: ClaimOptions = DEFAULT_CLAIMS) -> str:
    """Markdown tables of the finished runs among ``run_ids`` (comparisons within their groups),
    with the average rows of the declared dataset groups that one of these runs is part of."""
    wanted = set(run_ids)
    runs = store.runs(status="finished")
    tasks = {(r.task, r.dataset) for r in runs if r.id in wanted}
    report = build_for(store, host, claims=claims)
    rows = [r for s in report.sections if (s.task, s.dataset) in tasks for r in s.rows if r.run_id in wanted]
    position = {rid: i for i, rid in enumerate(run_ids)}
    first: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: position[r.run_id]):
        first.setdefault(r.dataset, position[r.run_id])
        first.setdefault(r.method_label, position[r.run_id])
    rows.sort(key=lambda r: (first[r.dataset], first[r.method_label]))  # the order the command asked for
    if not rows:
        return ""
    averages = [a for a in report.averages if wanted & set(a.run_ids)]
    outline = summary_outline(rows, set(reused), averages, report.comparisons.reference)
    outline.blocks.insert(0, Paragraph(
        f"Results of this command ({len(rows)} run(s)). Δ: points against the same group's run, with the 95% "
        f"interval of the difference, the paired test's raw and adjusted p-value ('{fmt.SIGNIFICANT}': "
        f"significant at 5% after the adjustment over the whole store's table) and its minimum detectable "
        f"difference (MDD: 5% two-sided, about 80% power); average rows test the same equal-weight difference "
        f"stratified by dataset. {claims_paragraph(report)}"))
    return render_markdown(outline)
