"""From stored runs to leaderboard rows: comparability groups, ranks, intervals, comparisons.

The report never mixes runs that were not measured under the same conditions. Runs of one
``(task, dataset)`` are split into *comparable groups* (same task and dataset with their
versions, same model and model version, same protocol hash, same bench version). Ranks and
paired tests only ever happen inside a group. The group with the most (official) runs is the
*main* group of its dataset; every other group is listed apart, with the fields that differ
from the main group as the reason.

Every run also gets:
- a 95% interval per metric: the stored one, or else a bootstrap over its per-sample scores
  (only for a metric that is the mean of those scores, so the interval is of the right thing);
- paired tests against the best run of its group, against the group's run of the reference
  method the suites declare, against its family's baseline and any declared pair
  (:class:`rlcf_bench.types.Comparisons`; the core names no method), each with the 95% interval
  of the difference and, once the report is built, a multiplicity-adjusted p-value
  (:mod:`rlcf_bench.report.claims`);
- the reward model's own run of the reference method (A5: a method below its own reward model
  is not a win), compared on the shared samples;
- the paper numbers stored in ``references`` for the same setting, with the difference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select

from ..stats import bootstrap_mean_ci
from ..store import Metric, Reference, Run, SampleResult, Store
from ..types import NO_COMPARISONS, Comparisons, DatasetAverage, MetricValue, TaskMetrics, stable_hash
from .options import options_text, protocol_text
from .scores import PairedTest, ScoreCache, paired_test, score_scale
from .tasks import GENERIC, TaskCatalog

#: The fields that make two runs comparable, with the words used to explain a difference.
GROUP_FIELDS: tuple[tuple[str, str], ...] = (
    ("task", "task"), ("task_version", "task version"), ("dataset", "dataset"),
    ("dataset_version", "dataset version"), ("model", "model"), ("model_version", "model version"),
    ("protocol_hash", "protocol hash"), ("bench_version", "bench version"),
)


# --------------------------------------------------------------------------------------------
# Row types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """A row's primary metric against another run's, with the paired test on shared samples.

    ``delta`` is the difference of the *stored* primary metrics (row minus other), so it agrees
    with the numbers printed in the table; the test runs on the per-sample scores the two runs
    share (``n_shared``).
    """

    against_run: int
    against_method: str
    metric: str
    delta: float
    test: str
    p_value: float
    significant: bool
    n_shared: int
    only_row: int
    only_other: int
    on_primary: bool = True  # False: the metric is corpus-level (not a mean of per-sample scores), the test is on the per-sample score
    mdd: float = math.nan  # minimum detectable difference (5% two-sided, ~80% power), in the tested quantity's unit
    ci_low: float = math.nan  # 95% interval of the tested difference (in the tested quantity's unit)
    ci_high: float = math.nan
    p_adjusted: float = math.nan  # the p-value adjusted over the comparison's family (report/claims.py)
    adjustment: str = ""  # "holm" | "bh" | "" (not adjusted yet)
    family: str = ""  # the family of tests it was adjusted in
    family_size: int = 0
    score_label: str = ""  # what was tested where not the primary metric (e.g. "clipscore")
    score_delta: float = math.nan  # the tested per-sample score's difference where not the primary metric
    repetitions: int = 1  # >1: tested over that many view seeds × stream orders (report/spread_tests.py)

    @property
    def p_mark(self) -> float:
        """The p-value every mark and sentence uses: the adjusted one once adjusted."""
        return self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted

    @property
    def tested_delta(self) -> float:
        """The difference the test, interval and MDD are about (the primary metric's, or the
        per-sample score's where the primary metric is corpus-level)."""
        return self.delta if self.on_primary else self.score_delta

    def as_dict(self) -> dict[str, Any]:
        return {
            "against_run": self.against_run, "against_method": self.against_method, "metric": self.metric,
            "delta": _num(self.delta), "test": self.test, "p_value": _num(self.p_value),
            "p_adjusted": _num(self.p_adjusted), "adjustment": self.adjustment or None, "family": self.family or None,
            "family_size": self.family_size,
            "significant_5pct": self.significant, "n_shared": self.n_shared,
            "only_this_run": self.only_row, "only_other_run": self.only_other,
            "tested_on": "primary metric" if self.on_primary else f"per-sample score ({self.score_label})",
            "tested_delta": _num(self.tested_delta),
            "diff_ci_low": _num(self.ci_low), "diff_ci_high": _num(self.ci_high), "repetitions": self.repetitions,
            "min_detectable_diff": special_num(self.mdd), "min_detectable_diff_basis": MDD_BASIS,
        }


@dataclass(frozen=True)
class RewardModelReference:
    """The reward model's own zero-shot run, shown beside a method that uses that reward model."""

    run_id: int
    model: str
    metric: str
    value: float
    delta: float  # row's primary metric minus the reward model's zero-shot
    below: bool  # significantly (after adjustment) below its own reward model: not a win (A5); untested: False
    strictly_comparable: bool  # same protocol hash and versions as the row
    note: str
    comparison: Comparison | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "model": self.model, "metric": self.metric, "value": _num(self.value),
            "delta": _num(self.delta), "below_reward_model": self.below,
            "strictly_comparable": self.strictly_comparable, "note": self.note,
            "paired_test": None if self.comparison is None else self.comparison.as_dict(),
        }


