"""``rlcf-bench store merge``: stores written on several machines become one leaderboard, without
duplicates; conflicting per-sample results are reported, never silently overwritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
from rlcf_bench.store import Store


def _store_with(host, path: Path, *methods: str, limit: int = 3) -> Store:
    store = Store(f"sqlite:///{path}")
    runner = Runner(host, store, ExecutionOptions(device="cpu"))
    for method in methods:
        runner.run(RunRequest("classification", "tiny-colors", method, "tiny-clip",
                              protocol_overrides=(("limit", limit), ("n_views", 4))))
    return store


def _rows(path: Path, sql: str) -> list[tuple]:
    """Run one statement on a store file (a query's rows; an update is committed)."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute(sql).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


@pytest.fixture(scope="module")
def _built(make_host, tmp_path_factory) -> tuple[bytes, bytes]:
    """Machine A ran zero-shot; machine B ran zero-shot (the same protocol) and tpt-prompt."""
    host = make_host("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models")
    folder = tmp_path_factory.mktemp("machines")
    a, b = folder / "a.sqlite", folder / "b.sqlite"
    for path, methods in ((a, ("zero-shot",)), (b, ("zero-shot", "tpt-prompt"))):
        _store_with(host, path, *methods).engine.dispose()
        sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    return a.read_bytes(), b.read_bytes()


@pytest.fixture
def two_machines(_built, tmp_path) -> tuple[Path, Path]:
    """Fresh copies of the two machines' stores for each test."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    a.write_bytes(_built[0])
    b.write_bytes(_built[1])
    return a, b


def _run_main(capsys, *args: str) -> tuple[int, str]:
    """The console entry point (its one-line error boundary included): ``(exit code, stderr)``."""
    from rlcf_bench.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["--disable-plugin-autoload", *args])
    return int(stop.value.code or 0), capsys.readouterr().err


def _main(capsys, *args: str) -> tuple[int, str]:
    return _run_main(capsys, "store", "merge", *args)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _merge(cli, *args: str):
    return CliRunner().invoke(cli, ["store", "merge", *args])


def test_merge_copies_new_runs_once_and_skips_identical_ones(cli, two_machines):
    a, b = two_machines
    source_bytes = b.read_bytes()
    out = _merge(cli, "--db", str(a), str(b))
    assert out.exit_code == 0, out.output
    assert "added 1 run(s) (3 sample rows)" in out.output and "1 run(s) already present and identical" in out.output
    assert sorted(_rows(a, "select method, status from runs")) == [("tpt-prompt", "finished"), ("zero-shot", "finished")]
    # the copied run brings its samples and metrics, equal to the source's
    query = ("select r.method, s.sample_id, s.prediction, s.score from sample_results s join runs r on r.id = s.run_id "
             "where r.method = 'tpt-prompt' order by s.sample_id")
    assert _rows(a, query) == _rows(b, query)
    metrics = "select m.name, m.value, m.ci_low, m.ci_high from metrics m join runs r on r.id = m.run_id where r.method = 'tpt-prompt' order by m.name"
    assert _rows(a, metrics) == _rows(b, metrics) and _rows(a, metrics)
    # merging again changes nothing
    again = _merge(cli, "--db", str(a), str(b))
    assert again.exit_code == 0 and "added 0 run(s)" in again.output and "2 run(s) already present" in again.output
    assert len(_rows(a, "select id from runs")) == 2
    assert b.read_bytes() == source_bytes  # a source is only read


def test_different_results_for_the_same_protocol_are_a_reported_conflict(cli, two_machines):
    a, b = two_machines
    _rows(b, "update sample_results set prediction = 3 - prediction where sample_id = 'tiny-0001' and run_id = "
             "(select id from runs where method = 'zero-shot')")
    kept = _rows(a, "select sample_id, prediction from sample_results order by sample_id")
    out = _merge(cli, "--db", str(a), str(b))
    assert out.exit_code == 1
    assert "conflict: classification/tiny-colors/zero-shot on tiny-clip" in out.output
    assert "1 of 3 samples differ" in out.output
    assert _rows(a, "select sample_id, prediction from sample_results where run_id = "
                    "(select id from runs where method = 'zero-shot') order by sample_id") == kept
    assert ("tpt-prompt",) in _rows(a, "select method from runs")  # the rest is still merged


def test_a_failed_attempt_is_superseded_by_the_finished_run(cli, two_machines):
    a, b = two_machines
    _rows(a, "update runs set status = 'failed'")
    out = _merge(cli, "--db", str(a), str(b))
    assert out.exit_code == 0, out.output
    assert sorted(_rows(a, "select method, attempt, status from runs where method = 'zero-shot'")) == [
        ("zero-shot", 1, "failed"), ("zero-shot", 2, "finished")]


def test_a_running_attempt_is_not_touched(cli, two_machines):
    a, b = two_machines
    _rows(a, "update runs set status = 'running'")
    out = _merge(cli, "--db", str(a), str(b))
    assert out.exit_code == 1 and "is running" in out.output
    assert _rows(a, "select method, status from runs where method = 'zero-shot'") == [("zero-shot", "running")]


def test_dry_run_and_refusals_write_nothing(cli, two_machines, tmp_path, capsys):
    a, b = two_machines
    before = a.read_bytes()
    out = _merge(cli, "--db", str(a), "--dry-run", str(b))
    assert out.exit_code == 0 and "would add 1 run(s)" in out.output
    assert a.read_bytes() == before
    code, err = _main(capsys, "--db", str(a), str(a))
    assert code == 2 and "is the destination itself" in _one_line(err)
    code, err = _main(capsys, "--db", str(a), str(b), str(tmp_path / "nope.sqlite"))
    assert code == 2 and "nope.sqlite" in _one_line(err) and "does not exist" in _one_line(err)
    assert a.read_bytes() == before  # no source was merged: every source is opened before any write


def test_merge_into_a_new_store(cli, two_machines, tmp_path):
    a, b = two_machines
    merged = tmp_path / "merged.sqlite"
    out = _merge(cli, "--db", str(merged), str(a), str(b))
    assert out.exit_code == 0, out.output
    assert sorted(_rows(merged, "select method from runs")) == [("tpt-prompt",), ("zero-shot",)]
    assert _rows(merged, "select count(*) from sample_results") == [(6,)]


def test_hidden_runs_leave_reports_and_come_back(cli, two_machines, capsys):
    from rlcf_bench.store import Store

    a, b = two_machines
    store = Store(f"sqlite:///{b}", create=False)
    tpt = next(r.id for r in store.runs() if r.method == "tpt-prompt")
    out = CliRunner().invoke(cli, ["runs", "hide", str(tpt), "--reason", "obsolete", "--db", str(b)])
    assert out.exit_code == 0 and f"1 run(s) hidden: {tpt}" in out.output
    assert [r.method for r in store.runs()] == ["zero-shot"]
    assert sorted(r.method for r in store.runs(include_hidden=True)) == ["tpt-prompt", "zero-shot"]
    listed = CliRunner().invoke(cli, ["runs", "hidden", "--db", str(b)])
    assert "tpt-prompt" in listed.output and "obsolete" in listed.output
    report = CliRunner().invoke(cli, ["report", "--format", "csv", "--db", str(b)])
    assert report.exit_code == 0 and "zero-shot" in report.output and "tpt-prompt" not in report.output
    # a hidden run stays hidden when merged elsewhere
    merged = _merge(cli, "--db", str(a), str(b))
    assert merged.exit_code == 0 and [r.method for r in Store(f"sqlite:///{a}", create=False).runs()] == ["zero-shot"]
    assert CliRunner().invoke(cli, ["runs", "unhide", str(tpt), "--db", str(b)]).exit_code == 0
    assert sorted(r.method for r in store.runs()) == ["tpt-prompt", "zero-shot"]
    before = b.read_bytes()
    code, err = _run_main(capsys, "runs", "hide", "999", "--db", str(b))
    assert code == 2 and "no run with id 999" in _one_line(err) and b.read_bytes() == before
