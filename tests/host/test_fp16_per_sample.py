"""Per-sample fp16 semantics (docs/gpu.md#fp16): a sample's loss scaling and overflow handling
never depend on the other samples of its batch, on the batch size, on sharding or on resume.

On the CPU (autocast runs fp16 and bf16 there too), an overflow is emulated: an inf gradient
is injected into one sample's logits at its first tuning step. Under ``amp-fp16`` that sample
skips that step alone (its scale halves, its next step runs); the other samples are untouched.
Under ``amp-bf16`` there is no loss scaling and no overflow check (as under ``fp32``): the inf
gradient reaches that sample's optimizer step, its prompt becomes NaN and its prediction is a
failed one (stored wrong with confidence 0, ``extra.nonfinite``: docs/statistics.md), and the rows
stay independent. Batch 1, batch 8, two shards and an interrupted-then-resumed run all store the
same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
from rlcf_bench.sharding import Shard
from rlcf_bench.store import Store

PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_rlcf")
TARGET = "tiny-0003"  # the sample whose first step overflows


class Interrupt(Exception):
    """Stands in for a killed process."""


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Adds +inf to the gradient of TARGET's logits at its first tuning step, wherever it is batched."""
    from rlcf_bench.tta import episode, objectives

    state: dict[str, Any] = {"ids": [], "step": 0, "on": True, "injected": 0}
    adapt, loss = episode.TuningMethod.adapt, objectives.MarginalEntropyObjective.loss

    def recording_adapt(self: Any, batch: Any) -> None:
        state["ids"], state["step"] = list(batch.sample_ids), 0
        adapt(self, batch)

    def overflowing_loss(self: Any, logits: torch.Tensor) -> torch.Tensor:
        if state["on"] and state["step"] == 0 and TARGET in state["ids"] and logits.requires_grad:
            row = state["ids"].index(TARGET)
            bump = torch.zeros_like(logits)
            bump[row] = float("inf")
            logits.register_hook(lambda g: g + bump)
            state["injected"] += 1
        state["step"] += 1
        return loss(self, logits)

    monkeypatch.setattr(episode.TuningMethod, "adapt", recording_adapt)
    monkeypatch.setattr(objectives.MarginalEntropyObjective, "loss", overflowing_loss)
    return state


def _rows(store: Store, run_id: int) -> dict[str, tuple[Any, ...]]:
    return {r.sample_id: (r.prediction, r.target, r.extra["confidence"]) for r in store.sample_records(run_id)}


def _run(make_host: Any, db: Path, precision: str, batch_size: int, *, shard: Shard | None = None,
         fail_at_store: int | None = None) -> tuple[Store, int | None]:
    store = Store(f"sqlite:///{db}")
    runner = Runner(make_host(*PLUGINS), store, ExecutionOptions(device="cpu", batch_size=batch_size, warmup=0))
    if fail_at_store is not None:
        add, calls = store.add_executed, {"n": 0}

        def flaky(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == fail_at_store:
                raise Interrupt
            return add(*args, **kwargs)

        store.add_executed = flaky  # type: ignore[method-assign]
    req = RunRequest("classification", "tiny-colors", "tpt-prompt", "tiny-clip", method_options=(("steps", "2"),),
                     protocol_overrides=(("n_views", 8), ("limit", 8), ("precision", precision)))
    result = runner.run(req, shard=shard)
    return store, result.run_id


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.slow  # five runs per precision of fp16/bf16 autocast on the CPU: minutes under load
@pytest.mark.parametrize("precision", ["amp-fp16", "amp-bf16"])
def test_batch_1_equals_batch_8_equals_shards_equals_resumed_with_an_overflow(
        tmp_path: Path, make_host: Any, inject: dict[str, Any], precision: str) -> None:
    inject["on"] = False
    clean_store, clean_id = _run(make_host, tmp_path / "clean.sqlite", precision, 8)
    clean = _rows(clean_store, clean_id)
    inject["on"] = True

    batched_store, batched_id = _run(make_host, tmp_path / "b8.sqlite", precision, 8)
    batched = _rows(batched_store, batched_id)
    assert inject["injected"] == 1
    alone_store, alone_id = _run(make_host, tmp_path / "b1.sqlite", precision, 1)
    alone = _rows(alone_store, alone_id)

    shard_db = tmp_path / "shards.sqlite"
    _run(make_host, shard_db, precision, 8, shard=Shard(1, 2))
    shard_store, shard_id = _run(make_host, shard_db, precision, 8, shard=Shard(0, 2))
    sharded = _rows(shard_store, shard_id)

    resume_db = tmp_path / "resumed.sqlite"
    with pytest.raises(Interrupt):
        _run(make_host, resume_db, precision, 3, fail_at_store=2)
    resumed_store, resumed_id = _run(make_host, resume_db, precision, 3)
    resumed = _rows(resumed_store, resumed_id)

    assert len(batched) == 8 and TARGET in batched
    assert alone == batched, "batch 1 differs from batch 8"
    assert sharded == batched, "two shards differ from one process"
    assert resumed == batched, "an interrupted and resumed run differs from an uninterrupted one"
    # the overflow touched its own sample only, and did change it (the test is not vacuous)
    assert {k: v for k, v in batched.items() if k != TARGET} == {k: v for k, v in clean.items() if k != TARGET}
    assert batched[TARGET] != clean[TARGET]
    if precision == "amp-bf16":  # nothing skips the step: the sample diverges, a failed prediction
        assert batched[TARGET][0] == -1 and batched[TARGET][2] == 0.0


def test_an_overflowing_row_skips_its_own_step_only() -> None:
    """The unit: a row with an inf gradient keeps its values and Adam moments and halves its scale;
    the other rows take the same step as without the overflow."""
    from rlcf_bench.device import AmpHelper

    def step(poison: bool) -> tuple[torch.Tensor, AmpHelper, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(3, 4))
        opt = torch.optim.AdamW([p], lr=0.1)
        amp = AmpHelper(torch.device("cpu"), "amp-fp16")
        for k in range(2):
            opt.zero_grad(set_to_none=True)
            losses = (p * p).sum(dim=1)
            if poison and k == 0:
                losses = losses + torch.tensor([0.0, float("inf"), 0.0]) * p[:, 0]
            amp.backward_step(losses, opt)
            if k == 0:
                first = {"p": p.detach().clone(), **{n: v.clone() for n, v in opt.state[p].items()}}
        return p.detach(), amp, first

    clean, _, clean_first = step(False)
    poisoned, amp, first = step(True)
    assert amp.scales is not None and amp.scales.tolist() == [1000.0, 500.0, 1000.0]
    torch.manual_seed(0)
    start = torch.randn(3, 4)
    assert torch.equal(first["p"][1], start[1]), "the overflowing row took a step"
    assert torch.equal(first["exp_avg"][1], torch.zeros(4)) and torch.equal(first["exp_avg_sq"][1], torch.zeros(4))
    assert torch.equal(first["p"][[0, 2]], clean_first["p"][[0, 2]])
    assert torch.equal(poisoned[[0, 2]], clean[[0, 2]])
    assert not torch.equal(poisoned[1], clean[1])
