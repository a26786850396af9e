"""Suites: the default micro suite and the paper tables expand to registered components."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rlcf_bench.cli import build_cli
from rlcf_bench.plugins import PluginHost


@pytest.fixture(scope="module")
def full_host():
    return PluginHost(autoload=True)


def _runs(host, name):
    return host.registry("suites").get(name).runs(list(host.registry("methods")))


def test_micro_suite_runs_every_classification_method_on_every_shift(full_host):
    """Every one but the per-batch online methods, which need a batched stream: the ``protocols``
    suite runs them (tests/host/test_streams.py)."""
    runs = _runs(full_host, "micro")
    cls = [r for r in runs if r.task == "classification"]
    methods = {m.name for m in full_host.registry("methods") if "classification" in m.tasks and m.adapts_per != "batch"}
    assert {"tent", "lame"} <= {m.name for m in full_host.registry("methods")} - methods
    domains = {r.dataset for r in cls}
    assert domains == {"micro-sketch", "micro-rendition", "micro-hard", "micro-resampled", "micro-noise"}
    for ds in domains:
        assert {r.method for r in cls if r.dataset == ds and r.model == "micro-student"} == methods
        assert any(r.method == "zero-shot" and r.model == "micro-reward" for r in cls if r.dataset == ds)
    assert {r.task for r in runs} == {"classification", "retrieval", "captioning"}
    assert all(r.reward_model == "micro-reward" for r in runs if r.method.startswith("rlcf"))


def test_paper_table1_has_the_reward_model_row_and_every_method(full_host):
    runs = _runs(full_host, "paper-table1")
    assert len(runs) == 40
    assert {(r.method, r.model) for r in runs if r.dataset == "imagenet-a"} >= {
        ("zero-shot", "ViT-B-16@openai"), ("zero-shot", "ViT-L-14@openai"), ("rlcf-prompt", "ViT-B-16@openai"),
        ("rlcf-image", "ViT-B-16@openai"), ("tpt-prompt", "ViT-B-16@openai"), ("tpt-image", "ViT-B-16@openai")}


def test_suites_needing_local_files_say_which(full_host, monkeypatch):
    monkeypatch.delenv("RLCF_BENCH_CLIPCAP_DIR", raising=False)
    with pytest.raises(ValueError, match="RLCF_BENCH_CLIPCAP_DIR"):
        _runs(full_host, "paper-table3")
    monkeypatch.setenv("RLCF_BENCH_CLIPCAP_DIR", "/ckpt/clipcap")
    monkeypatch.setenv("RLCF_BENCH_CAPDEC_DIR", "/ckpt/capdec")
    runs = _runs(full_host, "paper-table3")
    assert {r.model for r in runs} == {"clipcap@/ckpt/clipcap", "capdec@/ckpt/capdec"} and len(runs) == 24


def test_validate_accepts_the_full_plugin_set(full_host):
    out = CliRunner().invoke(build_cli(full_host), ["validate"])
    assert out.exit_code == 0, out.output
    assert "ok    cross-references" in out.output


def test_method_override_keeps_each_runs_own_dataset_and_protocol_settings(full_host):
    from rlcf_bench.planning import plan_runs

    reqs = plan_runs(full_host, suite="micro", methods=["zero-shot"], overrides={"limit": 4})
    by_task = {(r.task, r.dataset): r for r in reqs if r.dataset == "micro-rendition"}
    assert dict(by_task[("retrieval", "micro-rendition")].dataset_params)["n"] == 60
    assert dict(by_task[("classification", "micro-rendition")].dataset_params)["n"] == 500
    # order seed 0: classification has online methods, so every run of it gets a stream order
    assert dict(by_task[("classification", "micro-rendition")].protocol_overrides) == {"n_views": 32, "limit": 4,
                                                                                       "order_seed": 0}
    assert all(r.method == "zero-shot" and r.model != "micro-reward" for r in reqs)


def test_method_options_follow_the_implementation_serving_each_task(full_host):
    """``rlcf`` has one implementation per task: ``-m`` sets an option on the tasks whose
    implementation has it and names the task that has it when the selected one does not."""
    from rlcf_bench.planning import PlanError, plan_runs

    both = plan_runs(full_host, suite="micro", methods=["rlcf"], options=[("steps", "2")])
    assert {r.task for r in both} == {"retrieval", "captioning"}
    assert all(dict(r.method_options)["steps"] == "2" for r in both)
    retrieval = plan_runs(full_host, suite="micro", task="retrieval", methods=["rlcf"], options=[("k_t2i", "3")])
    assert [dict(r.method_options) for r in retrieval] == [{"k_t2i": "3"}]
    with pytest.raises(PlanError, match="no selected method has an option named 'k_t2i' for the selected task "
                                        r"\(only 'rlcf' on the retrieval task has it\)"):
        plan_runs(full_host, suite="micro", task="captioning", methods=["rlcf"], options=[("k_t2i", "3")])
    with pytest.raises(PlanError, match="final_beams=0 .* on the captioning task"):
        plan_runs(full_host, suite="micro", task="captioning", methods=["rlcf"], options=[("final_beams", "0")])
