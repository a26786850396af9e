"""Contract tests parametrized by the plugin registry (as timm and open_clip test every model).

``pytest_generate_tests`` fills the ``task_name``, ``dataset_name``, ``model_name``, ``suite_name``
and ``reward_model_name`` arguments with every entry a host with entry-point autoload sees, so a
new plugin's task, dataset, model, suite or reward model is covered without editing these files.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

KINDS = {"task_name": "tasks", "dataset_name": "datasets", "model_name": "models", "suite_name": "suites",
         "reward_model_name": "reward-models"}


@functools.lru_cache(maxsize=1)
def registered() -> dict[str, list[str]]:
    """Names per registry of the autoloaded host (built once per test session)."""
    from rlcf_bench.plugins import PluginHost

    host = PluginHost(autoload=True)
    return {kind: host.registry(kind).names() for kind in KINDS.values()}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for arg, kind in KINDS.items():
        if arg in metafunc.fixturenames:
            metafunc.parametrize(arg, registered()[kind])


@pytest.fixture(autouse=True)
def _no_user_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Never read the developer's config file; the data root only from ``RLCF_BENCH_DATA_ROOT``."""
    monkeypatch.setenv("RLCF_BENCH_CONFIG", str(tmp_path / "no-config.json"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RLCF_BENCH_ALLOW_DOWNLOAD", raising=False)