@dataclass(frozen=True)
class ReportedValue:
    """A paper number for the same (task, dataset, method, model, reward model, metric)."""

    metric: str
    reported: float
    measured: float | None
    diff: float | None  # measured - reported
    source: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "reported": _num(self.reported), "measured": _num(self.measured),
                "diff": _num(self.diff), "source": self.source, "note": self.note}


@dataclass
class LeaderboardRow:
    """One finished run as the report sees it (the JSON format is a list of these)."""

    run_id: int
    task: str
    task_kind: str
    task_version: str
    dataset: str
    dataset_version: str
    method: str
    method_version: str
    model: str
    model_version: str
    reward_model: str | None
    reward_model_version: str | None
    protocol_hash: str
    config_hash: str
    bench_version: str
    seed: int
    official: bool
    metrics: dict[str, MetricValue]
    ci_source: dict[str, str]  # metric -> "stored" | "bootstrap" | "none"
    n_samples: int
    ms_per_sample_mean: float | None
    ms_per_sample_p50: float | None
    ms_per_sample_p95: float | None
    adapt_ms_mean: float | None
    predict_ms_mean: float | None
    reward_ms_mean: float | None
    peak_memory_mb: float | None
    memory_kind: str | None
    device: str
    device_name: str
    finished_at: str | None
    group: str = ""
    group_label: str = ""
    rank: int | None = None
    ranked_with_main: bool = False
    apart_reason: str | None = None
    primary_metric: str | None = None
    vs_best: Comparison | None = None
    vs_reference: Comparison | None = None
    reward_model_zero_shot: RewardModelReference | None = None
    reported: list[ReportedValue] = field(default_factory=list)
    reference_for: list[str] = field(default_factory=list)  # groups showing this run as RM zero-shot
    orders: Any = None  # OrderSpread over the run's stream orders (online methods; report/online.py)
    stream_curve: list[tuple[float, float]] | None = None  # (% of stream, running accuracy %)
    method_config: dict[str, Any] = field(default_factory=dict)  # the full stored configuration
    options: dict[str, Any] = field(default_factory=dict)  # the non-default part of it (what a reader needs)
    protocol: dict[str, Any] = field(default_factory=dict)  # the protocol's settings (the hash is of these)
    vs_baseline: Comparison | None = None  # against its family's declared baseline
    vs_pairs: list[Comparison] = field(default_factory=list)  # against the declared pairs' other methods
    #: against the reference on the per-sample score's own column, where the primary metric was
    #: tested on its own per-sample terms (captioning: CLIPScore beside CIDEr)
    vs_reference_score: Comparison | None = None
    meta: TaskMetrics = field(default=GENERIC, repr=False)  # the task's metric metadata (report/tasks.py)

    @property
    def options_text(self) -> str:
        """Non-default method options as ``key=value, ...`` (empty for the defaults)."""
        return options_text(self.options)

    @property
    def method_label(self) -> str:
        """The method name with its non-default options, e.g. ``rlcf-prompt [lr=0.001]``."""
        return f"{self.method} [{self.options_text}]" if self.options else self.method

    @property
    def comparability_key(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, name)) for name, _ in GROUP_FIELDS)

    @property
    def primary(self) -> MetricValue | None:
        return self.metrics.get(self.primary_metric) if self.primary_metric else None

    @property
    def primary_n(self) -> int:
        """The number of samples the primary metric is computed on (a metric of a sample group:
        that group's), else the run's sample count."""
        mv = self.primary
        return mv.n if mv is not None and mv.n is not None else self.n_samples

    def meta_key(self, metric: str) -> tuple[int, str]:
        """Sort key of one of this row's metrics: the task's display order, then by name."""
        return self.meta.sort_key(metric)

    @property
    def reward_share(self) -> float | None:
        """Fraction of the per-sample time spent in the reward model (0-1)."""
        if self.reward_ms_mean is None or not self.ms_per_sample_mean:
            return None
        return self.reward_ms_mean / self.ms_per_sample_mean

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: plain types only, NaN as null."""
        return {
            "row_kind": "run",
            "run_id": self.run_id, "task": self.task, "task_kind": self.task_kind, "task_version": self.task_version,
            "dataset": self.dataset, "dataset_version": self.dataset_version, "method": self.method,
            "method_version": self.method_version, "model": self.model, "model_version": self.model_version,
            "reward_model": self.reward_model, "reward_model_version": self.reward_model_version,
            "protocol_hash": self.protocol_hash, "config_hash": self.config_hash,
            "bench_version": self.bench_version, "seed": self.seed, "official": self.official,
            "group": self.group, "group_label": self.group_label, "rank": self.rank,
            "ranked_with_main_group": self.ranked_with_main, "apart_reason": self.apart_reason,
            "primary_metric": self.primary_metric,
            "method_options": dict(self.options), "method_config": dict(self.method_config),
            "protocol": dict(self.protocol),
            "metrics": {name: {"value": _num(mv.value), "ci_low": _num(mv.ci_low), "ci_high": _num(mv.ci_high),
                               "n": mv.n, "ci_source": self.ci_source.get(name, "none")}
                        for name, mv in sorted(self.metrics.items(), key=lambda kv: self.meta_key(kv[0]))},
            "n_samples": self.n_samples, "primary_n": self.primary_n,
            "latency": {
                "ms_per_sample_mean": _num(self.ms_per_sample_mean), "ms_per_sample_p50": _num(self.ms_per_sample_p50),
                "ms_per_sample_p95": _num(self.ms_per_sample_p95), "adapt_ms_mean": _num(self.adapt_ms_mean),
                "predict_ms_mean": _num(self.predict_ms_mean), "reward_ms_mean": _num(self.reward_ms_mean),
                "reward_share": _num(self.reward_share),
            },
            "peak_memory_mb": _num(self.peak_memory_mb), "memory_kind": self.memory_kind,
            "device": self.device, "device_name": self.device_name, "finished_at": self.finished_at,
            "vs_best": None if self.vs_best is None else self.vs_best.as_dict(),
            "vs_reference": None if self.vs_reference is None else self.vs_reference.as_dict(),
            "vs_baseline": None if self.vs_baseline is None else self.vs_baseline.as_dict(),
            "vs_pairs": [c.as_dict() for c in self.vs_pairs],
            "vs_reference_score": None if self.vs_reference_score is None else self.vs_reference_score.as_dict(),
            "reward_model_zero_shot": (None if self.reward_model_zero_shot is None
                                       else self.reward_model_zero_shot.as_dict()),
            "reported": [r.as_dict() for r in self.reported],
            "reward_model_reference_for_groups": list(self.reference_for),
            "orders": None if self.orders is None else self.orders.as_dict(),
        }


@dataclass
class ComparableGroup:
    """Runs ranked together: identical task, dataset, model, protocol and versions."""

    id: str
    key: tuple[str, ...]
    label: str
    is_main: bool
    apart_reason: str | None
    primary_metric: str | None
    rows: list[LeaderboardRow]
    reward_model_refs: list[LeaderboardRow] = field(default_factory=list)

    @property
    def protocol_text(self) -> str:
        """The shared protocol's settings (every row of a group has the same protocol hash)."""
        return protocol_text(self.rows[0].protocol) if self.rows and self.rows[0].protocol else ""


