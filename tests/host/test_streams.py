"""Stream protocols (rlcf_bench.streams): continual domain streams, label-correlated (Dirichlet)
orders, batched online methods, the shared ``protocols`` suite, and bad values refused."""

from __future__ import annotations

from collections import Counter

import pytest

from rlcf_bench import DatasetSpec, SuiteRun, SuiteSpec, hookimpl
from rlcf_bench.planning import PlanError, plan_runs
from rlcf_bench.runner import RunnerError, RunRequest
from rlcf_bench.streams import (
    ContinualData,
    StreamError,
    dirichlet_order,
    merge_continual,
    parse_stream,
    segment_metrics,
    stream_items,
)
from rlcf_bench.types import SampleRecord


class SecondColors:
    """A second domain of tiny-colors (same classes, its own sample ids): a continual stream's partner."""

    @hookimpl
    def rlcfb_register_datasets(self) -> list[DatasetSpec]:
        from rlcf_bench_fixtures.tiny import TinyColors

        class Shifted(TinyColors):
            def sample_id(self, index: int) -> str:
                return f"shifted-{index:04d}"

            def load_image(self, index: int):  # another domain: the colours darkened
                return super().load_image(index) // 2

        return [DatasetSpec(name="tiny-colors-dark", version="1", task_kinds=frozenset({"classification"}),
                            build=lambda root=None, n=16: Shifted(int(n)), params={"n": 16})]


def _host(make_host):
    return make_host("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", SecondColors())


def req(method: str, dataset: str, **protocol: object) -> RunRequest:
    return RunRequest("classification", dataset, method, "tiny-clip", protocol_overrides=tuple(sorted(protocol.items())))


def test_stream_values_are_read_or_refused_in_one_line():
    assert parse_stream(None) == ("iid", None) and parse_stream("continual") == ("continual", None)
    assert parse_stream("dirichlet:0.1") == ("dirichlet", 0.1)
    for bad in ("dirichlet", "dirichlet:0", "dirichlet:-1", "markov", "dirichlet:x"):
        with pytest.raises(StreamError, match="expected one of iid, continual, dirichlet"):
            parse_stream(bad)


def test_the_dirichlet_order_is_a_seeded_permutation_whose_runs_lengthen_as_gamma_shrinks():
    labels = [i % 5 for i in range(200)]

    def switches(order: list[int]) -> int:
        return sum(labels[a] != labels[b] for a, b in zip(order, order[1:]))

    low, high = dirichlet_order(labels, 0.01, 0), dirichlet_order(labels, 1000.0, 0)
    assert sorted(low) == sorted(high) == list(range(200))
    assert dirichlet_order(labels, 0.01, 0) == low and dirichlet_order(labels, 0.01, 1) != low
    assert switches(low) < 60 < 120 < switches(high)  # i.i.d. would switch about 160 times


def test_a_continual_stream_plays_the_domains_one_after_another_in_a_seeded_order():
    domain = {i: ("a" if i < 6 else "b") for i in range(12)}
    items = [(i, f"s{i}") for i in range(12)]
    orders = {tuple(stream_items(items, "continual", order_seed=k, domain_of=domain.__getitem__, label_of=None,
                                 iid=lambda part: part)) for k in range(8)}
    assert len(orders) == 2  # both domain orders occur
    for order in orders:
        seen = [domain[i] for i, _ in order]
        assert seen in (["a"] * 6 + ["b"] * 6, ["b"] * 6 + ["a"] * 6)
    with pytest.raises(StreamError, match="not a continual stream"):
        stream_items(items, "continual", order_seed=0, domain_of=None, label_of=None, iid=list)


def test_continual_data_needs_one_label_set_and_keeps_unique_sample_ids():
    from rlcf_bench_fixtures.tiny import TinyColors

    class Other(TinyColors):
        classnames = ("x", "y", "z", "w")

    with pytest.raises(StreamError, match="different class names"):
        ContinualData([("a", TinyColors(4)), ("b", Other(4))])
    same = ContinualData([("a", TinyColors(4)), ("b", TinyColors(4))])  # same ids in both: prefixed
    assert same.sample_id(0) == "a/tiny-0000" and same.sample_id(4) == "b/tiny-0000" and same.domain_of(5) == "b"


