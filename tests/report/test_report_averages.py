"""Average rows over a suite-declared dataset group: the stratified test of the equal-weight
difference with a known answer, the minimum detectable difference against Connor's formula, no row
where a domain is missing, every format, escaping.

Constructed store (three domains d1..d3, the same 20 sample ids s00..s19 in each, so the test must
pair by (dataset, sample id)): zero-shot is right on s00-s09 everywhere; tpt-prompt and
rlcf-prompt differ from it on chosen samples, giving known per-domain differences.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from report_store import EVIL, add_run, build_report, cls_metrics, connor_mdd, correct_on, render, render_paper
from scipy.stats import norm

from rlcf_bench import Comparisons, DatasetAverage, MethodFamily, SuiteSpec, hookimpl
from rlcf_bench.plugins import PluginHost
from rlcf_bench.report.averages import declared_averages
from rlcf_bench.report.markdown import md_unescape
from rlcf_bench.report.run_summary import render_run_summary
from rlcf_bench.stats import mcnemar_mdd, paired_mean_mdd, stratified_bootstrap_mean_ci
from rlcf_bench.store import Store

DOMAINS = ("d1", "d2", "d3")
N = 20
ZS_HITS = set(range(10))
#: Per domain: (samples rlcf-prompt gets right that zero-shot does not, samples it gets wrong that zero-shot gets right)
RLCF_FLIPS = {"d1": ({10, 11, 12}, {0}), "d2": ({10, 11}, {0, 1}), "d3": ({10, 11, 12, 13}, set())}
TPT_HITS = set(range(11))  # one more than zero-shot on every domain
NAME = "OOD avg"


class _Suite:
    def __init__(self, name: str = NAME, datasets: tuple[str, ...] = DOMAINS) -> None:
        self.average = DatasetAverage(name, datasets)

    @hookimpl
    def rlcfb_register_suites(self) -> list[SuiteSpec]:
        return [SuiteSpec("constructed", "three constructed domains", lambda methods: [], averages=(self.average,),
                          comparisons=COMPARISONS)]


def _cls(store: Store, dataset: str, method: str, hits: set[int], **kw: object) -> int:
    sc = correct_on(N, hits)
    return add_run(store, task="classification", kind="classification", dataset=dataset, method=method, scores=sc,
                   metrics=cls_metrics(sc), **kw)  # type: ignore[arg-type]


def _rlcf_hits(domain: str) -> set[int]:
    gain, loss = RLCF_FLIPS[domain]
    return (ZS_HITS | gain) - loss


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'avg.sqlite'}")
    for d in DOMAINS:
        _cls(s, d, "zero-shot", ZS_HITS)
        _cls(s, d, "tpt-prompt", TPT_HITS)
        _cls(s, d, "rlcf-prompt", _rlcf_hits(d), reward_model="ViT-L-14@openai")
    _cls(s, "d1", "lonely", ZS_HITS)  # one domain only: no average row
    _cls(s, "d2", "lonely", ZS_HITS)
    return s


COMPARISONS = Comparisons(reference="zero-shot", families=(MethodFamily("prompt", "tpt-prompt", ("rlcf-prompt",)),))


def _report(store: Store, datasets: tuple[str, ...] = DOMAINS, name: str = NAME):
    return build_report(store, averages=(DatasetAverage(name, datasets),), comparisons=COMPARISONS)


def _per_domain(hits_a: dict[str, set[int]], hits_b: dict[str, set[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per domain, the mean paired difference (points) and its variance, written out from the sets."""
    d, v = [], []
    for dom in DOMAINS:
        diff = np.array([(i in hits_a[dom]) - (i in hits_b[dom]) for i in range(N)], dtype=float) * 100.0
        d.append(diff.mean())
        v.append(diff.var(ddof=1) / N)
    return np.array(d), np.array(v)


