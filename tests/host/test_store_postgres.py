"""The store on PostgreSQL: a private cluster on loopback, started by the test (skipped where
PostgreSQL's server binaries or the pg8000 driver are missing)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url():
    pytest.importorskip("pg8000", reason="the pg8000 driver is not installed")
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries are not installed")
    root = Path(tempfile.mkdtemp(prefix="rlcfb-pg-"))  # pytest's tmp tree is private to root
    data = root / "pg"
    data.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    log = root / "server.log"  # the server must not hold our pipes open
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    try:
        yield f"postgresql+pg8000://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_a_run_is_stored_and_reported_from_postgresql(postgres_url):
    from rlcf_bench import report
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "baselines", "rlcf_bench_fixtures"])
    store = Store(postgres_url)
    req = RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip", protocol_overrides=(("limit", 6),))
    result = Runner(host, store, ExecutionOptions(device="cpu")).run(req)
    assert result.n_samples == 6 and len(store.done_sample_ids(result.run_id)) == 6
    again = Runner(host, Store(postgres_url), ExecutionOptions(device="cpu")).run(req)
    assert again.run_id == result.run_id  # found and reused, not duplicated
    assert '"method": "zero-shot"' in report.render(store, "json")
