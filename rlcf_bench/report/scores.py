"""Per-sample scores of stored runs and the paired test between two of them.

``sample_results.score`` is each task's per-sample value (e.g. 1/0 correctness, 1/0 hit@1, a
continuous score such as CLIPScore); the task's :class:`~rlcf_bench.types.SampleScore` says what
it is, its unit and which paired test compares it. Two runs are compared on the samples both
stored (matched by ``sample_id``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from ..stats import (
    McNemarResult,
    PairedBootstrapResult,
    mcnemar_exact,
    mcnemar_mdd,
    paired_bootstrap,
    paired_mean_mdd,
    paired_proportion_ci,
)
from ..store import SampleResult, Store
from ..types import TaskMetrics

#: Significance level used for every "significant at 5%" flag in a report.
ALPHA = 0.05



def score_scale(meta: TaskMetrics) -> float:
    """Factor turning a mean per-sample score into the unit the task's metrics use."""
    return 100.0 if meta.score.percent else 1.0


class ScoreCache:
    """Load ``sample_id -> score`` per run once; reports compare the same run many times."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[int, dict[str, float]] = {}
        self._terms: dict[tuple[int, str], dict[str, float]] = {}

    def terms(self, run_id: int, metric: str) -> dict[str, float]:
        """``sample_id -> extra[metric]``: the per-sample terms a task stores for a metric declared
        with :attr:`~rlcf_bench.types.MetricSpec.sample_terms` (samples without one left out)."""
        key = (run_id, metric)
        if key not in self._terms:
            with self.store.session() as s:
                q = select(SampleResult.sample_id, SampleResult.extra).where(SampleResult.run_id == run_id)
                self._terms[key] = {sid: float(extra[metric]) for sid, extra in s.execute(q)
                                    if isinstance(extra, dict) and isinstance(extra.get(metric), (int, float))}
        return self._terms[key]

    def for_metric(self, run_id: int, meta: TaskMetrics, metric: str | None) -> dict[str, float]:
        """The per-sample values a metric's paired test and interval use: its stored terms where the
        task declares them (and the run has them), else the per-sample score (:func:`metric_scores`)."""
        if metric and meta.metric(metric).sample_terms:
            terms = self.terms(run_id, metric)
            if terms:
                return terms
        return metric_scores(self.scores(run_id), meta, metric)

    def tested_label(self, run_id: int, meta: TaskMetrics, metric: str | None) -> str:
        """What :meth:`for_metric` returns, in words: the metric's per-sample terms or the score."""
        if metric and meta.metric(metric).sample_terms and self.terms(run_id, metric):
            return f"{metric} per-sample terms"
        return meta.score.label

    def scores(self, run_id: int) -> dict[str, float]:
        if run_id not in self._cache:
            with self.store.session() as s:
                q = select(SampleResult.sample_id, SampleResult.score).where(
                    SampleResult.run_id == run_id, SampleResult.score.is_not(None))
                self._cache[run_id] = {sid: float(score) for sid, score in s.execute(q) if score is not None}
        return self._cache[run_id]


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired significance test between run A and run B.

    ``diff`` is mean(A) - mean(B) over the shared samples, in the metric's unit (percentage
    points for a task whose score is a percent, else the score's own unit). ``mdd`` is the
    minimum detectable difference in the same unit (5% two-sided, 80% power;
    :func:`rlcf_bench.stats.mcnemar_mdd` / :func:`rlcf_bench.stats.paired_mean_mdd`): a
    non-significant ``diff`` says "no difference larger than about ``mdd``", not "no difference".
    """

    run_a: int
    run_b: int
    test: str  # "mcnemar-exact" | "paired-bootstrap" | "none"
    n_shared: int
    only_a: int
    only_b: int
    mean_a: float
    mean_b: float
    diff: float
    p_value: float
    significant: bool
    mcnemar: McNemarResult | None = None
    bootstrap: PairedBootstrapResult | None = None
    mdd: float = math.nan
    ci_low: float = math.nan  # 95% interval of ``diff``: Tango's score interval (McNemar), else the bootstrap's
    ci_high: float = math.nan

    @property
    def p_text(self) -> str:
        return format_p(self.p_value)


def metric_scores(scores: dict[str, float], meta: TaskMetrics, metric: str | None) -> dict[str, float]:
    """The per-sample scores a metric is computed from: for a metric declared on a sample group
    (:attr:`~rlcf_bench.types.MetricSpec.sample_group` ``g``: the samples with ids ``g:...``), that
    group's samples only, so a paired test or an interval of the metric is about that metric, not
    about the score pooled over every group.
    Everything else (and stores whose ids carry none of the task's groups) uses all scores."""
    group = meta.metric(metric).sample_group if metric else ""
    if not group:
        return scores
    if not any(sid.split(":", 1)[0] in meta.score.groups for sid in scores):
        return scores
    prefix = f"{group}:"
    return {sid: v for sid, v in scores.items() if sid.startswith(prefix)}


def format_p(p: float) -> str:
    if math.isnan(p):
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}"