def test_average_comparison_tests_the_same_equal_weight_difference(store: Store) -> None:
    report = _report(store)
    rows = {a.method: a for a in report.averages}
    assert set(rows) == {"zero-shot", "tpt-prompt", "rlcf-prompt"}
    rlcf = rows["rlcf-prompt"]
    comp = rlcf.vs_reference
    assert comp is not None and comp.test == "stratified-z"
    assert comp.n_shared == N * len(DOMAINS) and comp.only_row == comp.only_other == 0
    d, v = _per_domain({k: _rlcf_hits(k) for k in DOMAINS}, {k: ZS_HITS for k in DOMAINS})
    # The average is the mean of the domains' stored top-1; the difference is of the averages, and the
    # test is of that same equal-weight difference: mean of the per-domain differences, se sqrt(sum v)/K.
    per_domain = [100.0 * len(_rlcf_hits(dom)) / N for dom in DOMAINS]
    assert rlcf.value == pytest.approx(sum(per_domain) / 3)
    assert comp.delta == pytest.approx(rlcf.value - 100.0 * len(ZS_HITS) / N)
    assert comp.tested_delta == pytest.approx(comp.delta) == pytest.approx(d.mean())
    se = math.sqrt(v.sum()) / 3
    assert comp.p_value == pytest.approx(2 * norm.sf(abs(d.mean()) / se), rel=1e-9)
    assert (comp.ci_low, comp.ci_high) == pytest.approx((d.mean() - norm.ppf(0.975) * se,
                                                         d.mean() + norm.ppf(0.975) * se), rel=1e-9)
    assert comp.mdd == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) * se, rel=1e-9)
    assert comp.per_dataset == pytest.approx(tuple(d)) and (comp.up, comp.down) == (2, 0)  # d2 is 0
    # Heterogeneity: Cochran's Q with inverse-variance weights, I² = (Q - (K - 1)) / Q floored at 0.
    w = 1.0 / v
    q = float((w * (d - (w * d).sum() / w.sum()) ** 2).sum())
    assert comp.q == pytest.approx(q, rel=1e-9) and comp.i2 == pytest.approx(max(0.0, (q - 2) / q), abs=1e-12)
    # Against the family baseline (TPT on the prompt, right on s00-s10).
    d_t, v_t = _per_domain({k: _rlcf_hits(k) for k in DOMAINS}, {k: TPT_HITS for k in DOMAINS})
    assert rlcf.vs_baseline is not None and rlcf.vs_baseline.against_method == "tpt-prompt"
    assert rlcf.vs_baseline.tested_delta == pytest.approx(d_t.mean())
    assert rlcf.vs_baseline.p_value == pytest.approx(2 * norm.sf(abs(d_t.mean()) / (math.sqrt(v_t.sum()) / 3)))
    assert rows["zero-shot"].vs_reference is None and rows["tpt-prompt"].vs_baseline is None
    assert rows["tpt-prompt"].vs_reference is not None and rows["tpt-prompt"].vs_reference.up == 3


def test_average_interval_is_a_stratified_bootstrap_around_the_mean(store: Store) -> None:
    rlcf = next(a for a in _report(store).averages if a.method == "rlcf-prompt")
    assert rlcf.ci_low is not None and rlcf.ci_high is not None
    assert rlcf.ci_low < rlcf.value < rlcf.ci_high
    # Close to the normal approximation of a mean of independent proportions.
    p = np.array([len(_rlcf_hits(d)) / N for d in DOMAINS])
    se = 100.0 * math.sqrt(float(np.sum(p * (1 - p) / N))) / 3
    assert rlcf.ci_high - rlcf.ci_low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_no_average_row_when_a_domain_is_missing_or_not_comparable(store: Store) -> None:
    _cls(store, "d1", "other-protocol", ZS_HITS)
    _cls(store, "d2", "other-protocol", ZS_HITS)
    _cls(store, "d3", "other-protocol", ZS_HITS, protocol_hash="p9" + "z" * 14)
    report = _report(store)
    methods = {a.method for a in report.averages}
    assert "lonely" not in methods and "other-protocol" not in methods
    lonely = [n for n in report.average_notes if "lonely" in n]
    assert len(lonely) == 1 and "no comparable run on d3" in lonely[0]
    assert sum("other-protocol" in n for n in report.average_notes) == 2  # one per protocol, each incomplete
    # A group with a dataset no run has: no rows at all, every method noted.
    report = _report(store, DOMAINS + ("d4",))
    assert report.averages == [] and all("d4" in n for n in report.average_notes)
    # Without declared groups, nothing.
    assert build_report(store).averages == []


