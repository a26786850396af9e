"""Confidence intervals and paired tests used by tasks and reports.

The Wilson interval and the exact binomial tail come from :mod:`scipy.stats`; what no library
provides in this form is written here: the mid-p McNemar value, and the bootstraps (memory-bounded,
with a binomial fast path for 0/1 scores). Deterministic (bootstrap resamples use a fixed seed)
so reports are reproducible byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved near 0 and 1), at the
    two-sided level of the normal quantile ``z`` (95% by default), via ``scipy.stats.binomtest``."""
    if n <= 0:
        return (math.nan, math.nan)
    from scipy.stats import binomtest, norm

    level = round(1.0 - 2.0 * float(norm.sf(z)), 12)  # Z95 -> exactly 0.95
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean,
                 n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over per-sample ``values``."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    if statistic is np.mean and arr.size * n_resamples > _MAX_RESAMPLE_CELLS:
        stats = _chunked_resample_means(arr, n_resamples, rng)
        lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
        return (float(lo), float(hi))
    idx = rng.integers(0, arr.size, size=(n_resamples, arr.size))
    if statistic is np.mean:
        stats = arr[idx].mean(axis=1)
    else:
        stats = np.array([statistic(arr[i]) for i in idx])
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------------------------
# Per-run intervals from stored per-sample scores, and paired tests between two runs
# --------------------------------------------------------------------------------------------

#: Upper bound on the number of resampled values held in memory at once by the bootstraps.
_MAX_RESAMPLE_CELLS = 4_000_000


def _is_binary(arr: np.ndarray) -> bool:
    return bool(arr.size) and bool(np.all((arr == 0.0) | (arr == 1.0)))


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, n_resamples: int = 2000, alpha: float = 0.05,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, memory-bounded for large sample counts.

    For 0/1 values (classification correctness, retrieval hit@1) resampling ``n`` values with
    replacement and counting the ones is exactly a Binomial(n, p) draw, so the fast path draws
    those counts directly; the distribution is the same as the generic resampling. Otherwise
    the resamples are drawn in chunks so that ``n_resamples * n`` never has to fit in memory.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    if _is_binary(arr):
        means = rng.binomial(arr.size, arr.mean(), size=n_resamples) / arr.size
    else:
        means = _chunked_resample_means(arr, n_resamples, rng)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def _chunked_resample_means(arr: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    rows_per_chunk = max(1, _MAX_RESAMPLE_CELLS // max(1, arr.size))
    out = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, rows_per_chunk):
        stop = min(n_resamples, start + rows_per_chunk)
        idx = rng.integers(0, arr.size, size=(stop - start, arr.size))
        out[start:stop] = arr[idx].mean(axis=1)
    return out


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on the discordant pairs of two paired binary outcomes.

    ``b``: samples A got right and B got wrong; ``c``: the reverse. Under the null hypothesis
    (both methods equally accurate) each discordant pair is a fair coin, so ``b ~ Bin(b+c, 1/2)``.
    ``p_exact`` is the two-sided exact (conditional binomial) p-value; ``p_mid`` the mid-p value
    (``p_exact`` minus the probability of the observed table), which is less conservative and
    has close to nominal size (Fagerland, Lydersen & Laake, 2013).
    """

    b: int
    c: int
    p_exact: float
    p_mid: float

    @property
    def n_discordant(self) -> int:
        return self.b + self.c


def mcnemar_exact(b: int, c: int) -> McNemarResult:
    """Two-sided exact and mid-p McNemar test for ``b`` and ``c`` discordant pairs.

    The binomial tail and point probabilities are scipy's; ``p_exact`` doubles the smaller tail
    (the two-sided exact test, equal to ``scipy.stats.binomtest(min(b, c), b + c).pvalue`` for
    p = 1/2), and the mid-p subtracts the observed table's probability once."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 1.0, 1.0)
    from scipy.stats import binom

    k = min(b, c)
    tail = float(binom.cdf(k, n, 0.5))  # P(X <= k)
    point = float(binom.pmf(k, n, 0.5))  # P(X = k)
    p_exact = min(1.0, 2.0 * tail)
    p_mid = min(1.0, 2.0 * tail - point)
    return McNemarResult(b, c, p_exact, max(0.0, p_mid))


@dataclass(frozen=True)
class PairedBootstrapResult:
    """Paired bootstrap of the mean per-sample difference ``a - b``.

    ``ci_low``/``ci_high``: percentile interval of the mean difference. ``p_value``: two-sided,
    from the bootstrap distribution re-centred on zero (the null of no difference), with the
    ``(1 + count) / (1 + resamples)`` correction so it is never exactly zero.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_resamples: int


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_resamples: int = 2000,
                     alpha: float = 0.05, seed: int = 0) -> PairedBootstrapResult:
    """Paired bootstrap test on two equally long, aligned per-sample score vectors."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples must align, got {xa.shape} and {xb.shape}")
    n = int(xa.size)
    if n == 0:
        return PairedBootstrapResult(0, math.nan, math.nan, math.nan, math.nan, math.nan, 1.0, n_resamples)
    diff = xa - xb
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    means = _chunked_resample_means(diff, n_resamples, rng)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    if np.all(diff == diff[0]) and observed == 0.0:
        p = 1.0
    else:
        extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
        p = (1 + extreme) / (1 + n_resamples)
    return PairedBootstrapResult(n, float(xa.mean()), float(xb.mean()), observed, float(lo), float(hi),
                                 min(1.0, p), n_resamples)


