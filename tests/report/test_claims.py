"""Claims a reviewer accepts: intervals of paired differences, multiplicity adjustment and the
equal-weight average's test, checked against statsmodels and scipy (skipped without statsmodels,
a ``dev`` extra), on constructed stores; and the constructed unequal-size case of docs/statistics.md
(ImageNet-A/V2/R/Sketch sizes, equal-weight Δ +7.50 while the sample-weighted difference is
negative) where the Δ and its test must agree in sign.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from report_store import KNOWN_COMPARISONS, KnownStore, build_report, render
from scipy.stats import norm

from rlcf_bench import Comparisons, DatasetAverage, MethodFamily
from rlcf_bench.report.claims import claim_counts
from rlcf_bench.stats import (
    adjust_p,
    paired_bootstrap,
    paired_proportion_ci,
    stratified_difference,
    tango_score_statistic,
)
from rlcf_bench.store import Metric, Run, SampleResult, Store

Z = norm.ppf(0.975)
TABLES = [(10, 0, 40), (10, 10, 40), (4, 0, 40), (9, 3, 60), (0, 0, 30), (1, 0, 2), (30, 12, 500), (7, 2, 9),
          (0, 5, 5), (120, 95, 5000), (3, 1, 1000)]


def test_tango_interval_inverts_the_score_test_and_matches_mcnemar_at_zero() -> None:
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    for b, c, n in TABLES:
        lo, hi = paired_proportion_ci(b, c, n)
        assert -1.0 <= lo <= (b - c) / n <= hi <= 1.0 and lo < hi
        for end, target in ((lo, Z), (hi, -Z)):
            if -1.0 < end < 1.0:
                assert tango_score_statistic(b, c, n, end) == pytest.approx(target, abs=1e-6)
        if b + c == 0:
            continue
        table = [[n - b - c, b], [c, 0]]
        sm = contingency.mcnemar(table, exact=False, correction=False)
        # At delta = 0 the score statistic is the uncorrected McNemar statistic (statsmodels' chi-square).
        assert tango_score_statistic(b, c, n, 0.0) ** 2 == pytest.approx(sm.statistic, rel=1e-9)
        assert (lo > 0 or hi < 0) == (sm.pvalue < 0.05)


def test_tango_interval_is_not_degenerate_without_discordant_pairs() -> None:
    lo, hi = paired_proportion_ci(0, 0, 30)
    assert lo < 0 < hi and hi == pytest.approx(-lo)
    with pytest.raises(ValueError):
        paired_proportion_ci(3, 4, 5)


def test_tango_interval_covers_the_true_difference() -> None:
    """95% coverage by simulation (a moderate table: the score interval is close to nominal)."""
    rng = np.random.default_rng(7)
    probs = np.array([0.55, 0.15, 0.08, 0.22])  # both right, only A, only B, neither
    true = probs[1] - probs[2]
    n, hits, sims = 80, 0, 600
    for counts in rng.multinomial(n, probs, size=sims):
        lo, hi = paired_proportion_ci(int(counts[1]), int(counts[2]), n)
        hits += lo <= true <= hi
    assert 0.92 <= hits / sims <= 0.98


def test_holm_and_bh_match_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(3)
    for size in (1, 2, 5, 17, 60):
        p = np.concatenate([rng.uniform(0, 0.01, size // 3), rng.uniform(0, 1, size - size // 3)])
        for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
            expected = multitest.multipletests(p, method=theirs)[1]
            assert adjust_p(list(p), ours) == pytest.approx(list(expected), abs=1e-12)
    got = adjust_p([0.01, math.nan, 0.04], "holm")  # a missing test is not part of the family
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1]) and got[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="unknown multiplicity adjustment"):
        adjust_p([0.1], "bonferonni")


def test_heterogeneity_matches_statsmodels_meta_analysis() -> None:
    meta = pytest.importorskip("statsmodels.stats.meta_analysis")
    d = np.array([-8.8, 0.8, 8.4, -13.2, 1.2])
    v = np.array([4.1, 3.2, 5.0, 2.7, 3.9])
    got = stratified_difference(d, v)
    res = meta.combine_effects(d, v, method_re="chi2")
    assert got.q == pytest.approx(res.q, rel=1e-9) and got.i2 == pytest.approx(res.i2, rel=1e-9)
    assert (got.up, got.down, got.k) == (3, 2, 5)
    assert got.delta == pytest.approx(d.mean()) and got.se == pytest.approx(math.sqrt(v.sum()) / 5)


def test_paired_bootstrap_interval_agrees_with_scipy() -> None:
    from scipy.stats import bootstrap

    rng = np.random.default_rng(11)
    a = rng.normal(0.62, 0.05, 300)
    b = a - rng.normal(0.01, 0.03, 300)
    ours = paired_bootstrap(a, b, n_resamples=4000)
    theirs = bootstrap((a - b,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(0))
    width = theirs.confidence_interval.high - theirs.confidence_interval.low
    assert ours.ci_low == pytest.approx(theirs.confidence_interval.low, abs=0.05 * width)
    assert ours.ci_high == pytest.approx(theirs.confidence_interval.high, abs=0.05 * width)


def test_adjusted_p_of_a_table_matches_statsmodels(known: KnownStore) -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    report = build_report(known.store)
    family = [r.vs_reference for r in report.rows if r.task == "classification" and r.vs_reference is not None
              and r.ranked_with_main]
    assert len(family) == 3 and len({c.family for c in family}) == 1  # tpt, rlcf, EVIL against zero-shot
    expected = multitest.multipletests([c.p_value for c in family], method="holm")[1]
    assert [c.p_adjusted for c in family] == pytest.approx(list(expected), abs=1e-12)
    assert all(c.significant == (c.p_adjusted < 0.05) and c.family_size == 3 for c in family)
    bh = build_report(known.store, adjustment="bh")
    got = [r.vs_reference.p_adjusted for r in bh.rows if r.task == "classification"  # type: ignore[union-attr]
           and r.vs_reference is not None and r.ranked_with_main]
    assert got == pytest.approx(list(multitest.multipletests([c.p_value for c in family], method="fdr_bh")[1]))


def test_json_and_csv_carry_raw_and_adjusted_p_and_intervals(known: KnownStore) -> None:
    rows = json.loads(render(known.store, "json"))
    tpt = next(r for r in rows if r.get("run_id") == known.ids["tpt"])
    comp = tpt["vs_reference"]
    assert comp["adjustment"] == "holm" and comp["p_adjusted"] == pytest.approx(3 * comp["p_value"])
    lo, hi = paired_proportion_ci(10, 0, 40)
    assert (comp["diff_ci_low"], comp["diff_ci_high"]) == pytest.approx((100 * lo, 100 * hi))
    # inf and n/a stay apart: one discordant pair among 40 has no detectable difference (inf).
    one = paired_proportion_ci(1, 0, 40)
    assert one[0] < 0 < one[1]
    import csv
    import io

    by_run = {r["run_id"]: r for r in csv.DictReader(io.StringIO(render(known.store, "csv")))}
    row = by_run[str(known.ids["tpt"])]
    assert float(row["vs_reference_p_adjusted"]) == pytest.approx(comp["p_adjusted"])
    assert row["vs_baseline_method"] == "" and by_run[str(known.ids["rlcf"])]["vs_baseline_method"] == "tpt"


def test_mdd_json_keeps_infinity_apart_from_not_available(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mdd.sqlite'}")
    _cls_run(store, "d", "zero-shot", [1.0] * 40)
    _cls_run(store, "d", "one-off", [0.0] + [1.0] * 39)  # one discordant pair: MDD infinite
    _cls_run(store, "d", "same", [1.0] * 40)  # no discordant pair: MDD not estimable
    rows = {r["method"]: r for r in json.loads(render(store, "json"))}
    assert rows["one-off"]["vs_reference"]["min_detectable_diff"] == "inf"
    assert rows["same"]["vs_reference"]["min_detectable_diff"] is None


def _cls_run(store: Store, dataset: str, method: str, scores: list[float], prefix: str = "s") -> int:
    """A classification run with 0/1 scores, stored in bulk (the unequal-size case has 98,389 samples)."""
    from report_store import record_tasks

    record_tasks(store)
    n = len(scores)
    with store.session() as s, s.begin():
        run = Run(key=f"{dataset}-{method}", attempt=1, task="classification", task_version="1",
                  task_kind="classification", dataset=dataset, dataset_version="1", dataset_params={}, method=method,
                  method_version="1", method_config={}, config_hash="c" * 16, model="m", model_version="1",
                  protocol={"seed": 0}, protocol_hash="p" * 16, seed=0, device="cpu", device_name="cpu",
                  bench_version="0.1.0", provenance={}, plugins=[], official=True, status="finished", n_total=n,
                  n_done=n)
        s.add(run)
        s.flush()
        rid = run.id
        s.execute(SampleResult.__table__.insert(), [
            {"run_id": rid, "sample_id": f"{prefix}{i:06d}", "idx": i, "score": v, "extra": {}, "batch_size": 1,
             "warmup": False} for i, v in enumerate(scores)])
        s.add(Metric(run_id=rid, name="top1", value=100.0 * sum(scores) / n, ci_low=None, ci_high=None, n=n))
    return rid


#: ImageNet-A / V2 / R / Sketch sizes, and per domain (samples only the method gets right, only zero-shot
#: gets right): +25, +20, 0 and -15 points, so the equal-weight difference is +7.50 and the
#: sample-weighted one is -3.82. The default suite runs the same proportions at a tenth of the size.
UNEQUAL = {"imagenet-a": (7_500, 1_875, 0), "imagenet-v2": (10_000, 2_000, 0), "imagenet-r": (30_000, 600, 600),
           "imagenet-sketch": (50_889, 0, 7_633)}
TENTH = {"imagenet-a": (750, 188, 0), "imagenet-v2": (1_000, 200, 0), "imagenet-r": (3_000, 60, 60),
         "imagenet-sketch": (5_089, 0, 763)}


def _unequal_case(tmp_path: Path, domains: dict[str, tuple[int, int, int]]) -> None:
    store = Store(f"sqlite:///{tmp_path / 'unequal.sqlite'}")
    for dataset, (n, only_method, only_zero_shot) in domains.items():
        base = [1.0] * only_zero_shot + [0.0] * only_method + [1.0 if i % 2 else 0.0 for i in
                                                                  range(n - only_zero_shot - only_method)]
        method = [0.0] * only_zero_shot + [1.0] * only_method + base[only_zero_shot + only_method:]
        _cls_run(store, dataset, "zero-shot", base)
        _cls_run(store, dataset, "method", method)
    sizes = np.array([v[0] for v in domains.values()], dtype=float)
    per_domain = np.array([100.0 * (v[1] - v[2]) / v[0] for v in domains.values()])
    delta = float(per_domain.mean())
    assert delta == pytest.approx(7.50, abs=0.02)  # equal weight: the method is better ...
    assert float((sizes * per_domain).sum() / sizes.sum()) == pytest.approx(-3.82, abs=0.02)  # ... by sample: worse
    report = build_report(store, averages=(DatasetAverage("OOD avg", tuple(domains)),),
                          comparisons=Comparisons(reference="zero-shot"))
    (avg,) = [a for a in report.averages if a.method == "method"]
    comp = avg.vs_reference
    assert comp is not None
    assert comp.delta == pytest.approx(delta, abs=1e-9) and comp.tested_delta == pytest.approx(delta, abs=1e-9)
    assert comp.significant and comp.ci_low > 0  # the test is of the printed, equal-weight difference
    assert (comp.up, comp.down) == (2, 1) and comp.i2 > 0.9  # and says how unlike the domains are
    from rlcf_bench.report import render_report

    assert f"{delta:+.2f} [{comp.ci_low:+.2f}, {comp.ci_high:+.2f}] (p<0.001, Holm p<0.001 sig; 2 up, 1 down of 4, I² " \
        in render_report(report, "markdown")


def test_unequal_domain_sizes_give_no_sign_mismatch(tmp_path: Path) -> None:
    _unequal_case(tmp_path, TENTH)


@pytest.mark.slow
def test_unequal_domain_sizes_at_the_papers_sizes(tmp_path: Path) -> None:
    _unequal_case(tmp_path, UNEQUAL)


def test_claim_counts_before_and_after_adjustment(known: KnownStore) -> None:
    counts = claim_counts(build_report(known.store))
    assert counts.adjustment == "holm" and counts.comparisons > 0
    assert counts.significant_adjusted <= counts.significant_raw <= counts.comparisons
    assert counts.text() in render(known.store, "markdown")


def test_suites_declare_families_and_pairs_are_added() -> None:
    from rlcf_bench_micro import suite as micro

    declared = micro.COMPARISONS
    assert declared.reference == "zero-shot"
    assert declared.baseline_of("rlcf-image") == "tpt-image" and declared.baseline_of("rlcf-prompt") == "tpt-prompt"
    assert declared.baseline_of("zero-shot") is None
    merged = KNOWN_COMPARISONS.merged(Comparisons(pairs=(("rlcf", "evil"),)))
    assert merged.pairs == (("rlcf", "evil"),) and merged.reference == "zero-shot"
    with pytest.raises(ValueError, match="baseline"):
        MethodFamily("x", "a", ("a", "b"))


def test_report_compare_adds_a_pair(known: KnownStore) -> None:
    from rlcf_bench.report.render import ClaimOptions

    claims = ClaimOptions(pairs=(("rlcf", "tpt"),), comparisons=Comparisons(reference="zero-shot"))
    rows = json.loads(render(known.store, "json", claims=claims))
    rlcf = next(r for r in rows if r.get("run_id") == known.ids["rlcf"])
    assert [p["against_method"] for p in rlcf["vs_pairs"]] == ["tpt"] and rlcf["vs_baseline"] is None


def test_below_is_marked_only_when_significant_after_adjustment(known: KnownStore) -> None:
    """Two methods below their reward model's reference run at raw p = 0.03 and 0.04: each is
    significant alone, neither after Holm over the family (0.06, 0.06), so no BELOW mark."""
    from dataclasses import replace

    from rlcf_bench.report.claims import adjust_report

    report = build_report(known.store, task="classification")
    rows = {r.run_id: r for r in report.rows}
    rlcf, tpt = rows[known.ids["rlcf"]], rows[known.ids["tpt"]]
    ref = rlcf.reward_model_zero_shot
    assert ref is not None and ref.comparison is not None and ref.below  # the known store's case: b=0, c=10
    raw = replace(ref.comparison, p_value=0.03, p_adjusted=math.nan, significant=True)
    rlcf.reward_model_zero_shot = replace(ref, comparison=raw)
    tpt.reward_model_zero_shot = replace(ref, comparison=replace(raw, p_value=0.04))
    adjust_report(report, "holm")
    for row in (rlcf, tpt):
        got = row.reward_model_zero_shot
        assert got is not None and got.comparison is not None
        assert got.comparison.p_adjusted == pytest.approx(0.06) and not got.comparison.significant
        assert got.delta < 0 and not got.below
