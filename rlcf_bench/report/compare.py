"""``rlcf-bench compare RUN_A RUN_B``: a paired comparison of two stored runs.

Samples are matched by ``sample_id``; only the samples both runs stored are compared, and the
report says how many were shared and how many exist in one run only. The test is the one the
task declares for its per-sample score (:class:`rlcf_bench.types.SampleScore`): the exact McNemar
test for 0/1 scores, or a paired bootstrap of the mean per-sample difference. The two runs should be comparable (same task, dataset, model,
protocol and versions); when they are not, the comparison is still computed but says why it is
not a like-for-like one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..store import Run, Store
from ..types import TaskMetrics
from .rows import GROUP_FIELDS, matching_scale
from .scores import ALPHA, PairedTest, ScoreCache, format_p, paired_test, score_scale
from .tasks import GENERIC, TaskCatalog, catalog_from


@dataclass(frozen=True)
class RunBrief:
    run_id: int
    task: str
    task_kind: str
    dataset: str
    method: str
    model: str
    reward_model: str | None
    status: str

    def describe(self) -> str:
        rm = f", reward model {self.reward_model}" if self.reward_model else ""
        return f"run {self.run_id}: {self.method} on {self.task}/{self.dataset}, model {self.model}{rm}"


@dataclass(frozen=True)
class PairedComparison:
    """The numbers behind :func:`compare`. ``diff`` = mean(A) - mean(B) on the shared samples,
    in percentage points where the task's score is a percent, else in the score's own unit."""

    a: RunBrief
    b: RunBrief
    comparable: bool
    differences: tuple[str, ...]  # why the runs are not comparable (empty when they are)
    test: PairedTest
    metric: str | None = None  # the primary metric whose per-sample scores were tested
    meta: TaskMetrics = field(default=GENERIC, repr=False)  # run A's task's metric metadata
    tested: str = ""  # what was tested (the score's label, or the metric's per-sample terms)
    scale: float = 1.0  # factor from the tested values' mean to the reported unit (100: points)

    @property
    def n_shared(self) -> int:
        return self.test.n_shared

    @property
    def significant(self) -> bool:
        return self.test.significant

    @property
    def p_value(self) -> float:
        return self.test.p_value


def _brief(run: Run) -> RunBrief:
    return RunBrief(run.id, run.task, run.task_kind or run.task, run.dataset, run.method, run.model,
                    run.reward_model or None, run.status)


def compare_runs(store: Store, run_a: int, run_b: int, *, n_resamples: int = 2000, seed: int = 0,
                 tasks: TaskCatalog | None = None) -> PairedComparison:
    """Paired test of run A against run B on their shared samples, as run A's task declares it
    (``tasks``: the metric metadata; default: what the store recorded)."""
    ra, rb = store.get_run(run_a), store.get_run(run_b)
    missing = [str(i) for i, r in ((run_a, ra), (run_b, rb)) if r is None]
    if missing:
        raise LookupError(f"no run with id {', '.join(missing)} in {store.url}")
    assert ra is not None and rb is not None
    differences = tuple(f"{words}: {getattr(ra, name)} vs {getattr(rb, name)}"
                        for name, words in GROUP_FIELDS if getattr(ra, name) != getattr(rb, name))
    cache = ScoreCache(store)
    meta = (tasks if tasks is not None else catalog_from(store)).of(ra.task)
    metric = _primary_of(store, ra.id, rb.id, meta)
    sa, sb = cache.for_metric(ra.id, meta, metric), cache.for_metric(rb.id, meta, metric)
    stored = store.metrics_of(ra.id).get(metric) if metric else None
    scale = None if stored is None else matching_scale(stored.value, np.fromiter(sa.values(), dtype=float), meta)
    scale = score_scale(meta) if scale is None else scale
    test = paired_test(sa, sb, run_a=ra.id, run_b=rb.id, meta=meta, n_resamples=n_resamples, seed=seed, scale=scale)
    return PairedComparison(_brief(ra), _brief(rb), not differences, differences, test, metric, meta,
                            cache.tested_label(ra.id, meta, metric), scale)


def _primary_of(store: Store, run_a: int, run_b: int, meta: TaskMetrics) -> str | None:
    """The task's primary metric both runs have (its first declared candidate they share)."""
    a, b = store.metrics_of(run_a), store.metrics_of(run_b)
    return next((m for m in meta.primary if m in a and m in b), None)


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def format_comparison(c: PairedComparison) -> str:
    t = c.test
    unit = " points" if c.scale == 100.0 else ""
    lines = [
        f"A  {c.a.describe()}",
        f"B  {c.b.describe()}",
    ]
    for brief in (c.a, c.b):
        if brief.status != "finished":
            lines.append(f"note: run {brief.run_id} is {brief.status!r}, not finished")
    if c.comparable:
        lines.append("comparable: yes (same task, dataset, model, protocol hash and versions)")
    else:
        lines.append("comparable: NO, differences below make this not a like-for-like comparison:")
        lines += [f"  - {d}" for d in c.differences]
    on = f" ({c.metric}'s own samples)" if c.metric and c.meta.metric(c.metric).sample_group else ""
    lines.append(f"shared samples{on}: {t.n_shared} (only in A: {t.only_a}, only in B: {t.only_b})")
    if t.n_shared == 0:
        lines.append("no shared samples: nothing to test")
        return "\n".join(lines) + "\n"
    label = c.tested or c.meta.score.label
    pct = "%" if unit and c.meta.score.percent else ""
    lines.append(f"{label} on shared samples: A {_fmt(t.mean_a)}{pct}, B {_fmt(t.mean_b)}{pct}, "
                 f"A - B = {t.diff:+.2f}{unit}")
    if t.mcnemar is not None:
        mc = t.mcnemar
        lines.append("test: exact McNemar (two-sided) on per-sample correctness")
        lines.append(f"  A right & B wrong: {mc.b}   A wrong & B right: {mc.c}   discordant: {mc.n_discordant}")
        lines.append(f"  {format_p(mc.p_exact)} (exact), {format_p(mc.p_mid)} (mid-p)")
        lines.append(f"  95% CI of A - B (Tango's score interval): [{t.ci_low:+.2f}, {t.ci_high:+.2f}]{unit}")
    elif t.bootstrap is not None:
        bs = t.bootstrap
        s = c.scale
        lines.append(f"test: paired bootstrap of the mean difference ({bs.n_resamples} resamples, two-sided)")
        lines.append(f"  95% CI of A - B: [{bs.ci_low * s:+.2f}, {bs.ci_high * s:+.2f}]{unit}   {format_p(bs.p_value)}")
    if not math.isnan(t.mdd):
        detectable = "none (too few discordant pairs)" if math.isinf(t.mdd) else f"{t.mdd:.2f}{unit}"
        lines.append(f"minimum detectable difference (5% two-sided, about 80% power, normal approximation): "
                     f"{detectable}")
    verdict = "significant" if t.significant else "not significant"
    better = "A" if t.diff > 0 else "B" if t.diff < 0 else "neither"
    lines.append(f"verdict: {verdict} at {ALPHA:.0%}" + (f" ({better} is better)" if t.significant else "")
                 + " (this one comparison, unadjusted; the report adjusts over each table's family)")
    return "\n".join(lines) + "\n"


def compare(store: Store, run_a: int, run_b: int, tasks: TaskCatalog | None = None) -> str:
    """Human-readable paired comparison of two runs (what ``rlcf-bench compare`` prints)."""
    return format_comparison(compare_runs(store, run_a, run_b, tasks=tasks))