# --------------------------------------------------------------------------------------------
# Minimum detectable differences (5% two-sided, 80% power) of the paired tests above
# --------------------------------------------------------------------------------------------

#: Significance level and power the minimum detectable differences are stated at.
MDD_ALPHA = 0.05
MDD_POWER = 0.80


def _z_values(alpha: float, power: float) -> tuple[float, float]:
    from scipy.stats import norm

    return float(norm.ppf(1.0 - alpha / 2.0)), float(norm.ppf(power))


def mcnemar_mdd(b: int, c: int, n: int, *, alpha: float = MDD_ALPHA, power: float = MDD_POWER) -> float:
    """Minimum detectable difference (a proportion, 0-1) of a paired binary comparison.

    Connor's sample size for McNemar's test (R. J. Connor, "Sample size for testing differences
    in proportions for the paired-sample design", Biometrics 43:207-211, 1987; normal
    approximation) is ``n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2`` with ``psi``
    the discordant proportion, ``delta`` the difference of the two accuracies, ``z_a`` the
    two-sided ``alpha`` quantile and ``z_b`` the ``power`` quantile. Solved for ``delta`` at the
    observed ``n`` and ``psi = (b + c) / n`` (a quadratic in ``delta sqrt(n)``, larger root)::

        delta = sqrt(psi / n) * (z_a + z_b * sqrt(1 - (z_a^2 - z_b^2) / n)) / (1 + z_b^2 / n)

    The derivation is in docs/statistics.md. NaN when nothing can be said (no pairs, or no
    discordant pair, so the discordance is not estimated); ``inf`` when no difference the
    observed discordance allows (``|delta| <= psi``) reaches the power.
    """
    if min(b, c) < 0 or n < b + c:
        raise ValueError(f"expected 0 <= b, c and b + c <= n, got b={b}, c={c}, n={n}")
    if n == 0 or b + c == 0:
        return math.nan
    za, zb = _z_values(alpha, power)
    psi = (b + c) / n
    inner = 1.0 - (za * za - zb * zb) / n
    if inner < 0.0:
        return math.inf
    delta = math.sqrt(psi / n) * (za + zb * math.sqrt(inner)) / (1.0 + zb * zb / n)
    return delta if delta <= psi else math.inf


def paired_mean_mdd(diff: Sequence[float] | np.ndarray, *, alpha: float = MDD_ALPHA,
                    power: float = MDD_POWER) -> float:
    """Minimum detectable mean difference of a paired comparison of continuous scores, in the
    scores' unit: ``(z_a + z_b) * sd(diff) / sqrt(n)``, the normal-approximation power
    calculation for a paired mean difference (e.g. Chow, Shao & Wang, *Sample Size Calculations
    in Clinical Research*, paired one-sample design), with the sample standard deviation of the
    observed per-sample differences. NaN for fewer than two pairs or no variation."""
    arr = np.asarray(diff, dtype=float)
    if arr.size < 2:
        return math.nan
    sd = float(arr.std(ddof=1))
    if sd == 0.0:
        return math.nan
    za, zb = _z_values(alpha, power)
    return (za + zb) * sd / math.sqrt(arr.size)


