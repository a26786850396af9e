"""pytest-benchmark timings of one C-TPT, R-TPT and TPS episode, with the per-section breakdown
of ``test_bench_methods.py`` (same context, same options; ``make bench`` runs them)."""

from __future__ import annotations

from typing import Any

import pytest
from test_bench_methods import time_episode


@pytest.mark.benchmark
@pytest.mark.parametrize("name", ("c-tpt", "r-tpt", "tps"))
def test_bench_episode(benchmark: Any, name: str) -> None:
    _, breakdown = time_episode(benchmark, name)
    assert {"views", "image_encoder", "backward+optimizer"} <= set(breakdown)
    # prompt tuners run the text tower per step; TPS only shifts cached prototypes
    assert ("text_encoder" in breakdown) == (name != "tps")