@dataclass
class DatasetSection:
    task: str
    task_kind: str
    dataset: str
    groups: list[ComparableGroup]

    @property
    def rows(self) -> list[LeaderboardRow]:
        return [r for g in self.groups for r in g.rows]


@dataclass
class Report:
    """Everything the formats render; built once from the store."""

    sections: list[DatasetSection]
    superseded_attempts: int = 0
    averages: list[Any] = field(default_factory=list)  # AverageRow (report/averages.py), per declared group
    average_notes: list[str] = field(default_factory=list)  # why a method has no average row
    average_groups: tuple[DatasetAverage, ...] = ()  # the declared dataset groups the averages are of
    tasks: TaskCatalog = field(default_factory=TaskCatalog)  # the tasks' metric metadata
    comparisons: Comparisons = field(default_factory=Comparisons)  # what the suites declare (report/claims.py)
    adjustment: str = ""  # the multiplicity adjustment applied ("holm" | "bh"; report/claims.py)
    scope: str = ""  # a filtered report: what its ranks and tests refer to (report/filters.py)

    @property
    def rows(self) -> list[LeaderboardRow]:
        return [r for s in self.sections for r in s.rows]

    @property
    def metric_names(self) -> list[str]:
        return self.tasks.sort_metrics({m for r in self.rows for m in r.metrics})


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


