"""``--protocol-param``/``--data-param`` are validated against what the host, the task and the
dataset declare, before anything is written; two ``--fresh`` processes make one attempt (issue 31,
case 4)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

PLUGINS = ["--disable-plugin-autoload", "-p", "rlcf_bench_tasks", "-p", "rlcf_bench_baselines", "-p", "rlcf_bench_fixtures",
           "-p", "rlcf_bench_datasets"]
RUN = ["run", *PLUGINS, "--method", "zero-shot", "--model", "tiny-clip", "--device", "cpu", "-q", "-j", "1"]
COLOURS = [*RUN, "--task", "classification", "--dataset", "tiny-colors", "--limit", "2"]


def cli(args, capsys):
    from rlcf_bench.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return info.value.code or 0, capsys.readouterr().err


BAD = {
    "unknown protocol key": ([*COLOURS, "--protocol-param", "foo=1"], "protocol parameter 'foo'"),
    "task key of another task": ([*COLOURS, "--protocol-param", "direction=t2i"], "protocol parameter 'direction'"),
    "order_seed below range": ([*COLOURS, "--protocol-param", "order_seed=-1"], "order_seed='-1': must be ≥ 0"),
    "order_seed not an int": ([*COLOURS, "--protocol-param", "order_seed=x"], "order_seed='x': not an int"),
    "direction not a choice": ([*RUN, "--task", "retrieval", "--dataset", "tiny-captions", "--protocol-param",
                                "direction=sideways"], "direction='sideways': must be one of"),
    "meteor not a bool": ([*RUN, "--task", "captioning", "--dataset", "tiny-captioning", "--model", "tiny-captioner",
                           "--protocol-param", "meteor=maybe"], "meteor='maybe': not a bool"),
    "unknown data key": ([*COLOURS, "--data-param", "colour=red"], "dataset 'tiny-colors' has no parameter 'colour'"),
    "data value not an int": ([*COLOURS, "--data-param", "n=many"], "parameter n='many': not an int"),
    "data value out of range": ([*COLOURS, "--data-param", "n=0"], "parameter n='0': must be ≥ 1"),
    "own-data: unknown encoding": ([*RUN, "--task", "classification", "--dataset", "folder:/nonexistent",
                                    "--data-param", "name_encoding=nope"], "name_encoding='nope' is not an encoding"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_parameters_are_one_line_exit_2_and_nothing_is_written(tmp_path, capsys, case):
    args, expected = BAD[case]
    db = tmp_path / "lb.sqlite"
    code, err = cli([*args, "--db", str(db)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_declared_parameters_pass(tmp_path, capsys):
    code, err = cli([*COLOURS, "--data-param", "n=8", "--protocol-param", "order_seed=3", "--db",
                     str(tmp_path / "lb.sqlite")], capsys)
    assert code == 0, err


def test_data_check_validates_parameters_too(capsys):
    code, err = cli(["data", "check", "tiny-colors", *PLUGINS, "--param", "n=-4"], capsys)
    assert code == 2 and "parameter n='-4': must be ≥ 1" in err, err


def test_two_fresh_processes_make_one_attempt_and_both_finish(tmp_path, capsys):
    db = tmp_path / "lb.sqlite"
    args = [*RUN, "--task", "classification", "--dataset", "tiny-colors", "--limit", "12", "--batch-size", "1",
            "--db", str(db)]
    code, err = cli(args, capsys)  # attempt 1, finished
    assert code == 0, err
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RLCF_BENCH_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "rlcf_bench", *args, "--fresh"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    con = sqlite3.connect(db)
    attempts = con.execute("select attempt, status, n_done from runs order by attempt").fetchall()
    assert attempts == [(1, "finished", 12), (2, "finished", 12)], attempts
    samples = con.execute("select count(*), count(distinct sample_id) from sample_results where run_id = "
                          "(select id from runs where attempt = 2)").fetchone()
    assert samples == (12, 12)  # shared by the two processes, none twice
    code, err = cli([*args, "--fresh"], capsys)  # a later --fresh command: a new attempt, as before
    assert code == 0, err
    assert con.execute("select max(attempt) from runs").fetchone() == (3,)
