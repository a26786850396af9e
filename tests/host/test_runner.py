"""The runner: a complete run, provenance, timing, resume after a killed process, errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from rlcf_bench.runner import ExecutionOptions, Runner, RunnerError, RunRequest

SLOW_METHOD = textwrap.dedent('''
    import time
    from rlcf_bench import Method, MethodSpec, Predictions, hookimpl
    from rlcf_bench.tta.prompts import class_text_features

    class Slow(Method[None]):
        """zero-shot that sleeps, so a test can kill the process mid-run"""
        name = "slow-zero-shot"
        def setup(self, ctx):
            self.ctx = ctx
            self.text = class_text_features(ctx)
        def predict(self, batch):
            import torch, torch.nn.functional as F
            time.sleep(0.4)
            with torch.no_grad():
                f = F.normalize(self.ctx.model.encode_image(batch.images).float(), dim=-1)
            return Predictions(logits=100 * f @ self.text.t())

    @hookimpl
    def rlcfb_register_methods():
        return [MethodSpec.from_method(Slow)]
''')


def zs(limit=None, **kw):
    over = (("limit", limit),) if limit else ()
    return RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip", protocol_overrides=over, **kw)


def test_a_complete_run_is_recorded_with_provenance(runner, store):
    result = runner.run(zs())
    run = store.get_run(result.run_id)
    assert run.status == "finished" and run.n_done == run.n_total == 16
    assert set(result.metrics) == {"top1", "top5", "ece", "balanced_top1", "top_class_share"}
    top1 = result.metrics["top1"]
    assert top1.ci_low <= top1.value <= top1.ci_high and top1.n == 16
    assert run.provenance["torch"] and run.provenance["python"] and "git_dirty" in run.provenance
    assert run.protocol["n_views"] == 64 and run.protocol["precision"] == "fp32"
    assert run.config_hash and run.protocol_hash and run.model_version == "seed0"
    assert any(p["name"] == "rlcf_bench_baselines.zero_shot" for p in run.plugins)
    assert run.ms_per_sample_p50 > 0 and run.peak_memory_mb > 0 and run.memory_kind == "cpu_own_peak_rss"
    rows = store.sample_rows(result.run_id)
    from rlcf_bench.runner import DEFAULT_BATCH_SIZE

    assert sum(r.warmup for r in rows) == DEFAULT_BATCH_SIZE  # the first batch is warm-up
    assert len({r.sample_id for r in rows}) == 16


def test_identical_request_reuses_the_finished_run_and_fresh_starts_a_new_attempt(host, store):
    first = Runner(host, store, ExecutionOptions(device="cpu")).run(zs(limit=4))
    again = Runner(host, store, ExecutionOptions(device="cpu")).run(zs(limit=4))
    assert again.run_id == first.run_id
    fresh = Runner(host, store, ExecutionOptions(device="cpu", fresh=True)).run(zs(limit=4))
    assert fresh.run_id != first.run_id and store.get_run(fresh.run_id).attempt == 2


def test_limited_runs_are_a_different_protocol_and_not_official(runner, store):
    a, b = runner.run(zs(limit=4)), runner.run(zs(limit=8))
    ra, rb = store.get_run(a.run_id), store.get_run(b.run_id)
    assert ra.protocol_hash != rb.protocol_hash and not ra.official


def test_results_do_not_depend_on_the_batch_size(host, store):
    preds = []
    for bs in (1, 16):
        r = Runner(host, store, ExecutionOptions(device="cpu", batch_size=bs, fresh=True)).run(zs())
        preds.append([(x.sample_id, x.prediction, x.extra["confidence"]) for x in store.sample_records(r.run_id)])
    assert [p[:2] for p in preds[0]] == [p[:2] for p in preds[1]]
    assert [p[2] for p in preds[0]] == pytest.approx([p[2] for p in preds[1]], abs=1e-5)


def test_method_option_errors_are_clear(runner):
    # the options of the run's task's implementation only (zero-shot also captions, with beams ...)
    with pytest.raises(ValueError, match=r"unknown option 'lr'; valid options: templates, underscore_prompt "
                                         r"\(method 'zero-shot' on the classification task\)"):
        runner.run(zs(method_options=(("lr", "1"),)))


def test_method_that_does_not_support_the_task(host, store):
    from rlcf_bench import DatasetSpec, hookimpl
    from rlcf_bench.plugins import PluginHost

    class RetrievalOnly:
        @hookimpl
        def rlcfb_register_datasets(self):
            return [DatasetSpec(name="captions-only", version="1", task_kinds=frozenset({"retrieval"}), build=lambda root: None)]

    h = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", RetrievalOnly()])
    with pytest.raises(RunnerError, match="has no classification split"):
        Runner(h, store).run(RunRequest("classification", "captions-only", "zero-shot", "tiny-clip"))


def test_a_bad_layout_stops_the_run_with_the_report(store, tmp_path):
    from rlcf_bench import DatasetLayoutError, DatasetSpec, LayoutReport, hookimpl
    from rlcf_bench.plugins import PluginHost

    class Layout:
        @hookimpl
        def rlcfb_register_datasets(self):
            def check(root):
                report = LayoutReport("folders", str(root))
                report.add(root / "folders" / "n01", "a folder of images", "nothing")
                return report

            return [DatasetSpec(name="folders", version="1", task_kinds=frozenset({"classification"}),
                                build=lambda root: pytest.fail("must not build"), check=check, root_name="folders")]

    h = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", Layout()])
    runner = Runner(h, store, ExecutionOptions(device="cpu", data_root=str(tmp_path)))
    with pytest.raises(DatasetLayoutError, match="expected: a folder of images"):
        runner.run(RunRequest("classification", "folders", "zero-shot", "tiny-clip"))
    assert store.runs(status=None) == []


def _cli(tmp_path, db, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RLCF_BENCH_THREADS": "1"}
    cmd = [sys.executable, "-m", "rlcf_bench", "run", "--plugins-dir", str(tmp_path / "plug"), "--disable-plugin-autoload",
           "-p", "rlcf_bench_tasks", "-p", "rlcf_bench_fixtures", "--task", "classification", "--dataset", "tiny-colors",
           "--method", "slow-zero-shot", "--model", "tiny-clip", "--data-param", "n=12", "--batch-size", "1",
           "--db", str(db), "-q", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(db):
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("select count(*) from sample_results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow  # over 20 s (kills and restarts a CLI process twice)
def test_a_killed_run_resumes_without_losing_or_double_counting(tmp_path):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "slow.py").write_text(SLOW_METHOD)
    db = tmp_path / "killed.sqlite"
    proc = _cli(tmp_path, db)
    deadline = time.time() + 120
    while _count(db) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _count(db)
    assert 3 <= stored < 12
    con = sqlite3.connect(db)
    assert con.execute("select status from runs").fetchone()[0] == "running"
    con.close()

    resumed = _cli(tmp_path, db)
    assert resumed.wait(timeout=180) == 0, resumed.communicate()
    straight = _cli(tmp_path, tmp_path / "straight.sqlite")
    assert straight.wait(timeout=180) == 0, straight.communicate()

    def rows(path):
        con = sqlite3.connect(path)
        try:
            return (con.execute("select sample_id, prediction, target from sample_results order by idx").fetchall(),
                    con.execute("select status, n_done, n_total from runs").fetchall(),
                    con.execute("select name, value from metrics order by name").fetchall())
        finally:
            con.close()

    got, want = rows(db), rows(tmp_path / "straight.sqlite")
    assert got[1] == [("finished", 12, 12)]
    assert len(got[0]) == 12 and len({r[0] for r in got[0]}) == 12
    assert got == want