#: What the minimum detectable differences are stated at (docs/statistics.md).
MDD_BASIS = "5% two-sided, about 80% power (normal approximation)"


def special_num(x: float | None) -> float | str | None:
    """A JSON number that keeps infinity apart from "not available": ``"inf"``/``"-inf"`` for
    an infinite value, ``null`` for NaN (n/a), else the number."""
    if x is None or math.isnan(x):
        return None
    return ("inf" if x > 0 else "-inf") if math.isinf(x) else float(x)


# --------------------------------------------------------------------------------------------
# Building blocks of :func:`rlcf_bench.report.build.build_report`
# --------------------------------------------------------------------------------------------


def _latest_attempts(runs: Sequence[Run]) -> tuple[list[Run], int]:
    """Keep the latest finished attempt of each run key (a re-run supersedes the older one)."""
    latest: dict[str, Run] = {}
    for run in runs:
        cur = latest.get(run.key)
        if cur is None or (run.attempt, run.id) > (cur.attempt, cur.id):
            latest[run.key] = run
    kept = sorted(latest.values(), key=lambda r: r.id)
    return kept, len(runs) - len(kept)


def _rows_from_runs(store: Store, runs: Sequence[Run], cache: ScoreCache, catalog: TaskCatalog) -> list[LeaderboardRow]:
    ids = [r.id for r in runs]
    metrics: dict[int, dict[str, MetricValue]] = defaultdict(dict)
    counts: dict[int, int] = {}
    if ids:
        with store.session() as s:
            for m in s.scalars(select(Metric).where(Metric.run_id.in_(ids))):
                metrics[m.run_id][m.name] = MetricValue(m.value, m.ci_low, m.ci_high, m.n)
            q = select(SampleResult.run_id, func.count()).where(SampleResult.run_id.in_(ids)).group_by(
                SampleResult.run_id)
            counts = {rid: int(n) for rid, n in s.execute(q)}
    rows = []
    for run in runs:
        kind = run.task_kind or run.task
        meta = catalog.of(run.task)
        run_metrics, ci_source = _with_intervals(metrics.get(run.id, {}), run.id, meta, cache)
        rows.append(LeaderboardRow(
            run_id=run.id, task=run.task, task_kind=kind, task_version=run.task_version, dataset=run.dataset,
            dataset_version=run.dataset_version, method=run.method, method_version=run.method_version,
            model=run.model, model_version=run.model_version, reward_model=run.reward_model or None,
            reward_model_version=run.reward_model_version, protocol_hash=run.protocol_hash,
            config_hash=run.config_hash, bench_version=run.bench_version, seed=run.seed, official=bool(run.official),
            metrics=run_metrics, ci_source=ci_source, n_samples=counts.get(run.id, run.n_done or 0),
            ms_per_sample_mean=run.ms_per_sample_mean, ms_per_sample_p50=run.ms_per_sample_p50,
            ms_per_sample_p95=run.ms_per_sample_p95, adapt_ms_mean=run.adapt_ms_mean,
            predict_ms_mean=run.predict_ms_mean, reward_ms_mean=run.reward_ms_mean,
            peak_memory_mb=run.peak_memory_mb, memory_kind=run.memory_kind, device=run.device,
            device_name=run.device_name or "",
            finished_at=run.finished_at.isoformat() if run.finished_at else None,
            method_config=dict(run.method_config or {}), protocol=dict(run.protocol or {}), meta=meta,
        ))
    return rows


