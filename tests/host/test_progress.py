"""The one progress display of ``rlcf-bench run``: its numbers, the forwarding from worker
processes, and that it stays out of non-terminal output."""

from __future__ import annotations

import io
import queue
from types import SimpleNamespace

from rlcf_bench.progress import ProgressForwarder, SuiteProgress, drain


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_and_eta_count_unstarted_runs_at_the_mean_size() -> None:
    clock = FakeClock()
    p = SuiteProgress(4, enabled=False, clock=clock)
    assert p.eta_seconds() is None and "ETA ?" in p.text()
    p.start(1, 20, 0)
    p.start(2, 40, 10)  # resumed: 30 samples left to execute
    clock.t += 10.0
    p.step(1, 20)
    p.step(2, 10)
    p.end(1)
    p.run_done(1)
    assert p.rate == 3.0  # 30 samples in 10 s
    # run 2 has 20 left; two runs not started, each counted as the mean of (20, 30) = 25
    assert p.remaining_samples() == 20 + 2 * 25
    assert p.eta_seconds() == 70 / 3.0
    assert p.text() == "runs 1/4 · 30 samples · 3.0 samples/s · ETA 0:23"


def test_worker_events_reach_the_parent_display() -> None:
    events: queue.Queue = queue.Queue()
    fwd = ProgressForwarder(events)
    fwd.rlcfb_run_start(7, None, 10, 0)
    fwd.rlcfb_run_step(SimpleNamespace(run_id=7, sample_ids=("a", "b", "c")))
    fwd.rlcfb_run_finish(SimpleNamespace(run_id=7))
    fwd.rlcfb_run_error(SimpleNamespace(run_id=None))  # failed before it had an id: nothing to end
    p = SuiteProgress(2, enabled=False)
    drain(events, p)
    assert p.samples == 3 and p.remaining_samples() == 10  # run 7 ended; one run left at mean size 10
    assert events.empty()
    p.run_done(7)
    p.run_done(99)  # reused from the store: never started, nothing left to do
    assert p.remaining_samples() == 0


def test_no_display_when_not_a_terminal() -> None:
    out = io.StringIO()
    p = SuiteProgress(1, file=out)
    p.start(1, 5, 0)
    p.step(1, 5)
    p.write("a result line")
    p.close()
    assert out.getvalue() == "a result line\n"


def test_quiet_run_prints_nothing(cli, tmp_path) -> None:
    from click.testing import CliRunner

    args = ["run", "--task", "classification", "--dataset", "tiny-colors", "--method", "zero-shot", "--model",
            "tiny-clip", "--limit", "2", "--db", str(tmp_path / "lb.sqlite"), "--quiet", "-j", "1"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert out.output == ""


def test_quiet_stderr_hides_child_chatter_and_replays_it_on_failure(capfd) -> None:
    import subprocess
    import sys

    import pytest

    from rlcf_bench.quiet import quiet_stderr

    chatter = [sys.executable, "-c", "import sys; sys.stderr.write('tokenized 28 tokens\\n')"]
    with quiet_stderr():
        subprocess.run(chatter, check=True)
    assert "tokenized" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), quiet_stderr():
        subprocess.run(chatter, check=True)
        raise RuntimeError("the real error")
    assert "tokenized 28 tokens" in capfd.readouterr().err
