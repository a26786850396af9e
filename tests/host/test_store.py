"""The leaderboard store: schema version, WAL, uniqueness, URL resolution."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError

from rlcf_bench.store import SampleResult, SchemaVersionError, Store, resolve_db_url
from rlcf_bench.types import ReferenceResult


def test_schema_version_is_recorded_and_checked(tmp_path):
    path = tmp_path / "lb.sqlite"
    Store(f"sqlite:///{path}")
    con = sqlite3.connect(path)
    assert con.execute("select value from schema_info where key='schema_version'").fetchone() == ("1",)
    con.execute("update schema_info set value='999' where key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match="schema version 999"):
        Store(f"sqlite:///{path}")


def test_wal_mode_and_busy_timeout(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_sample_rows_are_unique_per_run(runner, store):
    from rlcf_bench.runner import RunRequest

    result = runner.run(RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip",
                                   protocol_overrides=(("limit", 2),)))
    with store.session() as s, pytest.raises(IntegrityError):
        s.add(SampleResult(run_id=result.run_id, sample_id="tiny-0000", idx=0))
        s.commit()


def test_db_url_resolution(monkeypatch, tmp_path):
    assert resolve_db_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert resolve_db_url(str(tmp_path / "a.sqlite")) == f"sqlite:///{tmp_path / 'a.sqlite'}"
    monkeypatch.setenv("RLCF_BENCH_DB", str(tmp_path / "env.sqlite"))
    assert resolve_db_url(None).endswith("env.sqlite")


def test_references_upsert_is_idempotent(store):
    ref = ReferenceResult("classification", "imagenet-a", "tpt-prompt", "ViT-B-16@openai", "top1", 54.77, "TPT")
    assert store.upsert_references([ref]) == 1
    assert store.upsert_references([ref]) == 0
    assert [r.value for r in store.references()] == [54.77]