def _with_intervals(stored: dict[str, MetricValue], run_id: int, meta: TaskMetrics,
                    cache: ScoreCache) -> tuple[dict[str, MetricValue], dict[str, str]]:
    """Fill a missing interval by bootstrapping the per-sample scores, where the metric is
    (to 1e-6 relative) the mean of those scores in the task's unit and the task does not declare
    that it has none; otherwise leave it empty."""
    out: dict[str, MetricValue] = {}
    source: dict[str, str] = {}
    for name, mv in stored.items():
        if mv.ci_low is not None and mv.ci_high is not None:
            out[name], source[name] = mv, "stored"
            continue
        scores = np.fromiter(cache.for_metric(run_id, meta, name).values(), dtype=float)
        declared = next((m for m in meta.metrics if m.name == name), None)
        scale = None if declared is not None and declared.interval == "none" else matching_scale(mv.value, scores, meta)
        if scale is None:
            out[name], source[name] = mv, "none"
            continue
        lo, hi = bootstrap_mean_ci(scores)
        out[name] = MetricValue(mv.value, lo * scale, hi * scale, mv.n if mv.n is not None else int(scores.size))
        source[name] = "bootstrap"
    return out, source


def matching_scale(value: float, scores: np.ndarray, meta: TaskMetrics) -> float | None:
    """The factor that turns the mean of ``scores`` into the stored ``value`` (100 for percent),
    or None when the metric is not the mean of those scores."""
    if scores.size == 0 or value is None or math.isnan(value):
        return None
    mean = float(scores.mean())
    for scale in dict.fromkeys((score_scale(meta), 100.0, 1.0)):
        if math.isclose(mean * scale, value, rel_tol=1e-6, abs_tol=1e-9):
            return scale
    return None


def column_scale(row: LeaderboardRow, scores: dict[str, float], metric: str | None) -> float:
    """The unit a paired test of ``scores`` is reported in: that of ``metric``'s column where the
    metric is their mean, else that of the first of the row's metrics that is their mean (a
    corpus-level primary metric tested on the per-sample score: the score's own column, e.g.
    CLIPScore ×100), else the task's score unit."""
    values = np.fromiter(scores.values(), dtype=float)
    names = [metric] if metric else list(row.metrics)
    for name in names:
        mv = row.metrics.get(name)
        scale = None if mv is None else matching_scale(mv.value, values, row.meta)
        if scale is not None:
            return scale
    return score_scale(row.meta)


def _group(section_rows: Sequence[LeaderboardRow]) -> list[ComparableGroup]:
    by_key: dict[tuple[str, ...], list[LeaderboardRow]] = defaultdict(list)
    for row in section_rows:
        by_key[row.comparability_key].append(row)

    def weight(item: tuple[tuple[str, ...], list[LeaderboardRow]]) -> tuple[int, int, int, int]:
        _, members = item  # on a tie, the lowest view seed: `run --seed 1` never silently displaces seed 0
        return (sum(r.official for r in members), len(members), -min(r.seed for r in members),
                max(r.run_id for r in members))

    ordered = sorted(by_key.items(), key=weight, reverse=True)
    main_key = ordered[0][0]
    groups = []
    for key, members in ordered:
        gid = "g" + stable_hash(list(key), length=8)
        label = _group_label(key)
        is_main = key == main_key
        reason = None if is_main else _apart_reason(key, main_key)
        for row in members:
            row.group, row.group_label, row.ranked_with_main, row.apart_reason = gid, label, is_main, reason
        groups.append(ComparableGroup(gid, key, label, is_main, reason, None, list(members)))
    return groups


