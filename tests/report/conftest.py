"""Fixtures for the report tests: a store on a temporary SQLite file, filled with known runs.

The known store is written once per session and copied for each test (a test may add runs).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_store import KnownStore, fill

from rlcf_bench.store import Store


@pytest.fixture(scope="session")
def _known_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("known") / "lb.sqlite"
    store = Store(f"sqlite:///{path}")
    ids = fill(store)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.engine.dispose()
    return path, ids


@pytest.fixture
def known(_known_template: tuple[Path, dict[str, int]], tmp_path: Path) -> KnownStore:
    template, ids = _known_template
    path = tmp_path / "lb.sqlite"
    shutil.copy(template, path)
    return KnownStore(Store(f"sqlite:///{path}"), dict(ids), path)
