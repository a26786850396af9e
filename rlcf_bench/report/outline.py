"""The report as a format-neutral list of blocks (headings, paragraphs, tables).

Markdown and HTML both render this outline, cell for cell, so the two formats cannot disagree
on a number. All text here is plain (unescaped); each renderer escapes for its own syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..types import NO_COMPARISONS, Comparisons, MetricValue, ReportSection
from . import fmt
from .averages import AverageRow, PooledComparison
from .claims import ADJUSTMENT_WORDS, claim_counts
from .rows import ComparableGroup, Comparison, DatasetSection, LeaderboardRow, Report
from .tasks import TEST_WORDS, TaskCatalog, and_list

TITLE = "rlcf-bench leaderboard"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    kind: str = ""  # "reason" for the apart explanation, "" otherwise


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """``role`` names what the table holds (``group``, ``metrics``, ``reported``); ``row_kinds``
    say, per row, whether it is ``ranked``, ``unranked`` or a ``reference`` row; ``row_runs`` give
    each row's run id (used as data attributes in HTML)."""

    role: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    row_kinds: tuple[str, ...] = ()
    row_runs: tuple[int, ...] = ()


@dataclass(frozen=True)
class PluginBlock:
    title: str
    markdown: str


Block = Heading | Paragraph | Bullets | Table | PluginBlock


@dataclass
class Outline:
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.blocks.append(block)


def how_to_read(tasks: TaskCatalog, comparisons: Comparisons = NO_COMPARISONS, adjustment: str = "") -> tuple[str, ...]:
    """The "How to read" bullets; what differs per task (its paired test, its lower-is-better
    metrics, what its n counts) comes from the tasks' metric metadata, in report order."""
    by_test: dict[str, list[str]] = {}
    lower: list[str] = []
    n_notes: list[str] = []
    for name, meta in tasks.ordered():
        by_test.setdefault(meta.score.paired_test, []).append(name)
        lower += [m.label or m.name for m in meta.metrics if not m.higher_is_better]
        n_notes += [meta.n_note] if meta.n_note else []
    tests = ", ".join(f"{TEST_WORDS.get(test, test)} for {and_list(names)}" for test, names in by_test.items())
    direction = (f"All metrics are higher-is-better except {and_list(list(dict.fromkeys(lower)))}, where lower is "
                 "better." if lower else "All metrics are higher-is-better.")
    return (
        "Runs are ranked only against comparable runs: same task, dataset, model, protocol hash and "
        "task/dataset/model/bench versions. Each dataset's largest such group is its main group; any "
        "other group is listed apart with the fields that differ.",
        "Intervals are 95%: the one stored by the task, or else a percentile bootstrap over the run's "
        "per-sample scores.",
        "Δ columns: difference of the primary metric to the group's best run, to the group's run of the "
        f"reference method ({comparisons.reference or 'none declared'}), to the method's family baseline "
        "(declared by the suite; the cell names it) and to the reward model's own reference run, with the 95% "
        "interval of the difference and the p-value of a paired test on the samples both runs share"
        f"{f' ({tests})' if tests else ''}. Intervals of a 0/1 difference are Tango's score interval for paired "
        "proportions; of a continuous one, the paired bootstrap's percentile interval. "
        f"Each p-value is followed by its adjusted value ({ADJUSTMENT_WORDS.get(adjustment, adjustment)} over its "
        "family: one table's methods against one other method over its datasets and averages); "
        f"'{fmt.SIGNIFICANT}' marks an adjusted p below 5% (two-sided). "
        "'corpus metric, not tested': the primary metric is corpus-level (e.g. CIDEr) and has no per-sample "
        "test here; the task's per-sample score (e.g. CLIPScore) follows with its own difference, interval "
        "and test.",
        "MDD: the minimum detectable difference of that paired test (5% two-sided, about 80% power, normal "
        "approximation; docs/statistics.md), in the unit of the difference beside it. A difference smaller than "
        "the MDD that is 'not significant' may still exist: the comparison has too few samples to tell.",
        "Averages (e.g. OOD avg): the mean of the primary metric over a dataset group a suite declares, each "
        "dataset weighted equally, for methods with comparable runs on every dataset of the group; its Δ "
        "columns test that same equal-weight difference (per-dataset paired differences and their "
        "variances), and say how many datasets go each way and the heterogeneity I² of the per-dataset "
        "differences. The inference covers the listed datasets only, not shifts in general.",
        "BELOW: the method scores significantly (after adjustment) below its own reward model's run of the "
        "reference method, so the reward model alone would have done better: not a win.",
        "Cost: milliseconds per sample (median / 95th percentile, warm-up excluded), mean adapt / "
        "predict time (adapt includes generating and encoding the views; views whose features came "
        "from the run's shared feature cache are charged the time they took when computed), share of "
        "the time spent in the reward model, peak memory in MB (CUDA peak on GPU, RSS on CPU). Costs "
        "from different devices are not comparable.",
        "Method options that differ from the method's defaults are shown in brackets after its name "
        "(e.g. 'my-method [lr=0.001]'); each group names its protocol's settings under its heading.",
        direction,
        "n: the samples the primary metric is computed on" + (f" ({'; '.join(n_notes)})" if n_notes else "") + ".",
        "Reproduced vs reported: paper numbers stored for the same task, dataset, method, model and "
        "reward model, with measured minus reported.",
    )


