"""``compare(store, a, b)``: paired comparison of two stored runs."""

from __future__ import annotations

import pytest
from report_store import KnownStore, add_run, correct_on

from rlcf_bench.report import compare, compare_runs
from rlcf_bench.stats import paired_proportion_ci


def test_mcnemar_known_answers(known: KnownStore) -> None:
    sig = compare_runs(known.store, known.ids["tpt"], known.ids["zs"])
    assert sig.comparable and sig.n_shared == 40
    assert sig.test.mcnemar is not None and (sig.test.mcnemar.b, sig.test.mcnemar.c) == (10, 0)
    assert sig.significant and sig.p_value == pytest.approx(2 * 0.5 ** 10)
    assert sig.test.diff == pytest.approx(25.0)
    equal = compare_runs(known.store, known.ids["rlcf"], known.ids["zs"])
    assert equal.test.mcnemar is not None and (equal.test.mcnemar.b, equal.test.mcnemar.c) == (10, 10)
    assert not equal.significant and equal.p_value == pytest.approx(1.0)


def test_text_output(known: KnownStore) -> None:
    text = compare(known.store, known.ids["tpt"], known.ids["zs"])
    assert "shared samples: 40 (only in A: 0, only in B: 0)" in text
    assert "A right & B wrong: 10   A wrong & B right: 0" in text
    assert "verdict: significant at 5% (A is better)" in text
    lo, hi = paired_proportion_ci(10, 0, 40)
    assert f"95% CI of A - B (Tango's score interval): [{100 * lo:+.2f}, {100 * hi:+.2f}] points" in text
    text = compare(known.store, known.ids["rlcf"], known.ids["zs"])
    assert "verdict: not significant at 5%" in text


def test_bootstrap_for_continuous_scores(known: KnownStore) -> None:
    c = compare_runs(known.store, known.ids["cap_rlcf"], known.ids["cap_zs"])
    assert c.test.test == "paired-bootstrap" and c.significant
    assert c.test.diff == pytest.approx(0.05)
    assert "paired bootstrap" in compare(known.store, known.ids["cap_rlcf"], known.ids["cap_zs"])
    # Retrieval's 0/1 hits are compared like classification's: exact McNemar (b=0, c=10 among 30).
    r = compare_runs(known.store, known.ids["ret_zs"], known.ids["ret_rlcf"])
    assert r.test.test == "mcnemar-exact" and r.significant and r.test.diff == pytest.approx(-100 / 3)
    assert r.test.mcnemar is not None and (r.test.mcnemar.b, r.test.mcnemar.c) == (0, 10)


def test_partial_overlap_and_incomparable_runs(known: KnownStore) -> None:
    part = add_run(known.store, task="classification", kind="classification", dataset="imagenet-a",
                   method="partial", scores={f"s{i:02d}": 1.0 for i in range(30)} | {"extra": 1.0},
                   metrics={"top1": (100.0, None, None)})
    c = compare_runs(known.store, part, known.ids["zs"])
    assert (c.test.n_shared, c.test.only_a, c.test.only_b) == (30, 1, 10)
    assert "shared samples: 30 (only in A: 1, only in B: 10)" in compare(known.store, part, known.ids["zs"])
    apart = compare_runs(known.store, known.ids["apart"], known.ids["zs"])
    assert not apart.comparable and any("protocol hash" in d for d in apart.differences)
    assert "comparable: NO" in compare(known.store, known.ids["apart"], known.ids["zs"])


def test_no_shared_samples_and_unknown_runs(known: KnownStore) -> None:
    other = add_run(known.store, task="classification", kind="classification", dataset="imagenet-a",
                    method="disjoint", scores=correct_on(5, {0}, prefix="z"), metrics={"top1": (20.0, None, None)})
    c = compare_runs(known.store, other, known.ids["zs"])
    assert c.n_shared == 0 and not c.significant
    assert "no shared samples" in compare(known.store, other, known.ids["zs"])
    with pytest.raises(LookupError, match="9999"):
        compare(known.store, 9999, known.ids["zs"])