def test_minimum_detectable_difference_closed_form() -> None:
    for b, c, n in ((10, 0, 40), (9, 3, 60), (30, 25, 1000), (40, 2, 500)):
        assert 100.0 * mcnemar_mdd(b, c, n) == pytest.approx(connor_mdd(b, c, n), rel=1e-9)
    # Large n: (z_a + z_b) sqrt(psi / n), the textbook approximation.
    za, zb = norm.ppf(0.975), norm.ppf(0.8)
    assert mcnemar_mdd(5000, 5000, 10**7) == pytest.approx((za + zb) * math.sqrt(1e-3 / 1e7), rel=1e-4)
    assert math.isnan(mcnemar_mdd(0, 0, 50)) and math.isnan(mcnemar_mdd(0, 0, 0))
    assert math.isinf(mcnemar_mdd(1, 0, 2))  # too few pairs for any difference to reach 80% power
    assert math.isinf(mcnemar_mdd(1, 0, 500))  # one discordant pair: no |delta| <= psi reaches it
    with pytest.raises(ValueError, match="b \\+ c <= n"):
        mcnemar_mdd(5, 5, 3)
    diff = np.array([0.1, -0.05, 0.2, 0.0, 0.07, 0.12])
    assert paired_mean_mdd(diff) == pytest.approx((za + zb) * diff.std(ddof=1) / math.sqrt(diff.size))
    assert math.isnan(paired_mean_mdd([0.3])) and math.isnan(paired_mean_mdd([0.1, 0.1]))


def test_stratified_bootstrap_weights_strata_equally() -> None:
    lo, hi = stratified_bootstrap_mean_ci([np.ones(5), np.zeros(500)])
    assert lo == hi == 0.5  # constant strata: the mean of means, whatever their sizes
    assert all(math.isnan(x) for x in stratified_bootstrap_mean_ci([np.ones(3), np.array([])]))


def _md_table(md: str, heading_start: str) -> tuple[list[str], list[list[str]]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and heading_start in line) + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    table = lines[start:end]

    def cells(line: str) -> list[str]:
        return [md_unescape(c.strip()) for c in line.strip().strip("|").split(" | ")]

    return cells(table[0]), [cells(line) for line in table[2:]]


