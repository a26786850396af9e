"""View policies: the common protocol by default; a method's own views only when asked for, with
their own protocol hash."""

from __future__ import annotations

import pytest
import torch

from rlcf_bench.types import RunProtocol, ViewPolicy, resolve_view_policy


def _prepare(method_host, tmp_path, method: str, **params):
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    runner = Runner(method_host, Store(f"sqlite:///{tmp_path / 'lb.sqlite'}"), ExecutionOptions(device="cpu"))
    req = RunRequest(task="classification", dataset="tiny-colors", method=method, model="tiny-clip",
                     protocol_overrides=(("n_views", 8), *params.items()))
    return runner.prepare(req)[0].protocol


def test_common_protocol_is_the_default_and_unchanged(method_host, tmp_path):
    zero = _prepare(method_host, tmp_path, "zero")
    assert zero.hash == _prepare(method_host, tmp_path, "zero-shot").hash
    assert zero.hash == _prepare(method_host, tmp_path, "zero", view_policy="common").hash
    assert zero.param("view_policy") is None
    assert (zero.n_views, zero.augmix) == (8, False)
    # a method without a policy of its own keeps the common protocol under view_policy=method
    assert _prepare(method_host, tmp_path, "tpt-prompt", view_policy="method").hash == zero.hash


@pytest.mark.parametrize("name", ["zero", "mta"])
def test_method_policy_changes_the_views_and_the_hash(name, method_host, tmp_path):
    common = _prepare(method_host, tmp_path, name)
    own = _prepare(method_host, tmp_path, name, view_policy="method")
    assert (own.n_views, own.augmix, own.param("view_policy")) == (64, False, "method")
    assert own.hash != common.hash
    assert own.replace(params=()) == common.replace(n_views=64, params=())  # nothing else moved


def test_augmix_policies_per_dataset():
    fine_grained = RunProtocol(n_views=16, augmix=True)
    assert resolve_view_policy(fine_grained.replace(params=(("view_policy", "method"),)),
                               ViewPolicy(augmix=False), "pets").augmix is False
    c_tpt_like = ViewPolicy(augmix_on=frozenset({"imagenet-a"}))
    imagenet = RunProtocol(n_views=16, augmix=False, params=(("view_policy", "method"),))
    assert resolve_view_policy(imagenet, c_tpt_like, "imagenet-a").augmix is True
    assert resolve_view_policy(imagenet, c_tpt_like, "imagenet").augmix is False
    assert resolve_view_policy(imagenet, c_tpt_like, "pets").n_views == 16


def test_the_views_themselves_differ_and_view_0_does_not(make_ctx):
    from rlcf_bench_fixtures.tiny import TinyColors
    from rlcf_bench_tasks.classification import ClassificationTask

    ctx, _ = make_ctx()
    common = RunProtocol(n_views=8, augmix=False, precision="fp32")
    own = resolve_view_policy(common.replace(params=(("view_policy", "method"),)), ViewPolicy(augmix=True), "tiny-colors")
    items = [(0, "tiny-0000")]
    views = [ClassificationTask(TinyColors(2), p).make_batch(items, ctx.model, ctx.device).views for p in (common, own)]
    assert views[0].shape == views[1].shape
    assert torch.equal(views[0][:, 0], views[1][:, 0])  # the centre crop is never augmented
    assert not torch.equal(views[0][:, 1:], views[1][:, 1:])
    more = resolve_view_policy(common.replace(params=(("view_policy", "method"),)), ViewPolicy(n_views=12), "tiny-colors")
    assert ClassificationTask(TinyColors(2), more).make_batch(items, ctx.model, ctx.device).views.shape[1] == 12


def test_a_bad_view_policy_is_refused_before_anything_runs(method_host, tmp_path):
    from rlcf_bench.planning import PlanError, plan_runs
    from rlcf_bench.runner import RunnerError

    with pytest.raises(RunnerError, match="view_policy='paper': expected one of common, method"):
        _prepare(method_host, tmp_path, "zero", view_policy="paper")
    with pytest.raises(PlanError, match="view_policy"):
        plan_runs(method_host, suite="none", task="classification", datasets=["tiny-colors"], methods=["zero"],
                  model="tiny-clip", overrides={"view_policy": "paper"})


def test_method_policy_runs_are_stored_apart(method_host, tmp_path):
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(method_host, store, ExecutionOptions(device="cpu", warmup=0))
    base = (("n_views", 8), ("limit", 2))
    results = [runner.run(RunRequest(task="classification", dataset="tiny-colors", method="zero", model="tiny-clip",
                                     protocol_overrides=base + extra)) for extra in ((), (("view_policy", "method"),))]
    assert results[0].run_id != results[1].run_id
    runs = [store.get_run(r.run_id) for r in results]
    assert runs[0].protocol_hash != runs[1].protocol_hash
    assert results[1].spec.protocol.param("view_policy") == "method" and results[1].spec.protocol.n_views == 64