def test_merge_continual_makes_one_run_per_group_and_refuses_a_single_domain():
    reqs = [req(m, d, stream="continual") for m in ("tda", "zero-shot") for d in ("x", "y")] + [req("tda", "x")]
    merged = merge_continual(reqs)
    assert [(r.method, r.dataset) for r in merged] == [("tda", "continual:x+y"), ("zero-shot", "continual:x+y"),
                                                       ("tda", "x")]
    with pytest.raises(StreamError, match="needs two or more"):
        merge_continual([req("tda", "x", stream="continual")])


def test_segment_metrics_are_per_domain_and_per_segment_in_stream_order():
    class Data:
        def domain_of(self, index: int) -> str:
            return "b-dom" if index >= 2 else "a-dom"

    items = [(2, "s2"), (3, "s3"), (0, "s0"), (1, "s1")]  # domain b first
    records = [SampleRecord(f"s{i}", i, 0, 0, float(i == 0 or i == 2)) for i in range(4)]
    m = segment_metrics(Data(), items, records)
    assert m["segment_top1_01"].value == m["domain_top1_b_dom"].value == 50.0
    assert m["domain_top1_a_dom"].value == 50.0 and m["segment_top1_02"].n == 2
    assert segment_metrics(object(), items, records) == {}


def test_a_continual_run_carries_one_state_through_the_domains_and_stores_its_segments(make_host, store):
    from rlcf_bench.runner import ExecutionOptions, Runner

    host = _host(make_host)
    plan = plan_runs(host, suite="none", task="classification", datasets=["tiny-colors", "tiny-colors-dark"],
                     methods=["tda", "zero-shot"], model="tiny-clip", orders=2,
                     overrides={"stream": "continual", "n_views": 4, "limit": 4})
    assert Counter(r.method for r in plan) == {"tda": 2, "zero-shot": 1}
    assert {r.dataset for r in plan} == {"continual:tiny-colors+tiny-colors-dark"}
    runner = Runner(host, store, ExecutionOptions(device="cpu"))
    results = [runner.run(r) for r in plan]
    tda = results[0].metrics
    assert results[0].n_samples == 8  # --limit cuts every domain
    assert {"domain_top1_tiny_colors", "domain_top1_tiny_colors_dark", "segment_top1_01", "segment_top1_02",
            "state_entries"} <= set(tda)
    per_domain = (tda["domain_top1_tiny_colors"].value + tda["domain_top1_tiny_colors_dark"].value) / 2
    assert per_domain == pytest.approx(tda["top1"].value)
    # the domain order follows the order seed; both orders hold the same samples
    streams = [runner.prepare(r)[0].protocol_hash for r in plan[:2]]
    assert streams[0] != streams[1]


def test_the_dirichlet_stream_orders_a_run_by_label(make_host, store):
    from rlcf_bench.runner import ExecutionOptions, Runner

    runner = Runner(_host(make_host), store, ExecutionOptions(device="cpu"))
    spec = runner.prepare(req("tda", "tiny-colors", stream="dirichlet:0.01", order_seed=0))[0]
    from rlcf_bench_fixtures.tiny import TinyColors
    from rlcf_bench_tasks.classification import ClassificationTask

    task = ClassificationTask(TinyColors(40), spec.protocol)
    labels = [task.dataset.label(i) for i, _ in task.samples()]
    assert sorted(labels) == sorted(TinyColors(40).label(i) for i in range(40))
    assert sum(a != b for a, b in zip(labels, labels[1:])) < 12  # i.i.d. would switch about 30 times
    assert runner.run(req("tda", "tiny-colors", stream="dirichlet:0.01", order_seed=0)).n_samples == 16


