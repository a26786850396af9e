"""Four processes write one store at once: same or different commands, new or existing store,
SQLite here and PostgreSQL in test_store_postgres.py. Every run is stored once and completely,
every process succeeds, and none marks another's run failed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

N = 4
# Imports happen before the gate, so the four processes hit the store at the same moment.
GATED_MAIN = """
import os, sys, time
import torch, sqlalchemy
from rlcf_bench.cli import main
gate = sys.argv[1]
while not os.path.exists(gate):
    time.sleep(0.01)
main(sys.argv[2:])
"""
BASE = ["run", "--disable-plugin-autoload", "-p", "rlcf_bench_tasks", "-p", "rlcf_bench_baselines", "-p", "rlcf_bench_fixtures",
        "-p", "rlcf_bench_datasets", "--task", "classification", "--dataset", "tiny-colors", "--model", "tiny-clip",
        "--device", "cpu", "--batch-size", "1", "-q"]


def run_together(tmp_path: Path, db: str, commands: list[list[str]], timeout: float = 240) -> list[tuple[int, str]]:
    """Start one process per command, release them at once, return (exit code, stderr) each."""
    gate = tmp_path / f"gate-{time.monotonic_ns()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RLCF_BENCH_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", GATED_MAIN, str(gate), *BASE, "--db", db, *cmd], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in commands]
    time.sleep(0.5)
    gate.touch()
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def rows(db: str, sql: str) -> list[tuple]:
    """Run ``sql`` on the store ``db`` (a SQLite path or a SQLAlchemy URL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db if "://" in db else f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def check_store(rows, expected: dict[int, int]) -> None:
    """``rows``: (run_id, status, n_done, n_total, n_sample_rows, n_distinct_samples, n_metrics) per run;
    ``expected``: n_total → how many runs of that size."""
    sizes = sorted(r[3] for r in rows)
    assert sizes == sorted(n for n, k in expected.items() for _ in range(k)), rows
    for _run_id, status, n_done, n_total, n_rows, n_distinct, n_metrics in rows:
        assert status == "finished", rows
        assert n_done == n_total == n_rows == n_distinct, rows
        assert n_metrics > 0, rows


RUN_SQL = ("select r.id, r.status, r.n_done, r.n_total, "
           "(select count(*) from sample_results s where s.run_id = r.id), "
           "(select count(distinct sample_id) from sample_results s where s.run_id = r.id), "
           "(select count(*) from metrics m where m.run_id = r.id) from runs r order by r.id")

def zero_shot(limit: int) -> list[str]:
    return ["--method", "zero-shot", "--limit", str(limit)]


def assert_all_ok(results: list[tuple[int, str]]) -> None:
    for code, err in results:
        assert code == 0, err
        assert "Traceback" not in err and "error" not in err.lower(), err


def four_writers(tmp_path: Path, db: str) -> None:
    """Round 1, a new store: two identical commands and two different ones at once. Round 2, the
    existing store: two repeat a stored run, two share a new one."""
    assert_all_ok(run_together(tmp_path, db, [zero_shot(6), zero_shot(6), zero_shot(3), zero_shot(4)]))
    check_store(rows(db, RUN_SQL), {6: 1, 3: 1, 4: 1})
    assert_all_ok(run_together(tmp_path, db, [zero_shot(6), zero_shot(6), zero_shot(7), zero_shot(7)]))
    check_store(rows(db, RUN_SQL), {6: 1, 3: 1, 4: 1, 7: 1})
    assert rows(db, "select count(*) from claims") == [(0,)]
    # references were stored once each despite four simultaneous upserts
    dup = rows(db, 'select count(*) from (select task, dataset, method, model, reward_model, metric, source, '
                   'count(*) c from "references" group by 1,2,3,4,5,6,7 having count(*) > 1) t')
    assert dup == [(0,)]


@pytest.mark.slow  # over 20 s (four CLI processes)
def test_four_writers_lose_nothing_sqlite(tmp_path):
    four_writers(tmp_path, str(tmp_path / "lb.sqlite"))


@pytest.mark.slow
def test_four_writers_lose_nothing_postgresql(tmp_path, postgres_url):
    four_writers(tmp_path, postgres_url)
