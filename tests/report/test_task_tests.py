"""Each task's paired test on its primary metric's per-sample outcome: retrieval's 0/1 hits by exact
McNemar (as classification's), captioning's corpus metric never given a test of another quantity;
the classification ECE interval's vectorised bootstrap equals the per-resample loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_store import KnownStore, build_rows, render
from scipy.stats import binomtest

from rlcf_bench.stats import paired_proportion_ci


def test_retrieval_hits_are_compared_by_exact_mcnemar(known: KnownStore) -> None:
    rows = {r.run_id: r for r in build_rows(known.store)}
    comp = rows[known.ids["ret_rlcf"]].vs_reference
    assert comp is not None and comp.test == "mcnemar-exact"
    # rlcf hits q00-q19, zero-shot q00-q09 among 30 queries: b=10, c=0.
    assert comp.p_value == pytest.approx(binomtest(0, 10).pvalue)
    lo, hi = paired_proportion_ci(10, 0, 30)
    assert (comp.ci_low, comp.ci_high) == pytest.approx((100 * lo, 100 * hi))


def test_captioning_corpus_metric_is_not_given_the_per_sample_scores_test(known: KnownStore) -> None:
    rows = {r.run_id: r for r in build_rows(known.store)}
    comp = rows[known.ids["cap_rlcf"]].vs_reference
    assert comp is not None and comp.metric == "cider" and not comp.on_primary
    assert comp.delta == pytest.approx(7.0)  # CIDEr 57 - 50: shown, but not tested
    assert comp.score_delta == pytest.approx(0.05)  # the tested CLIPScore difference, in its own unit
    # Every image gains exactly 0.05: the interval (in CLIPScore's unit, not CIDEr's) is that point.
    assert comp.ci_low == pytest.approx(0.05) and comp.ci_high == pytest.approx(0.05)
    md = render(known.store, "markdown")
    assert "+7.00 (corpus metric, not tested); CLIPScore +0.05 [+0.05, +0.05] (p<0.001" in md
    item = next(r for r in json.loads(render(known.store, "json")) if r.get("run_id") == known.ids["cap_rlcf"])
    assert item["vs_reference"]["tested_delta"] == pytest.approx(0.05)


def test_ece_interval_bootstrap_matches_the_loop() -> None:
    from rlcf_bench_tasks.classification import (
        ECE_RESAMPLES,
        ece_bootstrap_ci,
        expected_calibration_error,
        resampled_eces,
    )

    assert ECE_RESAMPLES >= 2000
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.05, 1.0, 200)
    hit = (rng.uniform(size=200) < conf).astype(float)
    idx = rng.integers(0, 200, size=(25, 200))
    loop = [expected_calibration_error(conf[i], hit[i]) for i in idx]
    assert resampled_eces(conf, hit, idx) == pytest.approx(loop, abs=1e-12)
    lo, hi = ece_bootstrap_ci(conf, hit)
    assert lo < expected_calibration_error(conf, hit) < hi
    lo2, hi2 = ece_bootstrap_ci(conf, hit, max_cells=1000)  # five resamples per chunk: another draw, same law
    assert lo2 < expected_calibration_error(conf, hit) < hi2 and hi2 - lo2 == pytest.approx(hi - lo, rel=0.25)


def test_balanced_accuracy_and_the_collapse_share() -> None:
    from rlcf_bench_tasks.classification import prediction_spread

    # 8 samples of class 0, 2 of class 1; always predicting 0: top-1 80 %, balanced 50 %, share 100 %.
    got = prediction_spread([0] * 10, [0] * 8 + [1] * 2)
    assert got["balanced_top1"].value == pytest.approx(50.0) and got["top_class_share"].value == pytest.approx(100.0)
    got = prediction_spread([0, 1, 1, 0], [0, 1, 0, 1])
    assert got["balanced_top1"].value == pytest.approx(50.0) and got["top_class_share"].value == pytest.approx(50.0)


def test_a_collapsed_run_is_flagged(known: KnownStore) -> None:
    from report_store import add_run, correct_on

    sc = correct_on(40, set(range(20)))
    add_run(known.store, task="classification", kind="classification", dataset="imagenet-a", method="collapsed",
            scores=sc, metrics={"top1": (50.0, 35.0, 65.0), "top_class_share": (97.5, 97.5, 97.5)})
    md = render(known.store, "markdown")
    assert "prediction collapse: 98% of the samples get one class" in md
    assert md.count("prediction collapse") == 1  # only that run
