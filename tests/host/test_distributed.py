"""Sharing runs among processes: shards by sample id, whole streams, the ranks' exchanges, torchrun.

The in-process tests run the ranks of a job as threads over a stand-in for the process group; the
torchrun tests launch real processes (gloo on CPU) through the command line.

"Equal to one process" means what it means for batch sizes (test_runner): the same predictions,
targets and scores, and float values (confidences, hence ECE) equal up to the rounding that a
different batch composition brings (a shard batches other samples together).
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest
from test_stateful_resume import Plugin as StreamPlugin  # tests/host is on sys.path (no package)

from rlcf_bench import Method, MethodSpec, Predictions, hookimpl
from rlcf_bench.distributed import RankRunner, _open_store_everywhere, assign, carries_state
from rlcf_bench.plugins import PluginHost
from rlcf_bench.runner import ExecutionOptions, Runner, RunnerError, RunRequest
from rlcf_bench.sharding import Launch, Shard, sample_slot
from rlcf_bench.store import Store

REPO = Path(__file__).resolve().parents[2]
TPT = RunRequest("classification", "tiny-colors", "tpt-prompt", "tiny-clip", protocol_overrides=(("n_views", 4),))
ZS = RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip")
STREAM = RunRequest("classification", "tiny-colors", "stream-counter", "tiny-clip")


def rows(store: Store, run_id: int) -> list[tuple]:
    return [(r.sample_id, r.idx, r.prediction, r.target, r.score) for r in store.sample_rows(run_id)]


def close(x: float | None) -> object:
    """Equal up to batch-composition rounding; ``None`` (a metric stored without an interval) exactly."""
    return x if x is None else pytest.approx(x, rel=1e-6)


def same_metrics(store: Store, run_id: int, want_store: Store, want_id: int) -> bool:
    got, want = store.metrics_of(run_id), want_store.metrics_of(want_id)
    return bool(want) and {k: (v.value, v.ci_low, v.ci_high, v.n) for k, v in got.items()} == {
        k: (close(v.value), close(v.ci_low), close(v.ci_high), v.n) for k, v in want.items()}


# ------------------------------------------------------------------ shards
@pytest.mark.parametrize("text, index, count", [("0/1", 0, 1), ("3/4", 3, 4), (" 1 / 2 ", 1, 2)])
def test_shard_parses_k_of_n(text, index, count):
    assert Shard.parse(text) == Shard(index, count)


@pytest.mark.parametrize("text, why", [("4/4", "0 <= K < N"), ("1/0", "N >= 1"), ("-1/2", "expected K/N"),
                                       ("1", "expected K/N"), ("a/b", "expected K/N"), ("1/2/3", "expected K/N")])
def test_a_bad_shard_is_a_one_line_error(text, why):
    with pytest.raises(ValueError, match=why) as info:
        Shard.parse(text)
    assert "\n" not in str(info.value)


def test_the_cli_refuses_a_bad_shard_before_anything_is_written(tmp_path):
    db = tmp_path / "lb.sqlite"
    proc = subprocess.run([sys.executable, "-m", "rlcf_bench", "run", "--shard", "2/2", "--db", str(db), "-q"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --shard '2/2': expected 0 <= K < N (the shards of 2 are 0/2 ... 1/2)"]
    assert not db.exists()


def test_shards_partition_the_samples_evenly_and_stably():
    ids = [f"sample-{i:05d}" for i in range(2000)]
    shards = [Shard(k, 4) for k in range(4)]
    owners = [[s.index for s in shards if s.takes_sample(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)  # each sample has exactly one shard
    sizes = [sum(o == [k] for o in owners) for k in range(4)]
    assert all(abs(n - 500) < 75 for n in sizes), sizes
    # the slot is a property of the id alone: the same in a fresh interpreter with another hash seed
    code = "from rlcf_bench.sharding import sample_slot; print([sample_slot(f'sample-{i:05d}', 4) for i in range(50)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": "", **_pythonpath()}).stdout
    assert out.strip() == str([sample_slot(i, 4) for i in ids[:50]])


def _pythonpath() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME", "HF_HUB_OFFLINE")}


# ------------------------------------------------------------------ --shard K/N (no process group)
def stream_host() -> PluginHost:
    return PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_fixtures",
                                             "rlcf_bench_models", StreamPlugin()])


def test_n_shards_in_any_order_equal_one_run(tmp_path):
    host = stream_host()
    straight_store = Store(f"sqlite:///{tmp_path / 'straight.sqlite'}")
    straight = Runner(host, straight_store, ExecutionOptions(device="cpu")).run(TPT)
    sharded = Store(f"sqlite:///{tmp_path / 'sharded.sqlite'}")
    order = [2, 0, 1]
    random.Random(7).shuffle(order)
    stored = []
    for n, k in enumerate(order, 1):
        result = Runner(host, sharded, ExecutionOptions(device="cpu", batch_size=3)).run(TPT, Shard(k, 3))
        stored.append(len(sharded.done_sample_ids(result.run_id)))
        if n < 3:  # a run is finalised only by the shard that completes it
            assert result.status != "finished" and sharded.metrics_of(result.run_id) == {}
    assert result.status == "finished" and stored[-1] == 16 and stored[0] < stored[1] < 16
    assert rows(sharded, result.run_id) == rows(straight_store, straight.run_id)
    assert same_metrics(sharded, result.run_id, straight_store, straight.run_id)
    assert len(sharded.runs(status=None)) == 1  # the shards shared one stored run


def test_a_stream_is_never_split(tmp_path):
    host = stream_host()
    assert assign(host, [STREAM, ZS], Shard(0, 2)) == [(ZS, Shard(0, 2)), (STREAM, None)]
    assert assign(host, [STREAM, ZS], Shard(1, 2)) == [(ZS, Shard(1, 2))]
    straight_store = Store(f"sqlite:///{tmp_path / 'straight.sqlite'}")
    straight = Runner(host, straight_store, ExecutionOptions(device="cpu")).run(STREAM)
    store = Store(f"sqlite:///{tmp_path / 'sharded.sqlite'}")
    # handed a shard anyway (state carrying found only at set-up): shard 0 computes the whole stream
    other = Runner(host, store, ExecutionOptions(device="cpu")).run(STREAM, Shard(1, 2))
    assert store.done_sample_ids(other.run_id) == set()
    result = Runner(host, store, ExecutionOptions(device="cpu")).run(STREAM, Shard(0, 2))
    assert result.status == "finished" and rows(store, result.run_id) == rows(straight_store, straight.run_id)


def test_which_runs_carry_state_is_known_before_the_run(host):
    img = RunRequest("classification", "tiny-colors", "rlcf-image", "tiny-clip", reward_model="tiny-clip")
    assert not carries_state(host, img)
    assert carries_state(host, RunRequest(**{**img.__dict__, "method_options": (("momentum", "true"),)}))
    ret = RunRequest("retrieval", "tiny-captions", "rlcf", "tiny-clip", reward_model="tiny-clip")
    assert not carries_state(host, ret)  # a method dispatched per task answers for the run's task
    assert carries_state(host, RunRequest(**{**ret.__dict__, "method_options": (("momentum", "true"),)}))
    online = [spec.name for spec in host.registry("methods") if not spec.episodic]
    assert online and all(carries_state(host, RunRequest("classification", "tiny-colors", name, "tiny-clip"))
                          for name in online)  # TDA and the other online methods: always a stream


# ------------------------------------------------------------------ the ranks' exchanges (threads)
class ThreadGroup:
    """The process group's two collectives among threads of one process."""

    def __init__(self, slots: list, barrier: threading.Barrier, rank: int) -> None:
        self.launch = Launch(rank=rank, world=len(slots), local_rank=rank, local_world=len(slots))
        self.slots, self.barrier = slots, barrier

    def _exchange(self, obj):
        self.slots[self.launch.rank] = obj
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out

    def broadcast(self, obj):
        return self._exchange(obj)[0]

    def gather(self, obj):
        return self._exchange(obj)