def _all_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0.0) | (values == 1.0)))


def paired_test(scores_a: dict[str, float], scores_b: dict[str, float], *, run_a: int, run_b: int,
                meta: TaskMetrics, n_resamples: int = 2000, seed: int = 0, scale: float | None = None) -> PairedTest:
    """The task's paired test: exact McNemar (two-sided) where it declares it and every score is
    0/1, the paired bootstrap of the mean difference otherwise. ``scale``: the factor from the
    scores' mean to the unit the differences, interval and MDD are reported in (default: the task's
    score unit, :func:`score_scale`); a report passes the one of the column the test sits next to.

    The interval of the difference is Tango's score interval for paired proportions (McNemar) or
    the bootstrap's percentile interval. The significance flag uses the exact McNemar p-value
    (conservative) or the bootstrap p-value, at the 5% level, two-sided, *unadjusted*: a report
    replaces it by the flag of the multiplicity-adjusted p-value (:mod:`rlcf_bench.report.claims`).
    """
    shared = sorted(set(scores_a) & set(scores_b))
    only_a = len(scores_a) - len(shared)
    only_b = len(scores_b) - len(shared)
    scale = score_scale(meta) if scale is None else scale
    if not shared:
        nan = math.nan
        return PairedTest(run_a, run_b, "none", 0, only_a, only_b, nan, nan, nan, nan, False)
    a = np.array([scores_a[s] for s in shared], dtype=float)
    b = np.array([scores_b[s] for s in shared], dtype=float)
    mean_a, mean_b = float(a.mean()) * scale, float(b.mean()) * scale
    if meta.score.paired_test == "mcnemar-exact" and _all_binary(a) and _all_binary(b):
        n_b = int(np.sum((a == 1.0) & (b == 0.0)))
        n_c = int(np.sum((a == 0.0) & (b == 1.0)))
        mc = mcnemar_exact(n_b, n_c)
        lo, hi = paired_proportion_ci(n_b, n_c, len(shared))
        return PairedTest(run_a, run_b, "mcnemar-exact", len(shared), only_a, only_b, mean_a, mean_b,
                          mean_a - mean_b, mc.p_exact, mc.p_exact < ALPHA, mcnemar=mc,
                          mdd=mcnemar_mdd(n_b, n_c, len(shared)) * scale, ci_low=lo * scale, ci_high=hi * scale)
    bs = paired_bootstrap(a, b, n_resamples=n_resamples, seed=seed)
    return PairedTest(run_a, run_b, "paired-bootstrap", len(shared), only_a, only_b, mean_a, mean_b,
                      mean_a - mean_b, bs.p_value, bs.p_value < ALPHA, bootstrap=bs, mdd=paired_mean_mdd(a - b) * scale,
                      ci_low=bs.ci_low * scale, ci_high=bs.ci_high * scale)
