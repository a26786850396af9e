"""Leaderboard rows on a store with known runs: groups, ranks, tests, references."""

from __future__ import annotations

import pytest
from report_store import B16, EVIL, L14, KnownStore, add_run, build_report, build_rows, correct_on, row_by_run


def test_only_finished_runs_are_rows(known: KnownStore) -> None:
    rows = build_rows(known.store)
    assert {r.method for r in rows} >= {"zero-shot", "tpt", "rlcf", EVIL}
    assert "broken" not in {r.method for r in rows}
    assert len(rows) == len(known.ids)


def test_incomparable_runs_are_never_ranked_together(known: KnownStore) -> None:
    report = build_report(known.store, task="classification")
    (section,) = report.sections
    main = section.groups[0]
    assert main.is_main and main.apart_reason is None
    assert {r.run_id for r in main.rows} == {known.ids[k] for k in ("zs", "tpt", "rlcf", "evil")}
    apart = {g.rows[0].run_id: g for g in section.groups[1:]}
    # The P2 tpt run scores 90 but is alone in its group, with the protocol as the reason.
    p2 = apart[known.ids["apart"]]
    assert not p2.is_main and len(p2.rows) == 1 and p2.rows[0].rank == 1
    assert "protocol hash" in (p2.apart_reason or "") and "model" not in (p2.apart_reason or "")
    # The ViT-L/14 zero-shot run differs in the model.
    l14 = apart[known.ids["rm_zs"]]
    assert "model ViT-L-14@openai vs ViT-B-16@openai" in (l14.apart_reason or "")
    for g in section.groups:
        keys = {r.comparability_key for r in g.rows}
        assert len(keys) == 1, "a group mixes comparability keys"
    best_main = row_by_run(main.rows, known.ids["tpt"])
    assert best_main.rank == 1 and best_main.vs_best is None
    assert row_by_run(report.rows, known.ids["apart"]).ranked_with_main is False


def test_ranks_are_competition_ranks_by_primary_metric(known: KnownStore) -> None:
    rows = build_rows(known.store, task="classification", dataset="imagenet-a")
    ranks = {r.run_id: r.rank for r in rows if r.ranked_with_main}
    assert ranks == {known.ids["tpt"]: 1, known.ids["evil"]: 2, known.ids["zs"]: 3, known.ids["rlcf"]: 3}
    assert all(r.primary_metric == "top1" for r in rows)


def test_significance_against_zero_shot_and_best(known: KnownStore) -> None:
    rows = build_rows(known.store, task="classification")
    tpt = row_by_run(rows, known.ids["tpt"])
    assert tpt.vs_reference is not None
    assert tpt.vs_reference.test == "mcnemar-exact" and tpt.vs_reference.significant  # b=10, c=0
    assert tpt.vs_reference.p_value == pytest.approx(2 * 0.5 ** 10)
    assert tpt.vs_reference.delta == pytest.approx(25.0)
    rlcf = row_by_run(rows, known.ids["rlcf"])
    assert rlcf.vs_reference is not None and not rlcf.vs_reference.significant  # b=c=10
    assert rlcf.vs_reference.p_value == pytest.approx(1.0)
    assert rlcf.vs_best is not None and rlcf.vs_best.against_run == known.ids["tpt"]
    zs = row_by_run(rows, known.ids["zs"])
    assert zs.vs_reference is None


def test_retrieval_uses_mcnemar_and_captioning_the_paired_bootstrap(known: KnownStore) -> None:
    rows = build_rows(known.store)
    ret = row_by_run(rows, known.ids["ret_rlcf"])
    assert ret.vs_reference is not None and ret.vs_reference.test == "mcnemar-exact"  # 0/1 hits
    assert ret.vs_reference.significant and ret.vs_reference.on_primary
    cap = row_by_run(rows, known.ids["cap_rlcf"])
    assert cap.primary_metric == "cider"
    assert cap.vs_reference is not None and cap.vs_reference.significant  # the CLIPScore test's mark
    assert cap.vs_reference.test == "paired-bootstrap" and cap.vs_reference.score_label == "CLIPScore"
    assert cap.vs_reference.delta == pytest.approx(7.0)
    assert not cap.vs_reference.on_primary  # CIDEr is corpus-level: tested on the per-sample score


