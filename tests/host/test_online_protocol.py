"""The online protocol: order seeds in the protocol hash, order-(in)dependence of results,
resume of a killed online stream, several orders per online method, and what reports show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlcf_bench.online_protocol import ORDER_SEED, expand_orders, running_accuracy, stream_metrics
from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
from rlcf_bench.types import SampleRecord

REPO = Path(__file__).resolve().parents[2]


def req(method: str, order_seed: int | None, *options: tuple[str, str]) -> RunRequest:
    over = ((ORDER_SEED, order_seed),) if order_seed is not None else ()
    return RunRequest("classification", "tiny-colors", method, "tiny-clip", method_options=tuple(options),
                      protocol_overrides=over)


def predictions(store, run_id):
    return {r.sample_id: (r.prediction, r.extra["confidence"]) for r in store.sample_records(run_id)}


def test_the_order_seed_is_in_the_protocol_hash_and_permutes_the_stream(runner):
    specs = [runner.prepare(req("tda", k))[0] for k in (0, 1)]
    assert specs[0].protocol_hash != specs[1].protocol_hash and specs[0].key != specs[1].key
    assert specs[0].protocol.param(ORDER_SEED) == 0
    from rlcf_bench_fixtures.tiny import TinyColors
    from rlcf_bench_tasks.classification import ClassificationTask

    streams = [ClassificationTask(TinyColors(16), s.protocol).samples() for s in specs]
    plain = ClassificationTask(TinyColors(16), runner.prepare(req("tda", None))[0].protocol).samples()
    assert streams[0] != streams[1] and sorted(streams[0]) == sorted(streams[1]) == plain
    limited = [ClassificationTask(TinyColors(16), s.protocol.replace(limit=5)).samples() for s in specs]
    assert limited[0] != limited[1] and sorted(limited[0]) == sorted(limited[1]) == plain[:5]  # same samples


def test_an_episodic_methods_per_sample_results_do_not_depend_on_the_order(runner, store):
    a, b = (runner.run(req("zero-shot", k)) for k in (0, 1))
    assert a.run_id != b.run_id
    assert predictions(store, a.run_id) == predictions(store, b.run_id)


def test_an_online_methods_results_depend_on_the_order_and_it_stores_its_diagnostics(runner, store):
    results = [runner.run(req("tda", k)) for k in (0, 1)]
    per_sample = [predictions(store, r.run_id) for r in results]
    assert per_sample[0].keys() == per_sample[1].keys()
    assert per_sample[0] != per_sample[1]
    metrics = results[0].metrics
    assert metrics["stream_top1_100pct"].value == pytest.approx(metrics["top1"].value)
    assert 1 <= metrics["state_entries"].value <= 4 * (3 + 2) and metrics["state_bytes"].value > 0
    assert "state_entries" not in runner.run(req("zero-shot", 0)).metrics


def test_stream_metrics_follow_the_stream_order():
    items = [(i, f"s{i}") for i in range(10)]
    scores = [1, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    records = [SampleRecord(f"s{i}", i, 0, 0, float(s)) for i, s in reversed(list(enumerate(scores)))]
    m = stream_metrics(items, records)
    assert [m[f"stream_top1_{p:03d}pct"].value for p in (10, 50, 100)] == [100.0, 40.0, 70.0]
    assert m["stream_top1_050pct"].n == 5
    assert running_accuracy([1, 0, 1, 1]) == [100.0, 50.0, 200 / 3, 75.0]


KILLED_CHILD = textwrap.dedent('''
    import os, signal, sys
    from rlcf_bench_baselines.tda import TDA
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    original, calls = TDA.predict, {"n": 0}
    def predict(self, batch):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-stream: 6 samples stored
        return original(self, batch)
    TDA.predict = predict
    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures"])
    req = RunRequest("classification", "tiny-colors", "tda", "tiny-clip", protocol_overrides=(("order_seed", 1),))
    # stores every int(argv[2]) samples (never by time: the test counts them)
    Runner(host, Store(sys.argv[1]), ExecutionOptions(device="cpu", stream_flush=int(sys.argv[2]),
                                                      stream_flush_s=1e9)).run(req)
''')


@pytest.mark.parametrize(("flush", "stored"), [(3, 6), (16, 0)])
def test_an_online_run_killed_mid_stream_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path, host, flush, stored):
    """SIGKILL at the 7th sample: what was stored stays (6 with a store every 3 samples; none with
    every 16), the rest is recomputed after replaying the stored prefix: the same rows."""
    from rlcf_bench.store import Store

    killed = Store(f"sqlite:///{tmp_path / 'killed.sqlite'}")
    paths = [str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, killed.url, str(flush)], env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert len(killed.done_sample_ids(1)) == stored and killed.get_run(1).status == "running"

    request = RunRequest("classification", "tiny-colors", "tda", "tiny-clip", protocol_overrides=((ORDER_SEED, 1),))
    resumed = Runner(host, killed, ExecutionOptions(device="cpu")).run(request)
    straight_store = Store(f"sqlite:///{tmp_path / 'straight.sqlite'}")
    straight = Runner(host, straight_store, ExecutionOptions(device="cpu")).run(request)
    assert predictions(killed, resumed.run_id) == predictions(straight_store, straight.run_id)
    for name in ("top1", "stream_top1_010pct", "stream_top1_050pct", "state_entries", "state_bytes"):
        assert resumed.metrics[name].value == straight.metrics[name].value, name


def test_orders_plan_several_streams_for_online_methods_and_one_for_episodic_ones():
    from rlcf_bench.planning import plan_runs
    from rlcf_bench.plugins import PluginHost

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures",
                                             "rlcf_bench_micro"])
    plan = plan_runs(host, suite="micro", methods=["tda", "zero-shot"], datasets=["micro-hard"])
    seeds = {(r.method, dict(r.protocol_overrides)[ORDER_SEED]) for r in plan}
    assert seeds == {("tda", 0), ("tda", 1), ("tda", 2), ("zero-shot", 0)}  # the micro suite: 3 orders
    plan = plan_runs(host, suite="micro", methods=["zero-shot"], datasets=["micro-hard"], orders=5)
    assert [dict(r.protocol_overrides)[ORDER_SEED] for r in plan] == [0]  # same hash as in the whole suite
    full = plan_runs(host, suite="micro")
    assert all(ORDER_SEED not in dict(r.protocol_overrides) for r in full if r.task != "classification")
    explicit = expand_orders([req("tda", 7)], 3, lambda r: True, lambda r: True)
    assert [dict(r.protocol_overrides)[ORDER_SEED] for r in explicit] == [7]
    with pytest.raises(ValueError, match="orders"):
        expand_orders([], 0, bool, bool)


def test_reports_show_the_spread_across_orders_and_the_stream_curve(runner, store):
    from rlcf_bench import report

    for k in (0, 1, 2):
        runner.run(req("tda", k))
    runner.run(req("zero-shot", 0))
    rows = report.build_rows(store)
    tda = [r for r in rows if r.method == "tda"]
    assert len(tda) == 1  # the other orders are summarised in the order-0 row, not listed
    spread = tda[0].orders
    values = [store.metrics_of(i)["top1"].value for i in spread.run_ids]
    assert spread.order_seeds == (0, 1, 2) and spread.mean == pytest.approx(sum(values) / 3)
    assert tda[0].ranked_with_main and tda[0].group == next(r for r in rows if r.method == "zero-shot").group
    data = json.loads(report.render(store, "json"))
    assert next(r for r in data if r["method"] == "tda")["orders"]["n_orders"] == 3
    assert "stream_top1_010pct" in next(r for r in data if r["method"] == "tda")["metrics"]
    csv_text = report.render(store, "csv")
    assert "orders_mean" in csv_text.splitlines()[0]
    page = report.render(store, "html")
    assert page.count("accuracy along the stream") == 1
    assert "3 stream orders" in report.render(store, "markdown")


def test_method_supplied_text_is_checked_or_escaped_before_a_report():
    from rlcf_bench.online_protocol import state_metrics
    from rlcf_bench.report.charts import LineItem, line_chart

    class Bad:
        def state_size(self):
            return {"=cmd|' /c calc'!A0": 1}

    with pytest.raises(ValueError, match="state_size"):
        state_metrics(Bad())
    svg = line_chart("<b>title</b>", [LineItem("<script>alert(1)</script>", "#000000", [(50.0, 10.0), (100.0, 20.0)])],
                     "x", "y")
    assert "<script>" not in svg and "<b>" not in svg and "&lt;script&gt;" in svg
