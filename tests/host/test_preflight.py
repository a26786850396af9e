"""Preconditions of a run are checked together before the first run and reported together."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rlcf_bench.cli import GlobalOptions, build_cli, build_host
from rlcf_bench.plugins import PluginHost
from rlcf_bench.preflight import preflight
from rlcf_bench.runner import RunRequest

PLUGINS = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_datasets", "rlcf_bench_models",
           "rlcf_bench_fixtures"]


@pytest.fixture
def no_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLCF_BENCH_DATA_ROOT", raising=False)
    monkeypatch.setenv("RLCF_BENCH_CONFIG", str(tmp_path / "no-config.json"))


def test_missing_weights_and_data_root_are_reported_together(no_data_root: None, tmp_path: Path) -> None:
    host = PluginHost(autoload=False, extra=PLUGINS)
    weights = tmp_path / "absent.pt"
    reqs = [RunRequest(task="classification", dataset=d, method="rlcf-prompt", model=f"ViT-B-16@{weights}",
                       reward_model=f"ViT-L-14@{tmp_path / 'absent-too.pt'}") for d in ("imagenet-a", "imagenet-r")]
    reqs.append(RunRequest(task="classification", dataset="tiny-colors", method="zero-shot", model="tiny-clip"))
    problems = preflight(host, reqs)
    assert len(problems) == 3, problems  # two models (each once), one data-root problem for both datasets
    assert str(weights) in problems[0] and "absent-too.pt" in problems[1]
    assert "imagenet-a (imagenet-a/)" in problems[2] and "imagenet-r" in problems[2] and "--data-root" in problems[2]
    assert preflight(host, reqs[-1:]) == []  # generated data and a registered fixture model: nothing to check


def test_a_wrong_layout_is_reported_before_anything_runs(no_data_root: None, tmp_path: Path) -> None:
    (tmp_path / "imagenet-a").mkdir()
    host = PluginHost(autoload=False, extra=PLUGINS)
    req = RunRequest(task="classification", dataset="imagenet-a", method="zero-shot", model="tiny-clip")
    (problem,) = preflight(host, [req], data_root=str(tmp_path))
    assert problem.startswith("dataset imagenet-a: the layout under") and str(tmp_path) in problem


def test_run_stops_before_the_first_run_and_writes_nothing(no_data_root: None, tmp_path: Path) -> None:
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = PLUGINS
    cli = build_cli(build_host(opts))
    db = tmp_path / "lb.sqlite"
    out = CliRunner().invoke(cli, ["run", "--task", "classification", "--dataset", "imagenet-a", "--method",
                                   "zero-shot", "--model", f"ViT-B-16@{tmp_path / 'w.pt'}", "--db", str(db)])
    assert out.exit_code == 2, out.output
    assert "2 problem(s) stop these runs; nothing was run" in out.output
    assert not db.exists()
