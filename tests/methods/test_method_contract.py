"""The contract every classification method keeps, checked for each method the registry holds
(discovered, not listed: a method added later is covered without editing this file).

Through the runner, on the tiny fixture (6 samples, 8 views, 2 selected), with a reward model /
teacher that is not the policy (``tiny-clip-teacher``: a model distilled into itself has a
rounding-noise gradient, which Adam amplifies to ±lr steps whatever the batch size):

(a) a run leaves the model's parameters (and their ``requires_grad`` flags) exactly as it found
    them — also a run that fails part-way;
(b) an episodic method's per-sample results do not depend on the batch size (1 vs 3);
(c) a run interrupted after its first stored batch, then re-run, stores the same rows as an
    uninterrupted run (stateful methods rebuild their state by replaying the stored stream).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

PLUGINS = ["rlcf_bench_tasks", "baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_rlcf"]
if importlib.util.find_spec("rlcf_bench_example") is not None:  # the separate example distribution
    PLUGINS.append("rlcf_bench_example.confident_view_ensemble")
PROTOCOL = (("n_views", 8), ("selection_ratio", 0.25), ("limit", 6))


def _host() -> Any:
    from rlcf_bench.plugins import PluginHost

    return PluginHost(autoload=False, extra=list(PLUGINS))


def _classification_methods() -> list[str]:
    return [s.name for s in _host().registry("methods") if "classification" in s.tasks]


METHODS = _classification_methods()


class Interrupt(Exception):
    """Stands in for a killed process: raised while a batch is being stored."""


def _run(tmp_path: Any, name: str, db: str, batch_size: int, *, fail_at_store: int | None = None,
         options: tuple[tuple[str, str], ...] = ()) -> list[Any]:
    """Run ``name`` on the tiny fixture; check (a); return the stored records by index."""
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / (db + '.sqlite')}")
    # stream_flush=1: a stream stores every sample, so "the n-th store" is the n-th sample here too
    runner = Runner(_host(), store, ExecutionOptions(device="cpu", batch_size=batch_size, warmup=0, stream_flush=1))
    model = runner.session.model("tiny-clip").module
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    if fail_at_store is not None:
        calls = {"n": 0}
        add = store.add_executed

        def flaky(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == fail_at_store:
                raise Interrupt
            return add(*args, **kwargs)

        store.add_executed = flaky  # type: ignore[method-assign]
    req = RunRequest(task="classification", dataset="tiny-colors", method=name, model="tiny-clip",
                     reward_model="tiny-clip-teacher", method_options=options, protocol_overrides=PROTOCOL)
    try:
        result = runner.run(req)
    finally:
        after = model.state_dict(keep_vars=True)
        changed = [k for k in state if not torch.equal(state[k], after[k].detach())]
        assert not changed, f"{name} left the model changed: {changed[:3]}"
        assert {k: p.requires_grad for k, p in model.named_parameters()} == flags, f"{name} left requires_grad changed"
    return sorted(store.sample_records(result.run_id), key=lambda r: r.index)


def _rows(records: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.sample_id, r.prediction, r.target, r.score, dict(r.extra)) for r in records]


def test_the_registry_holds_the_methods_this_test_covers():
    assert {"zero-shot", "tpt-prompt", "rlcf-prompt", "c-tpt", "r-tpt", "tps"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_method_contract(name: str, tmp_path: Any) -> None:
    spec = _host().registry("methods").get(name, "classification")
    straight = _run(tmp_path, name, "straight", batch_size=3)
    assert len(straight) == 6

    # (c) killed while storing its second batch, then re-run: the same rows, none lost or doubled
    with pytest.raises(Interrupt):
        _run(tmp_path, name, "resumed", batch_size=3, fail_at_store=2)
    resumed = _run(tmp_path, name, "resumed", batch_size=3)
    assert _rows(resumed) == _rows(straight)

    # (b) episodic methods: one sample at a time gives the same per-sample results
    if spec.episodic:
        alone = _run(tmp_path, name, "alone", batch_size=1)
        assert [r.sample_id for r in alone] == [r.sample_id for r in straight]
        assert [r.prediction for r in alone] == [r.prediction for r in straight]
        for a, b in zip(alone, straight):
            assert a.extra["confidence"] == pytest.approx(b.extra["confidence"], abs=1e-5)


def test_a_state_carrying_configuration_keeps_the_contract(tmp_path: Any) -> None:
    """(a) and (c) for a method whose start point moves with the stream (RLCF's momentum, folded
    every 2 samples): the resumed run replays the stored samples to rebuild that state."""
    options = (("momentum", "true"), ("momentum_freq", "2"), ("momentum_mu", "0.5"), ("lr", "1e-2"))
    straight = _run(tmp_path, "rlcf-image", "straight", batch_size=3, options=options)
    with pytest.raises(Interrupt):
        _run(tmp_path, "rlcf-image", "resumed", batch_size=3, fail_at_store=4, options=options)
    assert _rows(_run(tmp_path, "rlcf-image", "resumed", batch_size=3, options=options)) == _rows(straight)