def stratified_bootstrap_mean_ci(strata: Sequence[Sequence[float] | np.ndarray], n_resamples: int = 2000,
                                 alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the *mean of the strata means* (e.g. an average over
    datasets, each weighted equally whatever its size): every resample redraws each stratum
    from itself, with replacement, so the strata stay independent and keep their sizes. 0/1
    strata use the same exact binomial shortcut as :func:`bootstrap_mean_ci`."""
    arrays = [np.asarray(s, dtype=float) for s in strata]
    if not arrays or any(a.size == 0 for a in arrays):
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples, dtype=float)
    for arr in arrays:
        if _is_binary(arr):
            total += rng.binomial(arr.size, arr.mean(), size=n_resamples) / arr.size
        else:
            total += _chunked_resample_means(arr, n_resamples, rng)
    lo, hi = np.quantile(total / len(arrays), [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------------------------
# Intervals of paired differences, multiplicity adjustment, stratified (equal-weight) tests
# --------------------------------------------------------------------------------------------


def tango_score_statistic(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for ``H0: p_b - p_c = delta`` in a paired 2x2 table with ``n``
    pairs and ``b``, ``c`` discordant pairs (T. Tango, "Equivalence test and confidence interval
    for the difference in proportions for the paired-sample design", Stat Med 17:891-908, 1998):
    ``Z = (b - c - n delta) / sqrt(n (2 q + delta (1 - delta)))`` with ``q`` the restricted
    maximum-likelihood estimate of the ``c`` cell's probability under ``delta``. At ``delta = 0``
    it is the (uncorrected) McNemar statistic ``(b - c) / sqrt(b + c)``."""
    a_coef = 2.0 * n
    b_coef = -b - c + (2.0 * n - b + c) * delta
    c_coef = -c * delta * (1.0 - delta)
    q = (math.sqrt(max(0.0, b_coef * b_coef - 4.0 * a_coef * c_coef)) - b_coef) / (2.0 * a_coef)
    var = n * (2.0 * q + delta * (1.0 - delta))
    num = b - c - n * delta
    if var <= 0.0:
        return 0.0 if num == 0.0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def paired_proportion_ci(b: int, c: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Tango's score interval (95 % by default) for the difference of two paired proportions,
    ``(b - c) / n``: every ``delta`` the score test above does not reject, found by root search
    (the statistic decreases in ``delta``). It stays inside [-1, 1], is never degenerate at
    ``b = c = 0`` (unlike the Wald interval), and excludes 0 exactly when the uncorrected
    McNemar test rejects at the same level."""
    if min(b, c) < 0 or n < b + c or n <= 0:
        raise ValueError(f"expected 0 <= b, c and b + c <= n, n > 0; got b={b}, c={c}, n={n}")
    from scipy.optimize import brentq

    est = (b - c) / n
    lo_edge, hi_edge = -1.0 + 1e-12, 1.0 - 1e-12

    def root(target: float, left: float, right: float) -> float:
        return float(brentq(lambda d: tango_score_statistic(b, c, n, d) - target, left, right, xtol=1e-12))

    lower = -1.0 if tango_score_statistic(b, c, n, lo_edge) <= z else root(z, lo_edge, est)
    upper = 1.0 if tango_score_statistic(b, c, n, hi_edge) >= -z else root(-z, est, hi_edge)
    return (lower, upper)


#: Multiplicity adjustments a report may use; Holm (family-wise error) is the default.
ADJUSTMENTS: tuple[str, ...] = ("holm", "bh")


def adjust_p(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values of one family of tests: ``holm`` (Holm's step-down, controls the
    family-wise error rate under any dependence) or ``bh`` (Benjamini-Hochberg step-up, controls
    the false discovery rate under independence or positive dependence). NaN entries (no test)
    stay NaN and do not count towards the family's size."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown multiplicity adjustment {method!r}; choose one of {', '.join(ADJUSTMENTS)}")
    out = [math.nan] * len(p_values)
    live = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(live)
    if m == 0:
        return out
    ordered = sorted(live)
    if method == "holm":
        running = 0.0
        for k, (p, i) in enumerate(ordered):
            running = max(running, min(1.0, (m - k) * p))
            out[i] = running
    else:
        running = 1.0
        for k in range(m - 1, -1, -1):
            p, i = ordered[k]
            running = min(running, min(1.0, p * m / (k + 1)))
            out[i] = running
    return out


@dataclass(frozen=True)
class StratifiedDifference:
    """The equal-weight mean over strata (datasets) of per-stratum paired differences, with the
    z test and interval of that same quantity, and the heterogeneity of the strata.

    ``delta = mean_k d_k``; ``se = sqrt(sum_k v_k) / K`` with ``v_k`` the variance of the
    stratum's mean paired difference (strata independent). ``q``/``i2``: Cochran's Q and
    Higgins' I² of the ``d_k`` (inverse-variance weights; NaN when a stratum's variance is 0).
    ``up``/``down``: strata whose difference is positive / negative."""

    delta: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    k: int
    up: int
    down: int
    q: float
    i2: float


def stratum_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean paired difference of one stratum and its variance (``var(d) / n``, with ``n - 1``
    in the variance; 0 for fewer than two pairs)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return (math.nan, math.nan)
    var = float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0
    return (float(d.mean()), var)


def stratified_difference(diffs: Sequence[float], variances: Sequence[float], z: float = Z95) -> StratifiedDifference:
    """Test and interval of the equal-weight average of per-stratum differences ``diffs`` whose
    sampling variances are ``variances`` (normal approximation; see docs/statistics.md)."""
    from scipy.stats import norm

    d = np.asarray(diffs, dtype=float)
    v = np.asarray(variances, dtype=float)
    k = int(d.size)
    if k == 0 or np.any(np.isnan(d)) or np.any(np.isnan(v)):
        nan = math.nan
        return StratifiedDifference(nan, nan, nan, nan, nan, k, 0, 0, nan, nan)
    delta = float(d.mean())
    se = float(math.sqrt(float(v.sum()))) / k
    if se == 0.0:
        p = 1.0 if delta == 0.0 else 0.0
    else:
        p = float(2.0 * norm.sf(abs(delta) / se))
    q = i2 = math.nan
    if k > 1 and np.all(v > 0.0):
        w = 1.0 / v
        pooled = float((w * d).sum() / w.sum())
        q = float((w * (d - pooled) ** 2).sum())
        i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    return StratifiedDifference(delta, se, delta - z * se, delta + z * se, min(1.0, p), k,
                                int(np.sum(d > 0)), int(np.sum(d < 0)), q, i2)


def hierarchical_paired_bootstrap(repetitions: Sequence[tuple[np.ndarray, np.ndarray]], n_resamples: int = 2000,
                                  alpha: float = 0.05, seed: int = 0) -> PairedBootstrapResult:
    """Two-level paired bootstrap of the mean difference over *repetitions* of an experiment (view
    seeds × stream orders), each a pair of aligned per-sample score vectors ``(a, b)``: every
    resample draws the repetitions with replacement, then the samples of each drawn repetition
    with replacement, and averages the repetitions' mean differences. Its interval and p-value
    (re-centred, as :func:`paired_bootstrap`) carry both the sampling and the seed/order spread.
    With one repetition it is the ordinary paired bootstrap's distribution."""
    diffs = [np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for a, b in repetitions]
    if not diffs or any(d.size == 0 for d in diffs):
        return PairedBootstrapResult(0, math.nan, math.nan, math.nan, math.nan, math.nan, 1.0, n_resamples)
    r = len(diffs)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, r, size=(n_resamples, r))
    # Inner means: one independent resample of repetition k for every (resample, draw) cell.
    inner = np.stack([_chunked_resample_means(d, n_resamples * r, rng).reshape(n_resamples, r) for d in diffs])
    means = inner[picks, np.arange(n_resamples)[:, None], np.arange(r)[None, :]].mean(axis=1)
    observed = float(np.mean([d.mean() for d in diffs]))
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    if all(np.all(d == 0.0) for d in diffs):
        p = 1.0
    else:
        extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
        p = (1 + extreme) / (1 + n_resamples)
    mean_a = float(np.mean([np.mean(a) for a, _ in repetitions]))
    mean_b = float(np.mean([np.mean(b) for _, b in repetitions]))
    return PairedBootstrapResult(int(sum(d.size for d in diffs)), mean_a, mean_b, observed, float(lo), float(hi),
                                 min(1.0, p), n_resamples)