def test_batch_methods_get_the_online_batch_and_refuse_to_run_without_one(make_host, store):
    from rlcf_bench.runner import ExecutionOptions, Runner

    host = _host(make_host)
    runner = Runner(host, store, ExecutionOptions(device="cpu"))
    with pytest.raises(RunnerError, match="online_batch=B"):
        runner.prepare(req("lame", "tiny-colors"))
    with pytest.raises(PlanError, match="online_batch=B"):
        plan_runs(host, suite="none", task="classification", datasets=["tiny-colors"], methods=["tent"],
                  model="tiny-clip")
    seen: list[int] = []
    from rlcf_bench_baselines.lame import Lame

    original = Lame.predict

    def spy(self, batch):
        seen.append(len(batch))
        return original(self, batch)

    Lame.predict = spy
    try:
        result = runner.run(req("lame", "tiny-colors", online_batch=6))
    finally:
        Lame.predict = original
    assert seen == [6, 6, 4] and result.n_samples == 16 and "stream_top1_100pct" in result.metrics


def test_tent_runs_on_the_stream_and_leaves_the_shared_model_as_it_found_it(make_host, store):
    import torch

    from rlcf_bench.runner import ExecutionOptions, Runner

    host = _host(make_host)
    runner = Runner(host, store, ExecutionOptions(device="cpu"))
    model = runner.session.model("tiny-clip")
    before = {k: v.clone() for k, v in model.visual.state_dict().items()}
    result = runner.run(req("tent", "tiny-colors", online_batch=8))
    assert result.n_samples == 16
    after = model.visual.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_shared_suite_is_the_union_of_its_parts(make_host):
    class Part:
        def __init__(self, name: str, dataset: str) -> None:
            self.name, self.dataset = name, dataset

        @hookimpl
        def rlcfb_register_suites(self) -> list[SuiteSpec]:
            run = SuiteRun("classification", self.dataset, "zero-shot", "tiny-clip")
            return [SuiteSpec("together", self.name, lambda methods: [run], orders=2 if self.name == "b" else 1,
                              shared=True)]

    host = make_host("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", Part("a", "tiny-colors"),
                     Part("b", "tiny-colors-dark"), SecondColors())
    suite = host.registry("suites").get("together")
    assert sorted(r.dataset for r in suite.runs([])) == ["tiny-colors", "tiny-colors-dark"] and suite.orders == 2


def test_stream_parameters_are_checked_before_anything_runs(make_host):
    host = _host(make_host)
    for key, value, message in (("stream", "dirichlet:0", "expected one of"), ("online_batch", "0", "online_batch")):
        with pytest.raises(PlanError, match=message):
            plan_runs(host, suite="none", task="classification", datasets=["tiny-colors"], methods=["tda"],
                      model="tiny-clip", overrides={key: value})


def test_the_protocols_suite_runs_the_stream_protocols_on_the_micro_domains(registry_host):
    whole = plan_runs(registry_host, suite="protocols", suite_explicit=True)
    plan = [r for r in whole if r.task == "classification"]  # the stream parts (the open-set part: its task)
    assert all(dict(r.protocol_overrides).get("online_batch") == 16 for r in whole
               if r.task == "open-set" and r.method in {"tent", "lame", "sar", "eta"})  # a batch method, batched
    by = Counter((r.method, dict(r.protocol_overrides).get("stream"), dict(r.protocol_overrides).get("online_batch"))
                 for r in plan)
    online = {m.name for m in registry_host.registry("methods") if m.mode == "online"}
    batch = {m.name for m in registry_host.registry("methods") if m.mode == "batch"}
    assert {"tda", "dmn-zs", "dpe", "boostadapter"} <= online and {"tent", "lame"} <= batch
    continual = {r.dataset for r in plan if dict(r.protocol_overrides).get("stream") == "continual"}
    assert continual == {"continual:micro-hard+micro-noise+micro-rendition+micro-resampled+micro-sketch"}
    for m in online:
        assert by[(m, "continual", None)] == 3 and by[(m, "dirichlet:0.1", None)] == 15  # 3 orders (× 5 domains)
    for m in batch:
        assert by[(m, None, 16)] == 15
    assert by[("zero-shot", "continual", None)] == 1  # the reference, order 0