def against(c: Comparison | PooledComparison | None) -> str:
    """A comparison whose other method varies by row (the family baseline), naming it."""
    return fmt.DASH if c is None else f"{c.against_method}: {fmt.comparison(c)}"


def versioned_labels(rows: Sequence[LeaderboardRow]) -> dict[int, str]:
    """``run id -> label``: the method label, with `` v<version>`` where rows of one method and
    options run under different method versions (so two versions are never indistinguishable)."""
    versions: dict[str, set[str]] = {}
    for r in rows:
        versions.setdefault(r.method_label, set()).add(r.method_version)
    return {r.run_id: r.method_label + (f" v{r.method_version}" if len(versions[r.method_label]) > 1 else "")
            for r in rows}


def group_table(group: ComparableGroup, comparisons: Comparisons = NO_COMPARISONS) -> Table:
    metric = group.primary_metric or "metric"
    reference = comparisons.reference or "reference"
    headers = (
        "rank", "run", "method", "reward model", f"{metric} [95% CI]", "n", "Δ vs best", f"Δ vs {reference}",
        "Δ vs family baseline", f"Δ vs reward-model {reference}", "ms/sample p50 / p95", "adapt / predict ms",
        "reward share", "peak MB", "notes",
    )
    rows, kinds, runs = [], [], []
    label = versioned_labels(group.rows)
    for row in group.rows:
        rows.append((
            str(row.rank) if row.rank is not None else fmt.DASH, str(row.run_id), label[row.run_id],
            row.reward_model or fmt.DASH, fmt.value_with_ci(row.primary), str(row.primary_n),
            fmt.comparison(row.vs_best), fmt.comparison(row.vs_reference), against(row.vs_baseline),
            fmt.reward_reference(row.reward_model_zero_shot),
            fmt.ms_pair(row.ms_per_sample_p50, row.ms_per_sample_p95),
            fmt.ms_pair(row.adapt_ms_mean, row.predict_ms_mean), fmt.percent(row.reward_share),
            fmt.memory(row), "; ".join([*fmt.notes(row), *(f"vs {c.against_method}: {fmt.comparison(c)}"
                                                         for c in row.vs_pairs), *fmt.score_comparison(row)]) or fmt.DASH,
        ))
        kinds.append("ranked" if row.rank is not None else "unranked")
        runs.append(row.run_id)
    for ref in group.reward_model_refs:
        mv = ref.metrics.get(metric)
        rows.append((
            "ref", str(ref.run_id), f"{ref.method} ({ref.model}) — reward model's reference run", fmt.DASH,
            fmt.value_with_ci(mv), str(mv.n if mv is not None and mv.n is not None else ref.n_samples), fmt.DASH, fmt.DASH,
            fmt.DASH, fmt.DASH,
            fmt.ms_pair(ref.ms_per_sample_p50, ref.ms_per_sample_p95),
            fmt.ms_pair(ref.adapt_ms_mean, ref.predict_ms_mean), fmt.percent(ref.reward_share),
            fmt.memory(ref), "reference row, not ranked in this group",
        ))
        kinds.append("reference")
        runs.append(ref.run_id)
    return Table("group", headers, tuple(rows), tuple(kinds), tuple(runs))


def metrics_table(section: DatasetSection) -> Table:
    rows_in = section.rows
    key = rows_in[0].meta_key if rows_in else (lambda m: (0, m))
    names = sorted({m for r in rows_in for m in r.metrics}, key=key)
    headers = ("run", "method", "method version", "model", "group", *names)
    rows = tuple(
        (str(r.run_id), r.method_label, r.method_version, r.model, "main" if r.ranked_with_main else "apart",
         *(fmt.value_with_ci(r.metrics.get(n)) for n in names))
        for r in rows_in
    )
    return Table("metrics", headers, rows, tuple("ranked" for _ in rows), tuple(r.run_id for r in rows_in))


