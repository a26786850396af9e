"""Average rows over a declared group of datasets (the paper's "OOD avg"), with a pooled paired test.

Which datasets are averaged is never decided here: a suite declares its groups
(:attr:`rlcf_bench.types.SuiteSpec.averages`, e.g. the micro suite's five shifted domains, or
ImageNet-A/V2/R/Sketch for the paper's Table 1) and :func:`declared_averages` collects them.

A method gets an average row for a group when it has a ranked run on *every* dataset of the group
in one comparable *setting*: the comparability fields of :data:`rlcf_bench.report.rows.GROUP_FIELDS`
minus the dataset and its version (same task, model, protocol hash and versions), the same method
configuration, method version and reward model. Anything less gives no row and a note saying
which dataset is missing (an average over fewer datasets would not be comparable with the others).
Online methods are represented by their lowest stream-order run (order seed 0), as in the
leaderboard (:mod:`rlcf_bench.report.online`).

The row's value is the mean of the stored primary metric over the datasets, each weighted
equally (as papers report it); its interval is a stratified bootstrap over the per-sample scores
(:func:`rlcf_bench.stats.stratified_bootstrap_mean_ci`). Its comparisons with the setting's
reference and family-baseline average rows test *that same equal-weight difference*: per
dataset, the mean paired difference on the shared samples and its variance; the average of
those differences with a z test and 95% interval (:func:`rlcf_bench.stats.stratified_difference`),
so the Δ and its test can never disagree in sign because datasets differ in size. Each comparison
also says how many datasets go each way and the heterogeneity of the per-dataset differences
(Cochran's Q, I²): the inference covers the listed datasets, not a general population of shifts
(docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..stats import MDD_ALPHA, MDD_POWER, stratified_bootstrap_mean_ci, stratified_difference, stratum_difference
from ..types import NO_COMPARISONS, Comparisons, DatasetAverage
from .rows import GROUP_FIELDS, MDD_BASIS, DatasetSection, LeaderboardRow, _num, matching_scale, special_num
from .scores import ALPHA, ScoreCache, score_scale

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost

#: The comparability fields an average keeps fixed: all of the leaderboard's but the dataset's own.
SETTING_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (name, words) for name, words in GROUP_FIELDS if name not in ("dataset", "dataset_version"))

def declared_comparisons(host: PluginHost | None) -> Comparisons:
    """The comparisons every installed suite declares, merged (the first declared reference)."""
    out = Comparisons()
    if host is None:
        return out
    for suite in host.suites():
        declared = suite.comparisons
        if not isinstance(declared, Comparisons):
            raise TypeError(f"suite {suite.name!r}: comparisons must be a Comparisons object, "
                            f"got {type(declared).__name__}")
        out = out.merged(declared)
    return out


def declared_averages(host: PluginHost | None) -> tuple[DatasetAverage, ...]:
    """Every dataset group the installed suites declare, once each (suites may share one)."""
    if host is None:
        return ()
    seen: dict[tuple[str, tuple[str, ...], str], DatasetAverage] = {}
    for suite in host.suites():
        for avg in suite.averages:
            if not isinstance(avg, DatasetAverage):
                raise TypeError(f"suite {suite.name!r}: averages must be DatasetAverage objects, "
                                f"got {type(avg).__name__}")
            seen.setdefault((avg.name, avg.datasets, avg.task_kind), avg)
    return tuple(seen.values())


@dataclass(frozen=True)
class PooledComparison:
    """An average row against another method's average row of the same setting: the stratified
    test of the equal-weight average of the per-dataset paired differences (``n_shared`` pairs in
    all). ``delta``: the difference of the two averages as printed; ``tested_delta``: the
    equal-weight mean of the per-dataset differences on the shared samples (the same number when
    every sample is shared), with its 95% interval ``ci_low``..``ci_high``. ``up``/``down``: the
    datasets whose difference is positive / negative; ``q``/``i2``: Cochran's Q and I² of the
    per-dataset differences. ``mdd``: the normal-approximation minimum detectable difference of
    the stratified test (5% two-sided, 80% power)."""

    against_method: str
    against_runs: tuple[int, ...]
    metric: str
    delta: float
    test: str
    p_value: float
    significant: bool
    n_shared: int
    only_row: int
    only_other: int
    mdd: float
    on_primary: bool = True
    tested_delta: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    per_dataset: tuple[float, ...] = ()
    up: int = 0
    down: int = 0
    q: float = math.nan
    i2: float = math.nan
    p_adjusted: float = math.nan
    adjustment: str = ""
    family: str = ""
    family_size: int = 0

    @property
    def p_mark(self) -> float:
        return self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted

    @property
    def k(self) -> int:
        return len(self.per_dataset)

    def heterogeneity_text(self) -> str:
        """``3 up, 2 down, I² 81%``: how the datasets go and how much their effects differ."""
        i2 = "I² n/a" if math.isnan(self.i2) else f"I² {100.0 * self.i2:.0f}%"
        return f"{self.up} up, {self.down} down of {self.k}, {i2}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "against_method": self.against_method, "against_runs": list(self.against_runs), "metric": self.metric,
            "delta": _num(self.delta), "test": self.test, "weighting": "equal weight per dataset",
            "p_value": _num(self.p_value), "p_adjusted": _num(self.p_adjusted),
            "adjustment": self.adjustment or None, "family": self.family or None, "family_size": self.family_size,
            "significant_5pct": self.significant, "n_shared": self.n_shared,
            "only_this_row": self.only_row, "only_other_row": self.only_other,
            "tested_delta": _num(self.tested_delta), "diff_ci_low": _num(self.ci_low), "diff_ci_high": _num(self.ci_high),
            "per_dataset_delta": [_num(d) for d in self.per_dataset], "datasets_up": self.up,
            "datasets_down": self.down, "cochran_q": _num(self.q), "i2": _num(self.i2),
            "min_detectable_diff": special_num(self.mdd), "min_detectable_diff_basis": MDD_BASIS,
            "tested_on": "primary metric" if self.on_primary else "per-sample score",
        }


@dataclass(frozen=True)
class AverageRow:
    """One method's average over a declared dataset group, in one comparable setting."""

    name: str
    task: str
    task_kind: str
    datasets: tuple[str, ...]
    method: str
    method_label: str
    options_text: str
    model: str
    reward_model: str | None
    setting: str
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    run_ids: tuple[int, ...]
    vs_reference: PooledComparison | None = None
    vs_baseline: PooledComparison | None = None
    family: str = ""  # the method's declared family (paper layout order)
    vs_best: PooledComparison | None = None  # against the setting's best average (paper layout's ties)

    def as_dict(self) -> dict[str, Any]:
        return {
            "row_kind": "average", "average": self.name, "task": self.task, "task_kind": self.task_kind,
            "datasets": list(self.datasets), "method": self.method, "method_label": self.method_label,
            "method_options": self.options_text,
            "model": self.model, "reward_model": self.reward_model, "setting": self.setting,
            "primary_metric": self.metric, "value": _num(self.value), "ci_low": _num(self.ci_low),
            "ci_high": _num(self.ci_high), "n": self.n, "run_ids": list(self.run_ids),
            "vs_reference": None if self.vs_reference is None else self.vs_reference.as_dict(),
            "vs_baseline": None if self.vs_baseline is None else self.vs_baseline.as_dict(),
            "vs_best": None if self.vs_best is None else self.vs_best.as_dict(),
        }


