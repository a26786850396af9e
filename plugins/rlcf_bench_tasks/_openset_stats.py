"""OOD-detection statistics of the open-set task (``docs/open-set.md#metrics``).

Convention (OpenOOD, CLIPTTA): in-distribution (ID) is the positive class and a higher OOD score
means "more in-distribution" (maximum softmax probability, negative energy).

* AUROC: the Mann–Whitney statistic ``P(s_id > s_ood) + 0.5 P(s_id = s_ood)``, from midranks.
* FPR@95%TPR: the largest threshold ``t`` that keeps at least 95 % of the ID samples
  (``s_id >= t``); the share of OOD samples with ``s_ood >= t`` (what ``roc_curve`` gives at its
  first point with TPR >= 0.95).
* Intervals: percentile bootstrap stratified by ID/OOD (each resample draws ``m`` ID and ``n`` OOD
  samples), as the task stores them. DeLong's variance (Sun & Xu's midrank form, linear memory)
  for the paired test of two AUROCs on the same samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

TPR_LEVEL = 0.95
#: Stratified bootstrap resamples of the AUROC and FPR95 intervals (as the ECE's: stable 2.5 %
#: and 97.5 % quantiles).
RESAMPLES = 2000


def _split(scores: Any, is_ood: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float)
    ood = np.asarray(is_ood, dtype=bool)
    if s.shape != ood.shape or s.ndim != 1:
        raise ValueError(f"scores and OOD flags must be 1-D of one length, got {s.shape} and {ood.shape}")
    if not np.isfinite(s).all():
        raise ValueError("OOD scores must be finite")
    return s[~ood], s[ood]


def _midranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(x, method="average"), dtype=float)


def auroc(scores: Any, is_ood: Any) -> float:
    """AUROC of ``scores`` separating ID (positive) from OOD samples; NaN without both kinds."""
    pos, neg = _split(scores, is_ood)
    m, n = pos.size, neg.size
    if not m or not n:
        return float("nan")
    ranks = _midranks(np.concatenate([pos, neg]))[:m]
    return float((ranks.sum() - m * (m + 1) / 2) / (m * n))


def fpr_at_tpr(scores: Any, is_ood: Any, tpr: float = TPR_LEVEL) -> float:
    """The share of OOD samples at or above the highest threshold keeping ``tpr`` of ID samples."""
    pos, neg = _split(scores, is_ood)
    if not pos.size or not neg.size:
        return float("nan")
    k = math.ceil(tpr * pos.size - 1e-9)
    threshold = np.sort(pos)[::-1][k - 1]
    return float((neg >= threshold).mean())


def _resampled(pos: np.ndarray, neg: np.ndarray, n_resamples: int, seed: int,
               max_cells: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and FPR95 of ``n_resamples`` stratified resamples (drawn in chunks)."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    m, n = pos.size, neg.size
    k = math.ceil(TPR_LEVEL * m - 1e-9)
    per_chunk = max(1, max_cells // (m + n))
    aucs, fprs = [], []
    for start in range(0, n_resamples, per_chunk):
        r = min(per_chunk, n_resamples - start)
        p = pos[rng.integers(0, m, size=(r, m))]
        q = neg[rng.integers(0, n, size=(r, n))]
        ranks = np.asarray(rankdata(np.concatenate([p, q], axis=1), method="average", axis=1))[:, :m]
        aucs.append((ranks.sum(axis=1) - m * (m + 1) / 2) / (m * n))
        threshold = -np.partition(-p, k - 1, axis=1)[:, k - 1]
        fprs.append((q >= threshold[:, None]).mean(axis=1))
    return np.concatenate(aucs), np.concatenate(fprs)


def bootstrap_intervals(scores: Any, is_ood: Any, n_resamples: int = RESAMPLES,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Stratified percentile bootstrap 95 % intervals of ``auroc`` and ``fpr95`` (fractions)."""
    pos, neg = _split(scores, is_ood)
    if not pos.size or not neg.size:
        nan = (float("nan"), float("nan"))
        return {"auroc": nan, "fpr95": nan}
    aucs, fprs = _resampled(pos, neg, n_resamples, seed)
    out = {}
    for name, values in (("auroc", aucs), ("fpr95", fprs)):
        lo, hi = np.quantile(values, [0.025, 0.975])
        out[name] = (float(lo), float(hi))
    return out


def _structural(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and DeLong's structural components ``V10`` (per ID sample) and ``V01`` (per OOD
    sample) from midranks: ``V10_i = (R_i - R^X_i) / n``, ``V01_j = 1 - (R_j - R^Y_j) / m``."""
    m, n = pos.size, neg.size
    combined = _midranks(np.concatenate([pos, neg]))
    v10 = (combined[:m] - _midranks(pos)) / n
    v01 = 1.0 - (combined[m:] - _midranks(neg)) / m
    return float(v10.mean()), v10, v01


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of two AUROCs on the same samples: ``diff = auroc_a - auroc_b``, its
    standard error, 95 % interval and two-sided p-value."""

    auroc_a: float
    auroc_b: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_id: int
    n_ood: int


def delong_variance(scores: Any, is_ood: Any) -> tuple[float, float]:
    """AUROC and DeLong's estimate of its variance."""
    pos, neg = _split(scores, is_ood)
    auc, v10, v01 = _structural(pos, neg)
    return auc, float(np.var(v10, ddof=1) / pos.size + np.var(v01, ddof=1) / neg.size)


def delong_paired(scores_a: Any, scores_b: Any, is_ood: Any) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988): ``z = (A - B) / sqrt(var A + var B - 2 cov)``."""
    from scipy.stats import norm

    pos_a, neg_a = _split(scores_a, is_ood)
    pos_b, neg_b = _split(scores_b, is_ood)
    m, n = pos_a.size, neg_a.size
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 ID and 2 OOD samples, got {m} and {n}")
    auc_a, v10_a, v01_a = _structural(pos_a, neg_a)
    auc_b, v10_b, v01_b = _structural(pos_b, neg_b)
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = auc_a - auc_b
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
    else:
        p = float(2 * norm.sf(abs(diff) / se))
    z = float(norm.ppf(0.975))
    return DeLongResult(auc_a, auc_b, diff, se, diff - z * se, diff + z * se, p, m, n)
