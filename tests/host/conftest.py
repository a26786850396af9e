"""Fixtures of the host tests."""

from __future__ import annotations

import click
import pytest

from rlcf_bench.cli import GlobalOptions, build_cli, build_host


@pytest.fixture
def cli() -> click.Group:
    """The command group over the first-party plugins, entry-point autoload off."""
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = ["rlcf_bench_tasks", "baselines", "rlcf_bench_fixtures", "rlcf_bench_models"]
    return build_cli(build_host(opts))
