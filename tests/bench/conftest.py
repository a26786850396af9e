"""Benchmark/measurement fixtures. Tests marked ``slow`` in this folder (the long ViT-B-16
measurements) are skipped unless selected with ``-m slow`` or ``RLCF_BENCH_SLOW=1``, so the
default ``pytest`` run stays short."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("RLCF_BENCH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long measurement: run with -m slow (or RLCF_BENCH_SLOW=1)")
    for item in items:
        if "slow" in item.keywords and Path(str(item.fspath)).resolve().parent == HERE:
            item.add_marker(skip)
