"""End to end through the Runner: per-query rows, batch-size independence, resume, Karpathy files."""

from __future__ import annotations

import pytest

from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest

RLCF_OPTS = (("steps", "1"), ("lr", "5e-3"))


def req(method="zero-shot", dataset="tiny-captions", limit=None, **kw):
    over = (("limit", limit),) if limit else ()
    reward = "tiny-clip" if method == "rlcf" else None
    opts = RLCF_OPTS if method == "rlcf" else ()
    return RunRequest("retrieval", dataset, method, "tiny-clip", reward_model=reward, method_options=opts,
                      protocol_overrides=over, **kw)


def rows_by_id(store, run_id):
    return {r.sample_id: r for r in store.sample_records(run_id)}


def test_zero_shot_stores_one_row_per_query_and_does_not_depend_on_the_batch_size(rhost, store):
    results = [Runner(rhost, store, ExecutionOptions(device="cpu", batch_size=bs, fresh=True)).run(req())
               for bs in (64, 5)]  # 5: batches straddle the i2t/t2i boundary (8 images, 13 captions)
    a, b = (rows_by_id(store, r.run_id) for r in results)
    assert len(a) == 8 + 13 and set(a) == {f"i2t:tiny-{i:04d}" for i in range(8)} | {f"t2i:{t}" for t in range(13)}
    assert {k: (v.prediction, v.extra["top1"]) for k, v in a.items()} == {k: (v.prediction, v.extra["top1"]) for k, v in b.items()}
    assert a["i2t:tiny-0001"].target == [1, 2] and a["t2i:2"].target == 1
    m = results[0].metrics
    assert set(m) == {f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)} | {"i2t_mean", "t2i_mean", "r_mean", "rsum"}
    assert m["i2t_r1"].n == 8 and m["t2i_r1"].n == 13
    assert m["t2i_r1"].value == pytest.approx(100 * sum(r.prediction == 0 for k, r in a.items() if k[0] == "t") / 13)


def test_rlcf_run_stores_ranks_and_resumes_to_the_same_result(rrunner, store, monkeypatch):
    from rlcf_bench_tasks.retrieval import RetrievalTask

    straight = rrunner.run(req("rlcf", limit=2))
    rows = rows_by_id(store, straight.run_id)
    assert sorted(rows) == ["i2t:tiny-0000", "i2t:tiny-0001", "t2i:0", "t2i:1"]
    assert all(r.extra["k"] in (8, 13) and "reward_last" in r.extra for r in rows.values())

    original, calls = RetrievalTask.make_batch, {"n": 0}

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    monkeypatch.setattr(RetrievalTask, "make_batch", interrupted)
    rrunner.options.fresh = True  # a second attempt of the same run, killed after two queries
    with pytest.raises(KeyboardInterrupt):
        rrunner.run(req("rlcf", limit=2))
    monkeypatch.setattr(RetrievalTask, "make_batch", original)
    rrunner.options.fresh = False
    assert len(store.sample_records(straight.run_id + 1)) == 2
    resumed = rrunner.run(req("rlcf", limit=2))
    assert resumed.run_id == straight.run_id + 1 and resumed.status == "finished"
    again = rows_by_id(store, resumed.run_id)
    assert {k: v.prediction for k, v in again.items()} == {k: v.prediction for k, v in rows.items()}
    assert {k: v.value for k, v in resumed.metrics.items()} == {k: v.value for k, v in straight.metrics.items()}


def test_karpathy_files_run_end_to_end(rhost, store, karpathy_root):
    runner = Runner(rhost, store, ExecutionOptions(device="cpu", data_root=str(karpathy_root)))
    coco = runner.run(req(dataset="coco-retrieval"))
    rows = rows_by_id(store, coco.run_id)
    first = "i2t:val2014/COCO_val2014_000000391895.jpg"
    assert sorted(rows) == sorted([first, "i2t:val2014/COCO_val2014_000000391896.jpg",
                                   "i2t:val2014/COCO_val2014_000000391897.jpg", "t2i:0", "t2i:1", "t2i:2", "t2i:3"])
    assert rows[first].target == [0] and rows["i2t:val2014/COCO_val2014_000000391896.jpg"].target == [1, 2]
    assert rows["t2i:3"].target == 2 and coco.metrics["t2i_r10"].value == 100.0  # 3 images: always in the top 10
    flickr = runner.run(req(dataset="flickr30k-retrieval"))
    assert flickr.metrics["i2t_r1"].n == 2 and flickr.metrics["t2i_r1"].n == 10


def test_methods_declare_their_tasks(rhost):
    from click.testing import CliRunner

    from rlcf_bench.cli import build_cli

    methods = rhost.registry("methods")
    assert methods.tasks_of("zero-shot") == {"classification", "retrieval", "captioning"}
    assert methods.tasks_of("rlcf") == {"retrieval", "captioning"}
    assert all("reward_model" in methods.get("rlcf", t).requires for t in ("retrieval", "captioning"))
    assert all(methods.get(n).tasks == {"classification"} for n in methods.names("tpt-*"))
    out = CliRunner().invoke(build_cli(rhost), ["ls", "methods"]).output
    line = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert "tasks=captioning,retrieval" in line["rlcf"] and "tasks=classification " in line["tpt-prompt"] + " "


def test_retrieval_modules_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, rlcf_bench_tasks.retrieval_common, rlcf_bench_tasks.retrieval, rlcf_bench_rlcf._retrieval, rlcf_bench_rlcf.rlcf, "
            "rlcf_bench_baselines.zero_shot; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
