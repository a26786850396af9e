"""A method that carries state across samples resumes exactly: the runner replays the stored part
of the stream before continuing, and feeds such a method one sample at a time."""

from __future__ import annotations

import pytest
import torch

from rlcf_bench import Method, MethodSpec, Predictions, hookimpl
from rlcf_bench.plugins import PluginHost
from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest


class Counter(Method[None]):
    """Predicts class (number of samples seen so far) mod C: depends on the whole stream."""

    name = "stream-counter"
    max_batch = 8

    def setup(self, ctx):
        self.ctx, self.seen, self.batch_sizes = ctx, 0, []

    @property
    def carries_state(self) -> bool:
        return True

    def adapt(self, batch):
        self.batch_sizes.append(len(batch))

    def predict(self, batch):
        c = len(self.ctx.classnames)
        logits = torch.zeros(len(batch), c)
        logits[:, self.seen % c] = 1.0
        return Predictions(logits=logits)

    def after_predict(self, batch):
        self.seen += len(batch)


class Plugin:
    @hookimpl
    def rlcfb_register_methods(self):
        return [MethodSpec.from_method(Counter)]


class Interrupt(Exception):
    pass


def _fail_at(monkeypatch, n: int):
    """Make the n-th prediction raise :class:`Interrupt`; returns the original ``predict``."""
    original, calls = Counter.predict, {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == n:
            raise Interrupt
        return original(self, batch)

    monkeypatch.setattr(Counter, "predict", flaky)
    return original


def test_stateful_method_resumes_to_the_uninterrupted_result(store, monkeypatch):
    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_fixtures", Plugin()])
    req = RunRequest("classification", "tiny-colors", "stream-counter", "tiny-clip")
    straight = Runner(host, store, ExecutionOptions(device="cpu", batch_size=8)).run(req)
    want = [r.prediction for r in store.sample_records(straight.run_id)]

    from rlcf_bench.store import Store

    store2 = Store(store.url.replace("lb.sqlite", "lb2.sqlite"))
    original = _fail_at(monkeypatch, 6)
    try:
        Runner(host, store2, ExecutionOptions(device="cpu", batch_size=8)).run(req)
    except Interrupt:
        pass
    assert len(store2.done_sample_ids(1)) == 5
    monkeypatch.setattr(Counter, "predict", original)
    resumed = Runner(host, store2, ExecutionOptions(device="cpu", batch_size=8)).run(req)
    assert [r.prediction for r in store2.sample_records(resumed.run_id)] == want
    assert len(want) == 16 and len(set(want)) == 4


def test_a_stream_is_stored_every_few_samples_and_a_kill_loses_only_unstored_work(store, monkeypatch):
    """``stream_flush``: a stream's results are stored every N samples, so one transaction serves N
    samples. A failure stores what was computed before it; a process that dies while storing
    (the flush itself fails, as when killed) loses the unstored samples only, and the resumed
    run recomputes them: the same rows as an uninterrupted run."""
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_fixtures", Plugin()])
    req = RunRequest("classification", "tiny-colors", "stream-counter", "tiny-clip")
    opts = ExecutionOptions(device="cpu", stream_flush=4, stream_flush_s=1e9)  # by count only: the test counts
    calls: list[int] = []
    add = store.add_executed

    def counted(run_id, batches):
        calls.append(sum(len(b.records) for b in batches))
        return add(run_id, batches)

    monkeypatch.setattr(store, "add_executed", counted)
    straight = Runner(host, store, opts).run(req)
    want = [(r.sample_id, r.prediction) for r in store.sample_records(straight.run_id)]
    assert calls == [4, 4, 4, 4] and len(want) == 16  # 16 samples, 4 transactions
    calls.clear()  # and by time: a slow stream is stored every stream_flush_s seconds whatever the count
    timed = Runner(host, store, ExecutionOptions(device="cpu", stream_flush=1000, stream_flush_s=0.0, fresh=True))
    assert [(r.sample_id, r.prediction) for r in store.sample_records(timed.run(req).run_id)] == want
    assert calls == [1] * 16

    # a method failure at sample 7: the 6 computed before it are stored (4 flushed, 2 on failure)
    killed = Store(store.url.replace("lb.sqlite", "killed.sqlite"))
    original = _fail_at(monkeypatch, 7)
    with pytest.raises(Interrupt):
        Runner(host, killed, opts).run(req)
    assert len(killed.done_sample_ids(1)) == 6
    monkeypatch.setattr(Counter, "predict", original)

    # resumed at sample 7, then dying while storing its second group (samples 11-14): nothing more
    # is stored (every later store fails too, as in a dead process), the 6 + 4 stored stay
    add_killed = killed.add_executed
    stores = {"n": 0}

    def dies(run_id, batches):
        stores["n"] += 1
        if stores["n"] >= 2:
            raise Interrupt
        return add_killed(run_id, batches)

    monkeypatch.setattr(killed, "add_executed", dies)
    with pytest.raises(Interrupt):
        Runner(host, killed, opts).run(req)
    assert len(killed.done_sample_ids(1)) == 10 and stores["n"] == 3  # the failure path tried once more
    monkeypatch.setattr(killed, "add_executed", add_killed)
    resumed = Runner(host, killed, opts).run(req)
    assert [(r.sample_id, r.prediction) for r in killed.sample_records(resumed.run_id)] == want