@dataclass(frozen=True)
class AverageNote:
    method: str
    text: str
    datasets: tuple[str, ...] = ()  # the group's (a dataset filter that leaves one out hides the note)


def _setting_key(row: LeaderboardRow) -> tuple[str, ...]:
    return tuple(str(getattr(row, name)) for name, _ in SETTING_FIELDS)


def setting_label(row: LeaderboardRow) -> str:
    return (f"model {row.model} (v{row.model_version}) · protocol {row.protocol_hash[:8]} · "
            f"task {row.task} v{row.task_version} · bench {row.bench_version}")


def _method_key(row: LeaderboardRow) -> tuple[str, ...]:
    return (row.method, row.config_hash, row.method_version, row.reward_model or "", row.reward_model_version or "")


def _ranked_rows(sections: Iterable[DatasetSection]) -> Iterable[LeaderboardRow]:
    for section in sections:
        for group in section.groups:
            yield from (r for r in group.rows if r.rank is not None)


@dataclass(frozen=True)
class _Members:
    """The per-dataset runs (dataset order of the group) behind one average row."""

    rows: tuple[LeaderboardRow, ...]

    def scores(self, cache: ScoreCache, metric: str) -> list[dict[str, float]]:
        """Per dataset (the group's order), ``sample_id -> score`` of the metric."""
        return [cache.for_metric(row.run_id, row.meta, metric) for row in self.rows]

    def scale(self, cache: ScoreCache, metric: str) -> float | None:
        """The common factor from mean per-sample score to the stored metric on every dataset,
        or None where the metric is not the mean of the scores (then no interval)."""
        scales = {matching_scale(r.metrics[metric].value, stratum, r.meta)
                  for r, stratum in zip(self.rows, self.strata(cache, metric))}
        return scales.pop() if len(scales) == 1 else None

    def on_primary(self, cache: ScoreCache, metric: str) -> bool:
        return self.scale(cache, metric) is not None

    def strata(self, cache: ScoreCache, metric: str) -> list[np.ndarray]:
        return [np.fromiter(cache.for_metric(r.run_id, r.meta, metric).values(), dtype=float)
                for r in self.rows]