def test_reward_model_zero_shot_is_a_reference_row(known: KnownStore) -> None:
    report = build_report(known.store, task="classification")
    main = report.sections[0].groups[0]
    assert [r.run_id for r in main.reward_model_refs] == [known.ids["rm_zs"]]
    rlcf = row_by_run(main.rows, known.ids["rlcf"])
    ref = rlcf.reward_model_zero_shot
    assert ref is not None and ref.run_id == known.ids["rm_zs"] and ref.model == L14
    assert ref.value == pytest.approx(75.0) and ref.delta == pytest.approx(-25.0)
    assert ref.below and ref.strictly_comparable
    assert ref.comparison is not None and ref.comparison.significant  # c=10, b=0
    rm_row = row_by_run(report.rows, known.ids["rm_zs"])
    assert main.id in rm_row.reference_for


def test_reported_numbers_match_the_exact_setting(known: KnownStore) -> None:
    rows = build_rows(known.store, task="classification")
    rlcf = row_by_run(rows, known.ids["rlcf"])
    (rep,) = rlcf.reported
    assert (rep.metric, rep.reported, rep.measured) == ("top1", 65.45, 50.0)
    assert rep.diff == pytest.approx(50.0 - 65.45) and rep.source == "RLCF Table 1"
    # The RN50 reference must not attach to the ViT-B/16 tpt run.
    assert row_by_run(rows, known.ids["tpt"]).reported == []


def test_intervals_stored_or_bootstrapped(known: KnownStore) -> None:
    rows = build_rows(known.store)
    evil = row_by_run(rows, known.ids["evil"])
    top1 = evil.metrics["top1"]
    assert evil.ci_source["top1"] == "bootstrap"
    assert top1.ci_low is not None and top1.ci_high is not None and top1.ci_low < 60.0 < top1.ci_high
    # top5 is not the mean of the per-sample scores: no made-up interval.
    assert evil.ci_source["top5"] == "none" and evil.metrics["top5"].ci_low is None
    assert row_by_run(rows, known.ids["tpt"]).ci_source["top1"] == "stored"
    cap = row_by_run(rows, known.ids["cap_zs"])
    assert cap.ci_source["clipscore"] == "bootstrap"


def test_cost_fields_and_reward_share(known: KnownStore) -> None:
    rlcf = row_by_run(build_rows(known.store), known.ids["rlcf"])
    assert (rlcf.ms_per_sample_p50, rlcf.ms_per_sample_p95) == (380.0, 520.0)
    assert (rlcf.adapt_ms_mean, rlcf.predict_ms_mean, rlcf.peak_memory_mb) == (360.0, 40.0, 2400.0)
    assert rlcf.reward_share == pytest.approx(0.25)
    assert row_by_run(build_rows(known.store), known.ids["zs"]).reward_share is None


def test_method_filter_does_not_change_ranks(known: KnownStore) -> None:
    only = build_rows(known.store, method="rlcf")
    assert {r.method for r in only} == {"rlcf"}
    cls = next(r for r in only if r.task == "classification")
    assert cls.rank == 3 and cls.vs_best is not None
    assert build_rows(known.store, task="retrieval", dataset="flickr30k")[0].dataset == "flickr30k"


def test_latest_attempt_supersedes_older_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / 'a.sqlite'}")
    common = {"task": "classification", "kind": "classification", "dataset": "d", "method": "m", "key": "same"}
    add_run(store, **common, attempt=1, scores=correct_on(4, {0}), metrics={"top1": (25.0, None, None)})
    new = add_run(store, **common, attempt=2, scores=correct_on(4, {0, 1}), metrics={"top1": (50.0, None, None)})
    report = build_report(store)
    assert [r.run_id for r in report.rows] == [new] and report.superseded_attempts == 1


def test_empty_store_gives_empty_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / 'e.sqlite'}")
    assert build_rows(store) == []
    assert B16  # the fixture constants import cleanly


def test_reward_model_in_the_same_group_is_not_duplicated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / 's.sqlite'}")
    common = {"task": "classification", "kind": "classification", "dataset": "d", "model": L14}
    zs = add_run(store, **common, method="zero-shot", scores=correct_on(10, {0, 1, 2}),
                 metrics={"top1": (30.0, None, None)})
    add_run(store, **common, method="rlcf", reward_model=L14, scores=correct_on(10, {0, 1, 2, 3}),
            metrics={"top1": (40.0, None, None)})
    report = build_report(store)
    (group,) = report.sections[0].groups
    assert group.reward_model_refs == []
    rlcf = next(r for r in group.rows if r.method == "rlcf")
    assert rlcf.reward_model_zero_shot is not None and rlcf.reward_model_zero_shot.run_id == zs
    assert not rlcf.reward_model_zero_shot.below