FAIL_ID: list[str] = []


class FailOn(Method[None]):
    """zero-shot-like, but fails on one chosen sample (so on the rank that owns it)"""

    name = "fail-on"
    max_batch = 4

    def setup(self, ctx):
        self.ctx = ctx

    def predict(self, batch):
        import torch

        if FAIL_ID and FAIL_ID[0] in batch.sample_ids:
            raise RuntimeError("boom")
        return Predictions(logits=torch.zeros(len(batch), len(self.ctx.classnames)))


class FailPlugin:
    @hookimpl
    def rlcfb_register_methods(self):
        return [MethodSpec.from_method(FailOn)]


def run_ranks(tmp_path, requests, world=2):
    """Run ``requests`` as ``world`` ranks (threads); per rank the (status or error) of each run."""
    store_url = f"sqlite:///{tmp_path / 'ranks.sqlite'}"
    Store(store_url)
    slots, barrier = [None] * world, threading.Barrier(world, timeout=120)
    outcomes: list[list[str]] = [[] for _ in range(world)]

    runners = []
    for r in range(world):  # models load here, one at a time: their seeded init uses torch's global generator
        host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", FailPlugin()])
        runners.append(RankRunner(host, Store(store_url), ExecutionOptions(device="cpu"), ThreadGroup(slots, barrier, r)))
        runners[-1].session.model("tiny-clip")

    def rank(r: int) -> None:
        for req in requests:
            try:
                outcomes[r].append(runners[r].run(req, Shard(r, world)).status)
            except (RunnerError, RuntimeError) as exc:
                outcomes[r].append(str(exc))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return Store(store_url), outcomes