def _average_row(avg: DatasetAverage, members: _Members, metric: str, cache: ScoreCache) -> AverageRow:
    first = members.rows[0]
    value = sum(r.metrics[metric].value for r in members.rows) / len(members.rows)
    lo = hi = None
    scale = members.scale(cache, metric)
    if scale is not None:
        low, high = stratified_bootstrap_mean_ci(members.strata(cache, metric))
        lo, hi = low * scale, high * scale
    return AverageRow(
        name=avg.name, task=first.task, task_kind=first.task_kind, datasets=avg.datasets, method=first.method,
        method_label=first.method_label, options_text=first.options_text, model=first.model,
        reward_model=first.reward_model,
        setting=setting_label(first), metric=metric, value=value, ci_low=lo, ci_high=hi,
        n=sum(r.primary_n for r in members.rows), run_ids=tuple(r.run_id for r in members.rows))


def _pooled(row: AverageRow, members: _Members, other: AverageRow, other_members: _Members,
            cache: ScoreCache) -> PooledComparison:
    """The stratified test of the equal-weight difference of two average rows."""
    scale = members.scale(cache, row.metric) or score_scale(members.rows[0].meta)
    diffs: list[float] = []
    variances: list[float] = []
    n_shared = only_row = only_other = 0
    for sa, sb in zip(members.scores(cache, row.metric), other_members.scores(cache, row.metric)):
        shared = sorted(set(sa) & set(sb))
        n_shared += len(shared)
        only_row += len(sa) - len(shared)
        only_other += len(sb) - len(shared)
        d, v = stratum_difference([sa[k] for k in shared], [sb[k] for k in shared])
        diffs.append(d * scale)
        variances.append(v * scale * scale)
    st = stratified_difference(diffs, variances)
    from scipy.stats import norm

    mdd = (float(norm.ppf(1 - MDD_ALPHA / 2)) + float(norm.ppf(MDD_POWER))) * st.se if st.se > 0 else math.nan
    return PooledComparison(
        against_method=other.method_label, against_runs=other.run_ids, metric=row.metric,
        delta=row.value - other.value, test="stratified-z", p_value=st.p_value,
        significant=bool(st.p_value < ALPHA), n_shared=n_shared, only_row=only_row, only_other=only_other, mdd=mdd,
        on_primary=members.on_primary(cache, row.metric) and other_members.on_primary(cache, row.metric),
        tested_delta=st.delta, ci_low=st.ci_low, ci_high=st.ci_high, per_dataset=tuple(diffs), up=st.up,
        down=st.down, q=st.q, i2=st.i2)


