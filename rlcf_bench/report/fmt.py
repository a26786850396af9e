"""Number formatting shared by the text formats, so markdown and HTML print identical cells.

Metric values are printed with two decimals; the CSV and JSON formats carry full precision.
"""

from __future__ import annotations

import math

from ..types import MetricValue
from .averages import PooledComparison
from .rows import Comparison, LeaderboardRow, RewardModelReference
from .scores import format_p

DASH = "—"
#: A task's metric giving the share (%) of samples that get the most frequent prediction, and the
#: share from which a row is flagged as a prediction collapse (docs/statistics.md).
COLLAPSE_METRIC = "top_class_share"
COLLAPSE_SHARE = 50.0
SIGNIFICANT = "sig"  # the marker after a p-value significant at 5% (two-sided) after the multiplicity adjustment


def num(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return f"{x:.{digits}f}"


def signed(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return DASH
    return f"{x + 0.0 if round(x, digits) else 0.0:+.{digits}f}"  # a rounding residue prints +0.00, not -0.00


def ci(mv: MetricValue | None) -> str:
    if mv is None or mv.ci_low is None or mv.ci_high is None:
        return DASH
    return f"[{num(mv.ci_low)}, {num(mv.ci_high)}]"


def value_with_ci(mv: MetricValue | None) -> str:
    if mv is None:
        return DASH
    interval = ci(mv)
    exact = mv.ci_low == mv.ci_high == mv.value  # a count or a size: no sampling uncertainty
    return num(mv.value) if interval == DASH or exact else f"{num(mv.value)} {interval}"


def mdd(x: float | None) -> str:
    """``MDD 4.12``: the minimum detectable difference of a paired test (5% two-sided, about 80%
    power, normal approximation), in the unit of the difference it sits next to; ``MDD ∞`` when
    no difference the observed discordance allows reaches that power; ``MDD n/a`` when it cannot
    be estimated (no discordant pair: the discordance is unknown)."""
    if x is None:
        return ""
    if math.isnan(x):
        return "MDD n/a"
    return "MDD ∞" if math.isinf(x) else f"MDD {num(x)}"


def interval(low: float | None, high: float | None) -> str:
    """``[-0.30, +4.50]``: a 95% interval of a difference (signed ends); empty when there is none."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return ""
    return f"[{signed(low)}, {signed(high)}]"


ADJUSTED_WORDS = {"holm": "Holm", "bh": "BH"}


def p_values(c: Comparison | PooledComparison) -> str:
    """``p=0.031, Holm p=0.124 sig``: the raw and the adjusted p-value, and the mark the adjusted
    one earns (5%, two-sided)."""
    text = format_p(c.p_value)
    if c.adjustment and not math.isnan(c.p_adjusted):
        text += f", {ADJUSTED_WORDS.get(c.adjustment, c.adjustment)} {format_p(c.p_adjusted)}"
    return text + (f" {SIGNIFICANT}" if c.significant else "")


def comparison(c: Comparison | PooledComparison | None) -> str:
    """``-2.10 [-4.02, -0.18] (p=0.031, Holm p=0.124; MDD 4.12)``: the stored-metric difference,
    the 95% interval of the tested difference, the raw and adjusted p-values with the 5% mark of
    the adjusted one, and the minimum detectable difference. Where the primary metric is
    corpus-level (no per-sample test of it), its difference is shown untested and the per-sample
    score's own difference, interval and test follow, named. An average's comparison adds how
    many datasets go each way and the heterogeneity I²."""
    if c is None:
        return DASH
    if c.n_shared == 0:
        return f"{signed(c.delta)} (no shared samples)"
    detectable = mdd(c.mdd)
    extra = f"; {detectable}" if detectable else ""
    if isinstance(c, PooledComparison):
        extra = f"; {c.heterogeneity_text()}{extra}"
    elif c.repetitions > 1:
        extra = f"; mean over {c.repetitions} seeds/orders{extra}"
    ci_text = interval(c.ci_low, c.ci_high)
    if isinstance(c, Comparison) and not c.on_primary:
        return (f"{signed(c.delta)} (corpus metric, not tested); {c.score_label} {signed(c.score_delta)} "
                f"{ci_text} ({p_values(c)}{extra})")
    return f"{signed(c.delta)} {ci_text} ({p_values(c)}{extra})".replace("  ", " ")


def score_comparison(row: LeaderboardRow) -> list[str]:
    """``clipscore vs zero-shot: -1.00 [...] (p=...)``: the reference comparison on the per-sample
    score's own column, where the primary metric was tested on its own terms (else nothing)."""
    c = row.vs_reference_score
    return [] if c is None else [f"{c.metric} vs {c.against_method}: {comparison(c)}"]


def reward_reference(r: RewardModelReference | None) -> str:
    if r is None:
        return DASH
    text = comparison(r.comparison) if r.comparison is not None else f"{signed(r.delta)} (not tested)"
    return text + (" BELOW" if r.below else "")


def ms_pair(a: float | None, b: float | None) -> str:
    return f"{num(a, 1)} / {num(b, 1)}"


def percent(fraction: float | None) -> str:
    return DASH if fraction is None else f"{100.0 * fraction:.1f}%"


def memory(row: LeaderboardRow) -> str:
    if row.peak_memory_mb is None:
        return DASH
    kind = f" ({row.memory_kind})" if row.memory_kind else ""
    return f"{row.peak_memory_mb:.0f}{kind}"


def notes(row: LeaderboardRow) -> list[str]:
    """Short warnings a reader must not miss."""
    out = []
    rm = row.reward_model_zero_shot
    if rm is not None and rm.below:
        out.append(f"significantly below its own reward model's reference run ({num(rm.value)}): not a win")
    if rm is not None and not rm.strictly_comparable:
        out.append(f"reward-model reference {rm.note}")
    if row.orders is not None:
        out.append(row.orders.text())
    share = row.metrics.get(COLLAPSE_METRIC)
    if share is not None and share.value >= COLLAPSE_SHARE:
        out.append(f"prediction collapse: {share.value:.0f}% of the samples get one class")
    if not row.official:
        out.append("unofficial run")
    for c in (row.vs_best, row.vs_reference, row.vs_baseline):
        if c is not None and (c.only_row or c.only_other):
            out.append(f"vs run {c.against_run}: {c.n_shared} shared samples, "
                       f"{c.only_row} only here, {c.only_other} only there")
    if row.rank is None:
        out.append("no primary metric: not ranked")
    return out