def test_ranks_share_a_run_and_rank_0_finalises_it(tmp_path):
    store, outcomes = run_ranks(tmp_path, [ZS, ZS])  # the second finds the finished run
    assert outcomes == [["finished", "finished"], ["finished", "finished"]]
    straight = Store(f"sqlite:///{tmp_path / 'straight.sqlite'}")
    want = Runner(stream_host(), straight, ExecutionOptions(device="cpu")).run(ZS)
    assert rows(store, 1) == rows(straight, want.run_id) and same_metrics(store, 1, straight, want.run_id)
    assert len(store.runs(status=None)) == 1


def test_a_failing_rank_is_named_and_the_ranks_go_on_together(tmp_path):
    failing = RunRequest("classification", "tiny-colors", "fail-on", "tiny-clip")
    FAIL_ID[:] = [next(i for i in _tiny_ids() if sample_slot(i, 2) == 1)]  # a sample of rank 1
    try:
        store, outcomes = run_ranks(tmp_path, [failing, ZS])
    finally:
        FAIL_ID.clear()
    assert "boom" in outcomes[1][0]
    assert "rank 1: RuntimeError: boom" in outcomes[0][0] and "not finalised" in outcomes[0][0]
    assert [o[1] for o in outcomes] == ["finished", "finished"]  # the next run ran on both ranks
    failed_run = store.runs(status=None, method="fail-on")[0]
    assert store.metrics_of(failed_run.id) == {} and failed_run.status != "finished"
    kept = store.done_sample_ids(failed_run.id)
    assert kept and all(sample_slot(i, 2) == 0 for i in kept)  # rank 0's samples stay stored for a resume


def _tiny_ids() -> list[str]:
    runner = Runner(stream_host(), None, ExecutionOptions(device="cpu"))  # type: ignore[arg-type]  # no store needed
    spec, task_spec, ds_spec, _ = runner.prepare(ZS)
    return [sid for _, sid in task_spec.build(runner.session.dataset(ds_spec, {}), spec.protocol).samples()]