def _group_label(key: tuple[str, ...]) -> str:
    f = dict(zip([name for name, _ in GROUP_FIELDS], key))
    return (f"model {f['model']} (v{f['model_version']}) · protocol {f['protocol_hash'][:8]} · "
            f"task {f['task']} v{f['task_version']} · dataset {f['dataset']} v{f['dataset_version']} · "
            f"bench {f['bench_version']}")


def _apart_reason(key: tuple[str, ...], main_key: tuple[str, ...]) -> str:
    diffs = [f"{words} {value} vs {main} in the main group"
             for (_, words), value, main in zip(GROUP_FIELDS, key, main_key) if value != main]
    return "not comparable with the main group: " + "; ".join(diffs)


def _rank(group: ComparableGroup, catalog: TaskCatalog) -> None:
    """Competition ranking (1, 1, 3) by the primary metric (best first, in the direction the task
    declares for it); rows without it come last, unranked."""
    task = group.rows[0].task
    metric = catalog.primary(task, (m for r in group.rows for m in r.metrics))
    sign = -1.0 if metric is None or catalog.metric(task, metric).higher_is_better else 1.0
    group.primary_metric = metric
    for row in group.rows:
        row.primary_metric = metric
    scored = [r for r in group.rows if metric and metric in r.metrics and not math.isnan(r.metrics[metric].value)]
    unscored = [r for r in group.rows if r not in scored]
    scored.sort(key=lambda r: (sign * r.metrics[metric].value, r.run_id))  # type: ignore[index]
    previous: float | None = None
    rank = 0
    for position, row in enumerate(scored, start=1):
        value = row.metrics[metric].value  # type: ignore[index]
        if previous is None or value != previous:
            rank = position
        row.rank, previous = rank, value
    for row in unscored:
        row.rank = None
    group.rows = scored + sorted(unscored, key=lambda r: r.run_id)


def _comparison(row: LeaderboardRow, other: LeaderboardRow, cache: ScoreCache,
                metric: str | None = None) -> Comparison | None:
    """``row`` against ``other`` on ``metric`` (default: the primary metric)."""
    metric = metric or row.primary_metric
    if metric is None or metric not in row.metrics or metric not in other.metrics:
        return None
    sa = cache.for_metric(row.run_id, row.meta, metric)
    sb = cache.for_metric(other.run_id, other.meta, metric)
    on_primary = all(
        matching_scale(r.metrics[metric].value, np.fromiter(s.values(), dtype=float), r.meta) is not None
        for r, s in ((row, sa), (other, sb)))
    test: PairedTest = paired_test(sa, sb, run_a=row.run_id, run_b=other.run_id, meta=row.meta,
                                   scale=column_scale(row, sa, metric if on_primary else None))
    return Comparison(
        against_run=other.run_id, against_method=other.method_label, metric=metric,
        delta=row.metrics[metric].value - other.metrics[metric].value, test=test.test, p_value=test.p_value,
        significant=test.significant, n_shared=test.n_shared, only_row=test.only_a, only_other=test.only_b,
        on_primary=on_primary, mdd=test.mdd, ci_low=test.ci_low, ci_high=test.ci_high,
        score_label="" if on_primary else cache.tested_label(row.run_id, row.meta, metric), score_delta=test.diff,
    )


def score_metric(row: LeaderboardRow, cache: ScoreCache) -> str | None:
    """The column that is the mean of the per-sample score, where the primary metric is tested on
    its own stored terms instead (captioning: ``clipscore`` beside ``cider``); else None."""
    primary = row.primary_metric
    if primary is None or not (row.meta.metric(primary).sample_terms and cache.terms(row.run_id, primary)):
        return None
    scores = np.fromiter(cache.scores(row.run_id).values(), dtype=float)
    return next((name for name in sorted(row.metrics, key=row.meta_key) if name != primary
                 and matching_scale(row.metrics[name].value, scores, row.meta) is not None), None)


