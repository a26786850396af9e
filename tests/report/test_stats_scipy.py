"""The scipy-backed Wilson interval and exact McNemar test give the numbers of the former
hand-written formulas (kept here, independently, as the reference)."""

from __future__ import annotations

import math

import pytest

from rlcf_bench.stats import Z95, mcnemar_exact, wilson_interval


def _wilson_closed_form(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _mcnemar_by_sum(b: int, c: int) -> tuple[float, float]:
    n, k = b + c, min(b, c)
    pmf = [math.comb(n, i) / 2**n for i in range(k + 1)]
    return min(1.0, 2 * sum(pmf)), max(0.0, min(1.0, 2 * sum(pmf) - pmf[-1]))


@pytest.mark.parametrize("n", [1, 2, 7, 40, 200, 1000, 5000])
def test_wilson_matches_the_closed_form(n: int) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        got, want = wilson_interval(k, n), _wilson_closed_form(k, n)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert [f"{100 * v:.2f}" for v in got] == [f"{100 * v:.2f}" for v in want]  # as reports print them
    assert wilson_interval(3, 10, z=1.0) == pytest.approx(_wilson_closed_form(3, 10, 1.0), rel=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_mcnemar_matches_the_exact_sum() -> None:
    for b in range(0, 41, 3):
        for c in range(0, 41, 5):
            if b + c == 0:
                continue
            r = mcnemar_exact(b, c)
            exact, mid = _mcnemar_by_sum(b, c)
            assert r.p_exact == pytest.approx(exact, rel=1e-12) and r.p_mid == pytest.approx(mid, rel=1e-12, abs=1e-15)
            assert (r.p_exact < 0.05) == (exact < 0.05)
    assert mcnemar_exact(10, 0).p_exact == pytest.approx(2 / 2**10)
    assert mcnemar_exact(5, 5).p_exact == 1.0 and mcnemar_exact(5, 5).p_mid == 1.0