def reported_table(section: DatasetSection) -> Table | None:
    rows, runs = [], []
    for r in section.rows:
        for rep in r.reported:
            rows.append((str(r.run_id), r.method_label, r.model, r.reward_model or fmt.DASH, rep.metric,
                         fmt.num(rep.measured), fmt.num(rep.reported), fmt.signed(rep.diff), rep.source))
            runs.append(r.run_id)
    if not rows:
        return None
    headers = ("run", "method", "model", "reward model", "metric", "measured", "reported", "measured − reported",
               "source")
    return Table("reported", headers, tuple(rows), tuple("ranked" for _ in rows), tuple(runs))


def average_value(row: AverageRow) -> str:
    """``61.20 [58.90, 63.40]``: the average with its stratified-bootstrap interval."""
    return fmt.value_with_ci(MetricValue(row.value, row.ci_low, row.ci_high, row.n))


def average_tables(rows: Sequence[AverageRow], comparisons: Comparisons = NO_COMPARISONS) -> list[tuple[str, Table]]:
    """One table per (task, average, setting): (heading, table)."""
    groups: dict[tuple[str, str, str], list[AverageRow]] = {}
    for row in rows:
        groups.setdefault((row.task, row.name, row.setting), []).append(row)
    out = []
    reference = comparisons.reference or "reference"
    for (task, name, setting), members in groups.items():
        metric = members[0].metric
        headers = ("method", "reward model", f"{name} {metric} [95% CI]", "n", "datasets", "runs",
                   f"Δ vs {reference} (equal-weight, stratified)", "Δ vs family baseline (equal-weight, stratified)")
        cells = tuple((r.method_label, r.reward_model or fmt.DASH, average_value(r), str(r.n), ", ".join(r.datasets),
                       ", ".join(map(str, r.run_ids)), fmt.comparison(r.vs_reference), against(r.vs_baseline))
                      for r in members)
        out.append((f"{name} · {task} · {setting}", Table("average", headers, cells, tuple("ranked" for _ in cells))))
    return out


def claims_paragraph(report: Report) -> str:
    """How many comparisons the report makes and how many are significant before and after the
    multiplicity adjustment (what a README may claim is the second count)."""
    return (claim_counts(report).text() + ". The comparisons with a group's best run (a ranking aid) are not "
            "counted; each comparison is counted once.")


def build_outline(report: Report, sections: Sequence[ReportSection] = ()) -> Outline:
    out = Outline()
    out.add(Heading(1, TITLE))
    n_runs = len(report.rows)
    summary = f"{n_runs} finished run(s) in {len(report.sections)} dataset(s)."
    if report.superseded_attempts:
        summary += f" {report.superseded_attempts} older attempt(s) superseded by a re-run are not shown."
    if report.scope:
        summary += f" {report.scope}"
    out.add(Paragraph(summary))
    out.add(Heading(2, "How to read this report"))
    out.add(Bullets(how_to_read(report.tasks, report.comparisons, report.adjustment)))
    out.add(Heading(2, "Claims"))
    out.add(Paragraph(claims_paragraph(report), kind="claims"))
    if not report.sections:
        out.add(Paragraph("No finished runs match."))
    for section in report.sections:
        out.add(Heading(2, f"{section.task} · {section.dataset}"))
        for group in section.groups:
            if group.is_main:
                out.add(Heading(3, f"Main group (ranked): {group.label}"))
            else:
                out.add(Heading(3, f"Listed apart (ranked only within this group): {group.label}"))
                out.add(Paragraph(f"Reason: {group.apart_reason}", kind="reason"))
            if group.protocol_text:
                out.add(Paragraph(f"Protocol {group.rows[0].protocol_hash[:8]}: {group.protocol_text}", kind="protocol"))
            out.add(group_table(group, report.comparisons))
        out.add(Heading(3, f"All metrics · {section.task} · {section.dataset}"))
        out.add(metrics_table(section))
        reported = reported_table(section)
        if reported is not None:
            out.add(Heading(3, f"Reproduced vs reported · {section.task} · {section.dataset}"))
            out.add(reported)
    for heading, table in average_tables(report.averages, report.comparisons):
        out.add(Heading(2, f"Average: {heading}"))
        out.add(table)
    if report.average_notes:
        out.add(Heading(3, "Averages not shown"))
        out.add(Bullets(tuple(report.average_notes)))
    for extra in sections:
        out.add(PluginBlock(extra.title, extra.markdown))
    return out