class FakeRankGroup:
    """Rank 1 of two, rank 0 having opened the store fine on another host."""

    launch = Launch(rank=1, world=2, local_rank=1, local_world=2)

    def broadcast(self, obj):
        return None

    def gather(self, obj):
        return [("node-a", None), obj]


def test_a_rank_that_cannot_reach_the_store_is_named(tmp_path):
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(click.ClickException, match=r"rank 1 on .* cannot use the store: StoreError: .*a-folder — "
                                                   r"is a folder .*\(nothing was run"):
        _open_store_everywhere(FakeRankGroup(), str(tmp_path / "a-folder"), lambda s: None)


def test_several_nodes_need_a_server_database():
    from rlcf_bench.distributed import check_store_for

    nodes = Launch(rank=0, world=8, local_rank=0, local_world=4)
    with pytest.raises(click.UsageError, match="several nodes .* postgresql"):
        check_store_for(nodes, "sqlite:///lb.sqlite")
    check_store_for(nodes, "postgresql+pg8000://u@h/db")
    check_store_for(Launch(rank=0, world=4, local_rank=0, local_world=4), "sqlite:///lb.sqlite")
    assert Launch.from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert Launch.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}).several_nodes


# ------------------------------------------------------------------ torchrun, real processes
def torchrun(tmp_path: Path, db: Path, *args: str, nproc: int = 2, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           *extra, "-m", "rlcf_bench", "run", *args, "--device", "cpu", "--db", str(db), "-q"]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    """Wait for ``proc``; on a timeout end it (and its workers) rather than leave it running."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"timed out: {err[-2000:]}")
    return proc.returncode, err


def stored(db: Path) -> tuple[list, list, list]:
    con = sqlite3.connect(db)
    try:
        return (con.execute("select r.method, s.sample_id, s.idx, s.prediction, s.target, s.score from sample_results s "
                            "join runs r on r.id = s.run_id order by r.method, s.idx").fetchall(),
                con.execute("select method, status, n_done, n_total from runs order by method").fetchall(),
                con.execute("select r.method, m.name, m.value, m.ci_low, m.ci_high, m.n from metrics m "
                            "join runs r on r.id = m.run_id order by r.method, m.name").fetchall())
    finally:
        con.close()


def test_torchrun_with_two_ranks_stores_the_rows_of_one_process(tmp_path):
    args = ("--task", "classification", "--dataset", "tiny-colors", "--model", "tiny-clip", "--method", "zero-shot",
            "--method", "tpt-prompt", "--views", "4", "--limit", "12")
    code, err = finish(torchrun(tmp_path, tmp_path / "ranks.sqlite", *args))
    assert code == 0, err
    host = stream_host()  # the same runs in this one process
    single = Store(f"sqlite:///{tmp_path / 'single.sqlite'}")
    for method in ("zero-shot", "tpt-prompt"):
        req = RunRequest("classification", "tiny-colors", method, "tiny-clip",
                         protocol_overrides=(("limit", 12), ("n_views", 4)))
        Runner(host, single, ExecutionOptions(device="cpu")).run(req)
    got, want = stored(tmp_path / "ranks.sqlite"), stored(tmp_path / "single.sqlite")
    assert got[1] == [("tpt-prompt", "finished", 12, 12), ("zero-shot", "finished", 12, 12)]
    assert_same_store(got, want)


def assert_same_store(got: tuple[list, list, list], want: tuple[list, list, list]) -> None:
    """Equal rows and runs; metrics equal up to batch-composition rounding (module docstring)."""
    assert got[:2] == want[:2]
    assert [m[:2] for m in got[2]] == [m[:2] for m in want[2]]
    assert [m[2:] for m in got[2]] == [tuple(close(x) for x in m[2:]) for m in want[2]]


def _worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with ``RANK=rank`` among ``launcher``'s children."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(next(line for line in status.read_text().splitlines() if line.startswith("PPid:")).split()[1])
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(status.parent.name)
    return None


@pytest.mark.slow
def test_a_killed_rank_loses_nothing_and_a_relaunch_computes_only_the_missing_samples(tmp_path):
    import os
    import signal
    import time

    from test_runner import SLOW_METHOD

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "slow.py").write_text(SLOW_METHOD)
    db = tmp_path / "killed.sqlite"
    args = ("--plugins-dir", str(tmp_path / "plug"), "--task", "classification", "--dataset", "tiny-colors",
            "--method", "slow-zero-shot", "--model", "tiny-clip", "--batch-size", "1")

    def count() -> int:
        try:
            with sqlite3.connect(db, timeout=5) as con:
                return con.execute("select count(*) from sample_results").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    proc = torchrun(tmp_path, db, *args)
    deadline = time.time() + 300
    while count() < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    victim = _worker_pid(proc.pid, 1)
    assert proc.poll() is None and victim is not None, proc.communicate()
    os.kill(victim, signal.SIGKILL)
    code, err = finish(proc)
    assert code != 0 and "rank" in err  # torchrun names the failed rank and stops the others
    with sqlite3.connect(db) as con:
        before = con.execute("select id, sample_id, prediction from sample_results").fetchall()
        assert con.execute("select status from runs").fetchall() != [("finished",)]
        assert con.execute("select count(*) from metrics").fetchone()[0] == 0
    assert 3 <= len(before) < 16

    code, err = finish(torchrun(tmp_path, db, *args))  # the same command again
    assert code == 0, err
    with sqlite3.connect(db) as con:
        after = con.execute("select id, sample_id, prediction from sample_results").fetchall()
    assert set(before) <= set(after)  # nothing stored was lost or recomputed
    assert len(after) == 16 and len({r[1] for r in after}) == 16
    assert min(r[0] for r in set(after) - set(before)) > max(r[0] for r in before)  # only the missing ones
    got = stored(db)
    assert got[1] == [("slow-zero-shot", "finished", 16, 16)] and {m[1] for m in got[2]} == {"top1", "top5", "ece", "balanced_top1", "top_class_share"}


@pytest.mark.slow
def test_rlcf_prompt_on_two_ranks_stores_the_rows_of_one_process(tmp_path):
    """The issue's acceptance command, on the embedded suite's hardest domain."""
    args = ("--method", "rlcf-prompt", "--dataset", "micro-hard", "--limit", "40")
    code, err = finish(torchrun(tmp_path, tmp_path / "ranks.sqlite", *args), timeout=1800)
    assert code == 0, err
    single = subprocess.run([sys.executable, "-m", "rlcf_bench", "run", *args, "--device", "cpu", "--db",
                             str(tmp_path / "single.sqlite"), "-q"], capture_output=True, text=True, timeout=1800)
    assert single.returncode == 0, single.stderr
    got, want = stored(tmp_path / "ranks.sqlite"), stored(tmp_path / "single.sqlite")
    assert got[1] == [("rlcf-prompt", "finished", 40, 40)]
    assert_same_store(got, want)


@pytest.mark.slow
def test_ranks_that_cannot_reach_the_store_stop_with_the_rank_named(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+pg8000://nobody@127.0.0.1:{port}/leaderboard"
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "rlcf_bench", "run", "--method", "zero-shot", "--dataset", "tiny-colors",
                             "--task", "classification", "--model", "tiny-clip", "--device", "cpu", "--db", url, "-q"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, err = finish(proc)
    assert code != 0
    lines = [line for line in err.splitlines() if "cannot use the store" in line]
    assert len(lines) == 2  # every rank says so, in one line
    assert all(line.startswith(f"error: rank 0 on {socket.gethostname()} cannot use the store: ") and
               "nothing was run" in line for line in lines), lines