def _plain(rows: Sequence[LeaderboardRow], method: str) -> LeaderboardRow | None:
    """The group's run of ``method`` with its default options (the one comparisons are against)."""
    return next((r for r in rows if r.method == method and not r.options), None) if method else None


def _compare_within(group: ComparableGroup, cache: ScoreCache, comparisons: Comparisons = NO_COMPARISONS) -> None:
    ranked = [r for r in group.rows if r.rank is not None]
    if not ranked:
        return
    best = ranked[0]
    reference = _plain(ranked, comparisons.reference)
    for row in ranked:
        if row is not best:
            row.vs_best = _comparison(row, best, cache)
        if reference is not None and row is not reference:
            row.vs_reference = _comparison(row, reference, cache)
            other_column = score_metric(row, cache)
            if other_column is not None and other_column in reference.metrics:
                row.vs_reference_score = _comparison(row, reference, cache, other_column)
        baseline = _plain(ranked, comparisons.baseline_of(row.method) or "")
        if baseline is not None and row is not baseline:
            row.vs_baseline = _comparison(row, baseline, cache)
        for method, against in comparisons.pairs:
            other = _plain(ranked, against)
            if row.method == method and other is not None and other is not row:
                got = _comparison(row, other, cache)
                if got is not None:
                    row.vs_pairs.append(got)


_STRICT_FIELDS = ("task_version", "dataset_version", "protocol_hash", "bench_version")


def _attach_reward_model_refs(groups: Sequence[ComparableGroup], section_rows: Sequence[LeaderboardRow],
                              cache: ScoreCache, reference: str = "") -> None:
    """Find each reward model's own run of the declared ``reference`` method (its zero-shot) on the
    same dataset and attach it."""
    if not reference:
        return
    for group in groups:
        for row in group.rows:
            if not row.reward_model:
                continue
            candidates = [c for c in section_rows if c.method == reference and c.model == row.reward_model
                          and c.run_id != row.run_id]
            if not candidates:
                continue

            def closeness(c: LeaderboardRow) -> tuple[int, int]:
                return (sum(getattr(c, f) == getattr(row, f) for f in _STRICT_FIELDS), c.run_id)  # noqa: B023 (used by max() at once)

            ref = max(candidates, key=closeness)
            strict = all(getattr(ref, f) == getattr(row, f) for f in _STRICT_FIELDS)
            differing = [f.replace("_", " ") for f in _STRICT_FIELDS if getattr(ref, f) != getattr(row, f)]
            note = "" if strict else "not strictly comparable: " + ", ".join(differing) + " differ"
            metric = row.primary_metric
            ref_value = ref.metrics.get(metric) if metric else None
            if ref_value is None or metric not in row.metrics:
                continue
            comp = _comparison(row, ref, cache) if strict else None
            delta = row.metrics[metric].value - ref_value.value
            row.reward_model_zero_shot = RewardModelReference(
                run_id=ref.run_id, model=ref.model, metric=metric, value=ref_value.value, delta=delta,
                below=delta < 0 and comp is not None and comp.significant, strictly_comparable=strict, note=note,
                comparison=comp)
            if ref.group == group.id:
                continue  # already a ranked row of this very group: no separate reference row
            if ref not in group.reward_model_refs:
                group.reward_model_refs.append(ref)
            if group.id not in ref.reference_for:
                ref.reference_for.append(group.id)


def _reported_values(row: LeaderboardRow, references: Sequence[Reference]) -> list[ReportedValue]:
    out = []
    for ref in references:
        if (ref.task, ref.dataset, ref.method, ref.model, ref.reward_model or "") != (
                row.task, row.dataset, row.method, row.model, row.reward_model or ""):
            continue
        measured = row.metrics.get(ref.metric)
        value = None if measured is None else measured.value
        out.append(ReportedValue(ref.metric, ref.value, value, None if value is None else value - ref.value,
                                 ref.source, ref.note or ""))
    out.sort(key=lambda r: (row.meta_key(r.metric), r.source))
    return out
