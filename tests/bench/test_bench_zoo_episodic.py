"""pytest-benchmark timings of one episode of Zero and MTA (no learning) and of the distillation
baselines KD / DKD / ATKD (image-encoder tuning towards the reward model), as
``test_bench_methods.py`` (same context, same breakdown; timed run:
``pytest tests/bench/test_bench_zoo_episodic.py --benchmark-enable -s``)."""

from __future__ import annotations

from typing import Any

import pytest
from test_bench_methods import time_episode

NO_LEARNING = ("zero", "mta")
DISTILLATION = ("kd", "dkd", "atkd")


@pytest.mark.benchmark
@pytest.mark.parametrize("name", NO_LEARNING + DISTILLATION)
def test_bench_episode(benchmark: Any, name: str) -> None:
    _, breakdown = time_episode(benchmark, name)
    assert {"views", "image_encoder"} <= set(breakdown)
    if name in NO_LEARNING:
        assert "backward+optimizer" not in breakdown and "reward" not in breakdown  # no learning, no teacher
    else:
        assert breakdown["backward+optimizer"] > 0 and breakdown["reward"] > 0  # the teacher is timed as reward
