"""Known answers for the statistics the report relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlcf_bench.report.scores import paired_test
from rlcf_bench.stats import bootstrap_ci, bootstrap_mean_ci, mcnemar_exact, paired_bootstrap, wilson_interval
from rlcf_bench.types import SampleScore, TaskMetrics

#: A task whose 0/1 scores are compared by McNemar, and one that declares the paired bootstrap.
MCNEMAR = TaskMetrics(score=SampleScore(percent=True, paired_test="mcnemar-exact"))
BOOTSTRAP = TaskMetrics(score=SampleScore(percent=True, paired_test="paired-bootstrap"))


def test_mcnemar_one_sided_discordance_is_significant() -> None:
    r = mcnemar_exact(10, 0)
    assert r.p_exact == pytest.approx(2 * 0.5 ** 10)  # 0.00195
    assert r.p_mid == pytest.approx(0.5 ** 10)  # minus P(X=0)
    assert r.p_exact < 0.05 and r.n_discordant == 10


@pytest.mark.parametrize("k", [0, 1, 5, 40])
def test_mcnemar_balanced_discordance_is_not_significant(k: int) -> None:
    r = mcnemar_exact(k, k)
    assert r.p_exact == 1.0
    assert r.p_mid == pytest.approx(1.0) or k == 0 and r.p_mid == 1.0


def test_mcnemar_matches_hand_computed_binomial_tail() -> None:
    # b=8, c=2: P(X<=2 | n=10) = (1 + 10 + 45) / 1024
    r = mcnemar_exact(8, 2)
    assert r.p_exact == pytest.approx(2 * 56 / 1024)
    assert r.p_mid == pytest.approx(2 * 56 / 1024 - 45 / 1024)
    assert mcnemar_exact(2, 8).p_exact == r.p_exact  # symmetric


def test_mcnemar_large_counts_stay_finite() -> None:
    r = mcnemar_exact(30_000, 29_000)
    assert 0 < r.p_exact < 1e-3 and math.isfinite(r.p_mid)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_bootstrap_detects_a_constant_shift_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=200)
    shifted = paired_bootstrap(base + 0.2, base)
    assert shifted.mean_diff == pytest.approx(0.2)
    assert shifted.p_value < 0.05 and shifted.ci_low > 0
    same = paired_bootstrap(base, base)
    assert same.p_value == 1.0 and same.mean_diff == 0.0
    noise = paired_bootstrap(base + rng.normal(scale=0.01, size=200) - 0.0, base)
    assert noise.ci_low < 0.01
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_paired_bootstrap_is_deterministic() -> None:
    a, b = np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)


def test_bootstrap_mean_ci_binary_fast_path_agrees_with_resampling() -> None:
    values = [1.0] * 300 + [0.0] * 100
    fast = bootstrap_mean_ci(values, n_resamples=4000)
    slow = bootstrap_ci(values, n_resamples=4000)
    wil = wilson_interval(300, 400)
    for lo_hi in (fast, slow):
        assert lo_hi[0] == pytest.approx(wil[0], abs=0.01) and lo_hi[1] == pytest.approx(wil[1], abs=0.01)


def test_bootstrap_is_memory_bounded_for_large_runs() -> None:
    values = np.random.default_rng(0).random(50_000)  # 2000 x 50k would be 800 MB unchunked
    lo, hi = bootstrap_mean_ci(values, n_resamples=200)
    assert lo < values.mean() < hi
    lo2, hi2 = bootstrap_ci(values, n_resamples=200)
    assert lo2 < values.mean() < hi2


def test_paired_test_dispatch_and_sample_matching() -> None:
    a = {f"s{i}": 1.0 for i in range(10)} | {"only_a": 1.0}
    b = {f"s{i}": 0.0 for i in range(10)} | {"only_b": 0.0}
    t = paired_test(a, b, run_a=1, run_b=2, meta=MCNEMAR)
    assert (t.test, t.n_shared, t.only_a, t.only_b) == ("mcnemar-exact", 10, 1, 1)
    assert t.mcnemar is not None and (t.mcnemar.b, t.mcnemar.c) == (10, 0)
    assert t.diff == pytest.approx(100.0) and t.significant
    r = paired_test(a, b, run_a=1, run_b=2, meta=BOOTSTRAP)
    assert r.test == "paired-bootstrap" and r.significant and r.diff == pytest.approx(100.0)
    none = paired_test({"x": 1.0}, {"y": 1.0}, run_a=1, run_b=2, meta=MCNEMAR)
    assert none.test == "none" and none.n_shared == 0 and not none.significant
