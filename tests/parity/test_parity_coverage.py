"""Every registered method has its parity test: a method added later without one fails here.

A classification method ``m`` is covered by ``golden/<m>.safetensors`` (outputs recorded from its
official code, read by a ``test_parity_*`` file) or, for a method without official code, by its
own ``test_parity_<m>.py`` (an independent computation; ``docs/parity.md`` says why). Methods of
the other tasks are covered by ``golden/<m>_<task>.safetensors``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PLUGINS = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_rlcf"]
if importlib.util.find_spec("rlcf_bench_example") is not None:
    PLUGINS.append("rlcf_bench_example.confident_view_ensemble")


def _methods() -> list[tuple[str, str]]:
    from rlcf_bench.plugins import PluginHost

    host = PluginHost(autoload=False, extra=list(PLUGINS))
    return sorted((spec.name, task) for spec in host.registry("methods") for task in spec.tasks)


@pytest.mark.parametrize(("method", "task"), _methods(), ids=lambda v: str(v))
def test_every_method_has_a_parity_test(method, task):
    if method == "zero-shot" and task != "classification":
        pytest.skip("zero-shot retrieval/captioning adapts nothing: no TTA code to compare; the model wrappers it uses are exercised by rlcf's parity tests")
    stem = method.replace("-", "_")
    if task == "classification":
        covered = (HERE / "golden" / f"{stem}.safetensors").is_file() or (HERE / f"test_parity_{stem}.py").is_file()
    else:
        covered = (HERE / "golden" / f"{stem}_{task}.safetensors").is_file()
    assert covered, f"{method} ({task}) has no parity test: record its official outputs with tools/parity/"
    readers = [p for p in HERE.glob("test_parity_*.py") if stem in p.read_text() or method in p.read_text()]
    assert readers, f"no test_parity_*.py reads {method}'s golden outputs"