def test_every_format_shows_the_average_and_its_pooled_tests(store: Store, tmp_path: Path) -> None:
    host = PluginHost(autoload=False, extra=[_Suite()])
    assert declared_averages(host) == (DatasetAverage(NAME, DOMAINS),)
    rlcf = next(a for a in build_report(store, averages=declared_averages(host)).averages
                if a.method == "rlcf-prompt")
    comp = rlcf.vs_reference
    assert comp is not None
    assert comp.adjustment == "holm" and not math.isnan(comp.p_adjusted) and comp.p_adjusted >= comp.p_value
    i2 = "n/a" if math.isnan(comp.i2) else f"{100 * comp.i2:.0f}%"
    expected_cell = (f"{comp.delta:+.2f} [{comp.ci_low:+.2f}, {comp.ci_high:+.2f}] (p={comp.p_value:.3f}, "
                     f"Holm p={comp.p_adjusted:.3f}{' sig' if comp.p_adjusted < 0.05 else ''}; "
                     f"{comp.up} up, {comp.down} down of 3, I² {i2}; MDD {comp.mdd:.2f})")

    headers, rows = _md_table(render(store, "markdown", host=host), "Average: OOD avg")
    by_method = {r[0]: dict(zip(headers, r)) for r in rows}
    assert by_method["rlcf-prompt"]["Δ vs zero-shot (equal-weight, stratified)"] == expected_cell
    assert by_method["rlcf-prompt"]["Δ vs family baseline (equal-weight, stratified)"].startswith("tpt-prompt: ")
    assert by_method["rlcf-prompt"]["OOD avg top1 [95% CI]"].startswith(f"{rlcf.value:.2f} [")
    assert by_method["rlcf-prompt"]["n"] == str(N * 3)
    assert "Averages not shown" in render(store, "markdown", host=host)  # "lonely" is explained

    html = render(store, "html", host=host)
    assert expected_cell in html and "Average: OOD avg" in html

    averages_csv = [r for r in csv.DictReader(io.StringIO(render(store, "csv", host=host)))
                    if r["row_kind"] == "average"]
    row = next(r for r in averages_csv if r["method"] == "rlcf-prompt")
    assert row["average"] == NAME and row["averaged_datasets"] == "d1;d2;d3" and row["run_id"] == ""
    assert float(row["top1"]) == pytest.approx(rlcf.value)
    assert float(row["vs_reference_p"]) == pytest.approx(comp.p_value)
    assert float(row["vs_reference_mdd"]) == pytest.approx(comp.mdd)
    assert float(row["vs_reference_p_adjusted"]) == pytest.approx(comp.p_adjusted)
    assert float(row["vs_reference_ci_low"]) == pytest.approx(comp.ci_low)
    assert (row["vs_reference_datasets_up"], row["vs_reference_datasets_down"]) == ("2", "0")
    run_rows = [r for r in csv.DictReader(io.StringIO(render(store, "csv", host=host))) if r["row_kind"] == "run"]
    assert all(r["vs_reference_mdd"] for r in run_rows if r["vs_reference_p"] and r["method"] != "lonely")

    items = json.loads(render(store, "json", host=host))
    item = next(i for i in items if i.get("row_kind") == "average" and i["method"] == "rlcf-prompt")
    assert item["vs_reference"]["per_dataset_delta"] == pytest.approx(list(comp.per_dataset))
    assert item["vs_reference"]["min_detectable_diff"] == pytest.approx(comp.mdd)
    assert item["vs_reference"]["p_adjusted"] == pytest.approx(comp.p_adjusted)
    assert item["vs_reference"]["weighting"] == "equal weight per dataset" and item["datasets"] == list(DOMAINS)

    summary = render_run_summary(store, list(rlcf.run_ids), host=host)
    header = next(line for line in summary.splitlines() if line.startswith("| method"))
    line = next(line for line in summary.splitlines() if line.startswith("| rlcf-prompt "))
    assert f"{NAME} [95% CI]" in header and f"{rlcf.value:.2f} [{rlcf.ci_low:.2f}, {rlcf.ci_high:.2f}]" in line
    assert f"{comp.delta:+.2f} [{comp.ci_low:+.2f}, {comp.ci_high:+.2f}]{'*' if comp.significant else ''}" in line

    paper = render_paper(store, "markdown", host=host, intervals=True)
    assert f"| {NAME} |" in paper and f"their {NAME} (d1, d2, d3)" in paper
    assert f"{rlcf.value:.2f}" in paper and f"{rlcf.ci_low:.2f}" in paper


def test_paper_average_column_names_the_declared_group_and_skips_other_datasets(store: Store) -> None:
    _cls(store, "in-domain", "zero-shot", set(range(20)))  # not in the group: must not enter the OOD average
    _cls(store, "in-domain", "rlcf-prompt", set(range(20)), reward_model="ViT-L-14@openai")
    host = PluginHost(autoload=False, extra=[_Suite()])
    paper = render_paper(store, "markdown", host=host)
    header = next(line for line in paper.splitlines() if line.startswith("| method |")).strip("|").split(" | ")
    zs_line = next(line for line in paper.splitlines() if line.startswith("| zero-shot |")).strip("|").split(" | ")
    cells = dict(zip((h.strip() for h in header), (c.strip() for c in zs_line)))
    # 50.00, not pulled up by in-domain; marked † (not significantly below the best average on 60 samples)
    assert cells[NAME].rstrip("†") == f"{100.0 * len(ZS_HITS) / N:.2f}"
    assert cells["Δ vs zero-shot"] == "—"  # the reference itself