def _best(rows: list[tuple[AverageRow, _Members]]) -> tuple[AverageRow, _Members] | None:
    """The setting's best average row (in the metric's direction; the lowest run ids on a tie)."""
    scored = [v for v in rows if not math.isnan(v[0].value)]
    if not scored:
        return None
    sign = 1.0 if scored[0][1].rows[0].meta.metric(scored[0][0].metric).higher_is_better else -1.0
    return min(scored, key=lambda v: (-sign * v[0].value, v[0].run_ids))


def _one_group(avg: DatasetAverage, rows: Sequence[LeaderboardRow], cache: ScoreCache,
               comparisons: Comparisons) -> tuple[list[AverageRow], list[AverageNote]]:
    settings: dict[tuple[str, ...], dict[tuple[str, ...], dict[str, LeaderboardRow]]] = {}
    for row in rows:
        per_method = settings.setdefault(_setting_key(row), {})
        per_method.setdefault(_method_key(row), {}).setdefault(row.dataset, row)
    out: list[AverageRow] = []
    notes: list[AverageNote] = []
    for per_method in settings.values():
        complete: dict[tuple[str, ...], tuple[AverageRow, _Members]] = {}
        for per_ds in per_method.values():
            some = next(iter(per_ds.values()))
            missing = [d for d in avg.datasets if d not in per_ds]
            metrics = {r.primary_metric for r in per_ds.values()}
            if missing or len(metrics) != 1:
                why = (f"no comparable run on {', '.join(missing)}" if missing
                       else f"the datasets' primary metrics differ ({', '.join(sorted(map(str, metrics)))})")
                notes.append(AverageNote(some.method, f"{avg.name} ({some.task}): no row for {some.method_label} "
                                                      f"under {setting_label(some)}: {why}", avg.datasets))
                continue
            members = _Members(tuple(per_ds[d] for d in avg.datasets))
            metric = some.primary_metric
            assert metric is not None  # ranked rows have one
            complete[_method_key(some)] = (_average_row(avg, members, metric, cache), members)
        def plain(method: str | None) -> tuple[AverageRow, _Members] | None:
            return next((v for v in complete.values() if method and v[0].method == method  # noqa: B023
                         and v[0].method_label == method), None)

        reference = plain(comparisons.reference)
        best = _best(list(complete.values()))
        for average, members in complete.values():
            baseline = plain(comparisons.baseline_of(average.method))
            vs_ref = (None if reference is None or reference[0] is average
                      else _pooled(average, members, *reference, cache))
            vs_base = None if baseline is None or baseline[0] is average else _pooled(average, members, *baseline, cache)
            vs_best = None if best is None or best[0] is average else _pooled(average, members, *best, cache)
            out.append(replace(average, vs_reference=vs_ref, vs_baseline=vs_base, vs_best=vs_best,
                               family=comparisons.family_of(average.method) or ""))
    out.sort(key=lambda r: (r.setting, -r.value if not math.isnan(r.value) else math.inf, r.method_label))
    return out, notes


def build_averages(sections: Sequence[DatasetSection], averages: Sequence[DatasetAverage], cache: ScoreCache,
                   comparisons: Comparisons = NO_COMPARISONS) -> tuple[list[AverageRow], list[AverageNote]]:
    """Average rows (sorted by setting, then value) and notes for every declared group that has
    at least one run on one of its datasets."""
    ranked = list(_ranked_rows(sections))
    rows: list[AverageRow] = []
    notes: list[AverageNote] = []
    for avg in averages:
        members = [r for r in ranked if avg.covers(r.task_kind) and r.dataset in avg.datasets]
        if members:
            got_rows, got_notes = _one_group(avg, members, cache, comparisons)
            rows += got_rows
            notes += got_notes
    return rows, notes
