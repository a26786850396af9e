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
(:func:`rlcf_bench.stats.stratified_bootstrap_mean_ci`). The paired tests against the setting's
zero-shot and TPT average rows *pool* the samples of all datasets, matched by (dataset, sample
id), and run the leaderboard's test (:func:`rlcf_bench.report.scores.paired_test`: the task's
declared test, e.g. exact McNemar for 0/1 scores), with the minimum detectable difference of the pooled
comparison. Pooling is what lets a suite of a few hundred images per domain detect differences
that no single domain can (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..stats import stratified_bootstrap_mean_ci
from ..types import DatasetAverage
from .rows import GROUP_FIELDS, TPT, ZERO_SHOT, DatasetSection, LeaderboardRow, _num, matching_scale
from .scores import ScoreCache, metric_scores, paired_test

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost

#: The comparability fields an average keeps fixed: all of the leaderboard's but the dataset's own.
SETTING_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (name, words) for name, words in GROUP_FIELDS if name not in ("dataset", "dataset_version"))

#: Separates the dataset from the sample id in the pooled test's keys (no dataset name has one).
_KEY_SEP = "\x00"


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
    """An average row against another method's average row of the same setting, tested on the
    samples of all datasets pooled (``n_shared`` pairs; ``discordant`` = (b, c) for McNemar).
    ``delta`` is the difference of the two averages as printed; ``mdd`` the minimum detectable
    difference of the pooled test, in the metric's unit."""

    against_method: str
    against_runs: tuple[int, ...]
    metric: str
    delta: float
    test: str
    p_value: float
    p_mid: float | None
    significant: bool
    n_shared: int
    only_row: int
    only_other: int
    discordant: tuple[int, int] | None
    mdd: float
    on_primary: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "against_method": self.against_method, "against_runs": list(self.against_runs), "metric": self.metric,
            "delta": _num(self.delta), "test": self.test, "pooled": True, "p_value": _num(self.p_value),
            "p_mid": _num(self.p_mid), "significant_5pct": self.significant, "n_shared": self.n_shared,
            "only_this_row": self.only_row, "only_other_row": self.only_other,
            "discordant_b": None if self.discordant is None else self.discordant[0],
            "discordant_c": None if self.discordant is None else self.discordant[1],
            "min_detectable_diff": _num(self.mdd),
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
    vs_zero_shot: PooledComparison | None = None
    vs_tpt: PooledComparison | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row_kind": "average", "average": self.name, "task": self.task, "task_kind": self.task_kind,
            "datasets": list(self.datasets), "method": self.method, "method_label": self.method_label,
            "method_options": self.options_text,
            "model": self.model, "reward_model": self.reward_model, "setting": self.setting,
            "primary_metric": self.metric, "value": _num(self.value), "ci_low": _num(self.ci_low),
            "ci_high": _num(self.ci_high), "n": self.n, "run_ids": list(self.run_ids),
            "vs_zero_shot": None if self.vs_zero_shot is None else self.vs_zero_shot.as_dict(),
            "vs_tpt": None if self.vs_tpt is None else self.vs_tpt.as_dict(),
        }


@dataclass(frozen=True)
class AverageNote:
    method: str
    text: str


def _setting_key(row: LeaderboardRow) -> tuple[str, ...]:
    return tuple(str(getattr(row, name)) for name, _ in SETTING_FIELDS)


def _setting_label(row: LeaderboardRow) -> str:
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

    def pooled_scores(self, cache: ScoreCache, metric: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in self.rows:
            for sid, score in metric_scores(cache.scores(row.run_id), row.meta, metric).items():
                out[f"{row.dataset}{_KEY_SEP}{sid}"] = score
        return out

    def scale(self, cache: ScoreCache, metric: str) -> float | None:
        """The common factor from mean per-sample score to the stored metric on every dataset,
        or None where the metric is not the mean of the scores (then no interval)."""
        scales = {matching_scale(r.metrics[metric].value, stratum, r.meta)
                  for r, stratum in zip(self.rows, self.strata(cache, metric))}
        return scales.pop() if len(scales) == 1 else None

    def on_primary(self, cache: ScoreCache, metric: str) -> bool:
        return self.scale(cache, metric) is not None

    def strata(self, cache: ScoreCache, metric: str) -> list[np.ndarray]:
        return [np.fromiter(metric_scores(cache.scores(r.run_id), r.meta, metric).values(), dtype=float)
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
        setting=_setting_label(first), metric=metric, value=value, ci_low=lo, ci_high=hi,
        n=sum(r.primary_n for r in members.rows), run_ids=tuple(r.run_id for r in members.rows))


def _pooled(row: AverageRow, members: _Members, other: AverageRow, other_members: _Members,
            cache: ScoreCache) -> PooledComparison:
    test = paired_test(members.pooled_scores(cache, row.metric), other_members.pooled_scores(cache, row.metric),
                       run_a=row.run_ids[0], run_b=other.run_ids[0], meta=members.rows[0].meta)
    mc = test.mcnemar
    return PooledComparison(
        against_method=other.method_label, against_runs=other.run_ids, metric=row.metric,
        delta=row.value - other.value, test=test.test, p_value=test.p_value,
        p_mid=None if mc is None else mc.p_mid, significant=test.significant, n_shared=test.n_shared,
        only_row=test.only_a, only_other=test.only_b, discordant=None if mc is None else (mc.b, mc.c),
        mdd=test.mdd, on_primary=members.on_primary(cache, row.metric) and other_members.on_primary(cache, row.metric))


def _one_group(avg: DatasetAverage, rows: Sequence[LeaderboardRow],
               cache: ScoreCache) -> tuple[list[AverageRow], list[AverageNote]]:
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
                                                      f"under {_setting_label(some)}: {why}"))
                continue
            members = _Members(tuple(per_ds[d] for d in avg.datasets))
            metric = some.primary_metric
            assert metric is not None  # ranked rows have one
            complete[_method_key(some)] = (_average_row(avg, members, metric, cache), members)
        zero_shot = next((v for v in complete.values() if v[0].method == ZERO_SHOT and v[0].method_label == ZERO_SHOT),
                         None)
        tpt = next((v for v in complete.values() if v[0].method == TPT and v[0].method_label == TPT), None)
        for average, members in complete.values():
            vs_zero = (None if zero_shot is None or zero_shot[0] is average
                       else _pooled(average, members, *zero_shot, cache))
            vs_tpt = None if tpt is None or tpt[0] is average else _pooled(average, members, *tpt, cache)
            out.append(replace(average, vs_zero_shot=vs_zero, vs_tpt=vs_tpt))
    out.sort(key=lambda r: (r.setting, -r.value if not math.isnan(r.value) else math.inf, r.method_label))
    return out, notes


def build_averages(sections: Sequence[DatasetSection], averages: Sequence[DatasetAverage],
                   cache: ScoreCache) -> tuple[list[AverageRow], list[AverageNote]]:
    """Average rows (sorted by setting, then value) and notes for every declared group that has
    at least one run on one of its datasets."""
    ranked = list(_ranked_rows(sections))
    rows: list[AverageRow] = []
    notes: list[AverageNote] = []
    for avg in averages:
        members = [r for r in ranked if avg.covers(r.task_kind) and r.dataset in avg.datasets]
        if members:
            got_rows, got_notes = _one_group(avg, members, cache)
            rows += got_rows
            notes += got_notes
    return rows, notes