def test_paper_layout_orders_by_family_marks_ties_and_shows_deltas(store: Store) -> None:
    host = PluginHost(autoload=False, extra=[_Suite()])
    report = build_report(store, averages=declared_averages(host))
    from rlcf_bench.report import build_paper_tables

    (table,) = build_paper_tables(report)
    labels = [r.label for r in table.rows if r.kind == "measured"]
    assert labels[0] == "zero-shot"  # the reference first, then the prompt family (rlcf-prompt, tpt-prompt by average)
    assert labels[1:3] == ["rlcf-prompt", "tpt-prompt"] and labels[-1] == "lonely"
    averages = {a.method: a for a in report.averages}
    best = max(averages.values(), key=lambda a: a.value)
    for row in table.rows:
        if row.kind != "measured" or row.label == "lonely":
            continue
        last = row.cells[-1]
        against_best = averages[row.label].vs_best
        assert last.best == (averages[row.label] is best)
        assert last.tied == (against_best is not None and not against_best.significant)
    rlcf = next(r for r in table.rows if r.label == "rlcf-prompt")
    assert rlcf.vs_reference == averages["rlcf-prompt"].vs_reference
    md = render_paper(store, "markdown", host=host)
    comp = averages["rlcf-prompt"].vs_reference
    assert comp is not None
    assert (f"{comp.delta:+.2f} [{comp.ci_low:+.2f}, {comp.ci_high:+.2f}]{'*' if comp.significant else ''}"
            in md)
    assert "Protocol seed 0" in md


def test_names_from_plugins_and_store_are_escaped_in_average_tables(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'evil.sqlite'}")
    evil_domains = ("<img src=x onerror=alert(5)>", "d|2")
    for d in evil_domains:
        _cls(store, d, "zero-shot", ZS_HITS)
        _cls(store, d, EVIL, TPT_HITS)
    host = PluginHost(autoload=False, extra=[_Suite("<b>OOD</b>", evil_domains)])
    page = render(store, "html", host=host)
    assert "<b>" not in page and "&lt;b&gt;OOD&lt;/b&gt;" in page
    assert "<img" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    md = render(store, "markdown", host=host)
    assert "\\<b>OOD\\</b>" in md and "\\<script>alert(1)\\</script>" in md and "d\\|2" in md
    average = next(i for i in json.loads(render(store, "json", host=host)) if i.get("row_kind") == "average")
    assert average["average"] == "<b>OOD</b>" and average["method"] == EVIL  # JSON keeps the text as it is


def test_suites_declare_their_average_groups() -> None:
    from rlcf_bench_micro import suite as micro
    from rlcf_bench_rlcf import paper_suites

    host = PluginHost(autoload=False, extra=[micro, paper_suites])
    groups = {(g.name, g.datasets) for g in declared_averages(host)}
    assert (NAME, micro.CLASSIFICATION_DOMAINS) in groups
    assert (NAME, ("imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch")) in groups
    with pytest.raises(ValueError, match="two or more distinct datasets"):
        DatasetAverage("x", ("a", "a"))


def _set_order_seed(store: Store, run_id: int, seed: int) -> None:
    from rlcf_bench.store import Run

    with store.session() as s, s.begin():
        run = s.get(Run, run_id)
        assert run is not None
        run.protocol = {"seed": 0, "params": {"order_seed": seed}}


def test_online_methods_average_their_order_seed_0_runs(store: Store) -> None:
    seed0, seed1 = {}, {}
    for d in DOMAINS:
        seed0[d] = _cls(store, d, "online", _rlcf_hits(d))
        _set_order_seed(store, seed0[d], 0)
        seed1[d] = _cls(store, d, "online", set(range(N)), protocol_hash="p7" + "o" * 14)  # another order: all right
        _set_order_seed(store, seed1[d], 1)
    report = _report(store)
    (online,) = [a for a in report.averages if a.method == "online"]
    assert online.run_ids == tuple(seed0[d] for d in DOMAINS)
    d, _ = _per_domain({k: _rlcf_hits(k) for k in DOMAINS}, {k: ZS_HITS for k in DOMAINS})
    assert online.vs_reference is not None and online.vs_reference.tested_delta == pytest.approx(d.mean())
    assert not any("online" in n for n in report.average_notes)  # the other orders are folded, not missing
