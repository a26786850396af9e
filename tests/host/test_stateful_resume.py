"""A method that carries state across samples resumes exactly: the runner replays the stored part
of the stream before continuing, and feeds such a method one sample at a time."""

from __future__ import annotations

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


def test_stateful_method_resumes_to_the_uninterrupted_result(store, monkeypatch):
    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_fixtures", Plugin()])
    req = RunRequest("classification", "tiny-colors", "stream-counter", "tiny-clip")
    straight = Runner(host, store, ExecutionOptions(device="cpu", batch_size=8)).run(req)
    want = [r.prediction for r in store.sample_records(straight.run_id)]

    from rlcf_bench.store import Store

    store2 = Store(store.url.replace("lb.sqlite", "lb2.sqlite"))
    original = Counter.predict
    calls = {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise Interrupt
        return original(self, batch)

    monkeypatch.setattr(Counter, "predict", flaky)
    try:
        Runner(host, store2, ExecutionOptions(device="cpu", batch_size=8)).run(req)
    except Interrupt:
        pass
    assert len(store2.done_sample_ids(1)) == 5
    monkeypatch.setattr(Counter, "predict", original)
    resumed = Runner(host, store2, ExecutionOptions(device="cpu", batch_size=8)).run(req)
    assert [r.prediction for r in store2.sample_records(resumed.run_id)] == want
    assert len(want) == 16 and len(set(want)) == 4
