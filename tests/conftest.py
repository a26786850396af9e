"""Shared fixtures: hermetic (no downloads, entry-point autoload off, a fresh manager per test)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RLCF_BENCH_THREADS", "2")

REPO = Path(__file__).resolve().parent.parent

# The first-party plugin modules a hermetic host registers explicitly (autoload stays off).
CORE_PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_fixtures", "rlcf_bench_models")


@pytest.fixture
def host(make_host):
    return make_host(*CORE_PLUGINS)


@pytest.fixture
def store(tmp_path):
    from rlcf_bench.store import Store

    return Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")


@pytest.fixture
def runner(host, store):
    from rlcf_bench.runner import ExecutionOptions, Runner

    return Runner(host, store, ExecutionOptions(device="cpu"))


@pytest.fixture(scope="session")
def make_host():
    """``make_host(*plugins, autoload=False, **kw)`` → a new :class:`PluginHost` that registers
    ``plugins`` (module names or objects) first; the one way tests build a host of their own."""
    from rlcf_bench.plugins import PluginHost

    def make(*plugins: object, autoload: bool = False, **kwargs: object) -> PluginHost:
        return PluginHost(autoload=autoload, extra=list(plugins), **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def registry_host():
    """The host a user gets (entry-point autoload on), shared by the session: read it, never
    register on it."""
    from rlcf_bench.plugins import PluginHost

    return PluginHost(autoload=True)
