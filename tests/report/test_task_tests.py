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


def _cider_runs(known: KnownStore) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Two captioning runs that store per-image CIDEr terms (fixed idf) and whose corpus CIDEr is
    their mean ×100; their CLIPScores (the per-sample score) move the other way."""
    from report_store import add_run

    rng = np.random.default_rng(11)
    ids = [f"img{i:02d}" for i in range(30)]
    base = rng.uniform(0.2, 1.2, 30)
    better = base + rng.normal(0.15, 0.25, 30)
    clip = rng.uniform(0.6, 0.8, 30)
    cap = {"task": "captioning", "kind": "captioning", "dataset": "flickr30k-captions"}
    runs = []
    for method, terms, cs in (("zero-shot", base, clip), ("rlcf", better, clip - 0.01)):
        runs.append(add_run(known.store, **cap, method=method, scores=dict(zip(ids, cs)),
                            extras={sid: {"cider": float(t)} for sid, t in zip(ids, terms)},
                            metrics={"cider": (100 * float(terms.mean()), None, None),
                                     "clipscore": (100 * float(cs.mean()), None, None)}))
    return runs[0], runs[1], base, better, clip


def test_captioning_cider_is_tested_by_a_paired_bootstrap_over_images_of_its_terms(known: KnownStore) -> None:
    zs, rlcf, base, better, _clip = _cider_runs(known)
    rows = {r.run_id: r for r in build_rows(known.store)}
    comp = rows[rlcf].vs_reference
    assert comp is not None and comp.against_run == zs and comp.metric == "cider" and comp.on_primary
    assert comp.test == "paired-bootstrap" and comp.n_shared == 30
    # Independent: numpy resampling of the images with the same seed and count, in CIDEr's unit (×100).
    diff = better - base
    means = diff[np.random.default_rng(0).integers(0, 30, size=(2000, 30))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert comp.delta == pytest.approx(100 * diff.mean()) and comp.tested_delta == pytest.approx(100 * diff.mean())
    assert (comp.ci_low, comp.ci_high) == pytest.approx((100 * lo, 100 * hi))
    p = (1 + np.sum(np.abs(means - diff.mean()) >= abs(diff.mean()) - 1e-12)) / 2001
    assert comp.p_value == pytest.approx(p)
    assert comp.mdd == pytest.approx(100 * 2.8016 * diff.std(ddof=1) / np.sqrt(30), rel=1e-3)  # the column's unit
    cider = rows[rlcf].metrics["cider"]  # its interval: the bootstrap of the terms' mean
    assert cider.ci_low is not None and cider.ci_low < cider.value < cider.ci_high
    # CLIPScore: its own comparison, in its own column's unit (×100), adjusted in its own family.
    clip = rows[rlcf].vs_reference_score
    assert clip is not None and clip.metric == "clipscore" and clip.on_primary and clip.against_run == zs
    assert clip.delta == pytest.approx(-1.0) and (clip.ci_low, clip.ci_high) == pytest.approx((-1.0, -1.0))
    assert clip.adjustment == "holm" and clip.family.endswith("clipscore") and clip.significant
    md = render(known.store, "markdown")
    assert "corpus metric, not tested" in md  # the old store's captioning rows (no terms) only
    assert "clipscore vs zero-shot: -1.00 [-1.00, -1.00] (p<0.001" in md
    item = next(r for r in json.loads(render(known.store, "json")) if r.get("run_id") == rlcf)
    assert item["vs_reference"]["tested_on"] == "primary metric"
    assert item["vs_reference_score"]["metric"] == "clipscore"
    import csv
    import io

    line = next(r for r in csv.DictReader(io.StringIO(render(known.store, "csv"))) if r["run_id"] == str(rlcf))
    assert line["vs_reference_score_metric"] == "clipscore" and float(line["vs_reference_score_delta"]) == pytest.approx(-1.0)
    assert float(line["vs_reference_ci_low"]) == pytest.approx(100 * lo) and line["tested_on"] == "primary metric"
    from rlcf_bench.report.compare import compare_runs, format_comparison

    pc = compare_runs(known.store, rlcf, zs)
    assert pc.test.ci_low == pytest.approx(100 * lo) and "cider per-sample terms" in format_comparison(pc)


def test_captioning_terms_that_do_not_average_to_the_corpus_cider_are_tested_labelled(known: KnownStore) -> None:
    """A narrowed run (its corpus CIDEr's idf is the subset's, the stored terms' the whole set's):
    the terms are still what is tested, but named, not passed off as the column's test."""
    from report_store import add_run

    zs, rlcf, base, better, _clip = _cider_runs(known)
    ids = [f"img{i:02d}" for i in range(30)]
    narrowed = add_run(known.store, task="captioning", kind="captioning", dataset="flickr30k-captions",
                       method="tpt", scores=dict.fromkeys(ids, 0.7), extras={sid: {"cider": float(t)} for sid, t in zip(ids, base)},
                       metrics={"cider": (100 * float(base.mean()) + 3.0, None, None), "clipscore": (70.0, None, None)})
    comp = {r.run_id: r for r in build_rows(known.store)}[narrowed].vs_reference
    assert comp is not None and not comp.on_primary and comp.score_label == "cider per-sample terms"
    assert comp.delta == pytest.approx(3.0) and comp.score_delta == pytest.approx(0.0, abs=1e-9)


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


def test_a_nonfinite_prediction_is_stored_wrong_with_no_confidence_and_counted() -> None:
    """A sample whose logits are NaN (a diverged step) is a wrong answer with confidence 0, never a
    NaN that reaches the ECE's bootstrap; the metrics count it (``nonfinite``)."""
    import torch

    from rlcf_bench import Batch, Predictions, RunProtocol
    from rlcf_bench_tasks.classification import ClassificationTask, expected_calibration_error

    task = ClassificationTask(None, RunProtocol())
    logits = torch.tensor([[2.0, 0.0, 0.0], [float("nan"), 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, float("inf"), 0.0]])
    batch = Batch(sample_ids=("a", "b", "c", "d"), indices=(0, 1, 2, 3), images=torch.zeros(4, 1),
                  targets=torch.tensor([0, 0, 2, 1]))
    records = task.score(batch, Predictions(logits=logits))
    assert [r.prediction for r in records] == [0, -1, 2, -1] and [r.score for r in records] == [1.0, 0.0, 1.0, 0.0]
    assert [r.extra["confidence"] for r in records][1::2] == [0.0, 0.0]
    assert [r.extra.get("nonfinite", False) for r in records] == [False, True, False, True]
    assert not any(r.extra["top5"] for r in records[1::2])
    got = task.aggregate(records)
    assert got["nonfinite"].value == 2 and got["top1"].value == pytest.approx(50.0)
    conf = [r.extra["confidence"] for r in records]
    assert got["ece"].value == pytest.approx(100 * expected_calibration_error(conf, [1.0, 0.0, 1.0, 0.0]))
    assert np.isfinite([got["ece"].ci_low, got["ece"].ci_high]).all()
    records[1].extra["confidence"] = float("nan")  # a store written before the rule: the same rule applies
    assert task.aggregate(records)["ece"].value == pytest.approx(got["ece"].value)
