"""The open-set task end to end: classification methods, episodic and online, run on a tiny
open-set mix unchanged; the records, metrics and the classification task's refusal of a mix.
All registered classification methods run in the slow test (discovered, not listed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlcf_bench import DatasetSpec, RunRequest, hookimpl
from rlcf_bench.testing import CONTRACT_PROTOCOL, FIXTURE_PLUGINS, classification_methods
from rlcf_bench_fixtures.tiny import TinyColors
from rlcf_bench_tasks.openset_mix import open_set_spec

PROTOCOL = tuple((k, v) for k, v in CONTRACT_PROTOCOL if k != "limit")


class _Noise:
    """Grey noise images: OOD for the colour patches."""

    def __len__(self) -> int:
        return 40

    def sample_id(self, index: int) -> str:
        return f"noise-{index:03d}"

    def load_image(self, index: int) -> Any:
        import torch

        g = torch.Generator().manual_seed(1000 + index)
        return (128 + 40 * torch.randn(1, 40, 48, generator=g)).clamp(0, 255).to(torch.uint8).expand(3, -1, -1).clone()


class _TinyOpenSet:
    @hookimpl
    def rlcfb_register_datasets(self) -> list[DatasetSpec]:
        return [open_set_spec("tiny-openset", "1", lambda root, p: TinyColors(int(p.get("n", 6))),
                              {"noise": lambda root, p: _Noise()}, default_ood="noise", params={"n": 6},
                              id_params=("n",))]


def _run(tmp_path: Path, method: str, **protocol: Any) -> tuple[Any, list[Any]]:
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=[*FIXTURE_PLUGINS, _TinyOpenSet()])
    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(host, store, ExecutionOptions(device="cpu", warmup=0))
    req = RunRequest(task="open-set", dataset="tiny-openset", method=method, model="tiny-clip",
                     reward_model="tiny-clip-teacher", protocol_overrides=tuple(sorted({**dict(PROTOCOL), **protocol}.items())))
    result = runner.run(req)
    return result, sorted(store.sample_records(result.run_id), key=lambda r: r.index)


def _check(result: Any, records: list[Any]) -> None:
    assert result.status == "finished"
    ood = [r for r in records if r.extra["ood"]]
    ids = [r for r in records if not r.extra["ood"]]
    assert len(ood) == len(ids) == 6 and all(r.score is None and r.target == -1 for r in ood)
    assert all(r.sample_id.startswith("ood:noise:") for r in ood) and all(r.sample_id.startswith("id:") for r in ids)
    assert all(isinstance(r.extra["ood_score"], float) for r in records)
    m = result.metrics
    assert m["top1"].n == 6 and m["top1"].value == pytest.approx(100 * sum(r.score for r in ids) / 6)
    from rlcf_bench_tasks._openset_stats import auroc

    flags = [r.extra["ood"] for r in records]
    assert m["auroc"].value == pytest.approx(100 * auroc([r.extra["ood_score"] for r in records], flags))
    assert m["auroc"].ci_low <= m["auroc"].value <= m["auroc"].ci_high and 0 <= m["fpr95"].value <= 100
    assert m["ood_share"].value == 50.0


@pytest.mark.parametrize("method", ["zero-shot", "tda"])  # episodic and online
def test_a_method_runs_on_the_open_set_task_unchanged(tmp_path: Path, method: str) -> None:
    _check(*_run(tmp_path, method))


def test_energy_is_a_protocol_choice_and_msp_the_default(tmp_path: Path) -> None:
    _, msp = _run(tmp_path, "zero-shot")
    _, energy = _run(tmp_path, "zero-shot", ood_score="energy")
    assert all(0 < r.extra["ood_score"] <= 1 for r in msp)
    assert [r.prediction for r in msp] == [r.prediction for r in energy]
    assert [r.extra["ood_score"] for r in msp] != [r.extra["ood_score"] for r in energy]


def test_the_classification_task_refuses_an_open_set_mix(tmp_path: Path) -> None:
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.runner import ExecutionOptions, Runner
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=[*FIXTURE_PLUGINS, _TinyOpenSet()])
    runner = Runner(host, Store(f"sqlite:///{tmp_path / 'lb.sqlite'}"), ExecutionOptions(device="cpu"))
    with pytest.raises(Exception, match="open-set mix: run it with --task open-set"):
        runner.run(RunRequest(task="classification", dataset="tiny-openset", method="zero-shot", model="tiny-clip"))
    with pytest.raises(Exception, match="needs an open-set mix"):
        runner.run(RunRequest(task="open-set", dataset="tiny-colors", method="zero-shot", model="tiny-clip"))


@pytest.mark.slow
@pytest.mark.parametrize("method", classification_methods())
def test_every_classification_method_runs_on_the_open_set_task(tmp_path: Path, method: str) -> None:
    _check(*_run(tmp_path, method))


def test_auroc_and_fpr95_reach_every_report_format(tmp_path: Path) -> None:
    """Two runs (zero-shot, TDA) in one store; every format carries AUROC/FPR95, the paper layout
    a table of each, and the markdown report the DeLong section."""
    import json

    from click.testing import CliRunner

    from rlcf_bench.cli import GlobalOptions, build_cli, build_host

    for method in ("zero-shot", "tda"):
        _run(tmp_path, method)
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = [*FIXTURE_PLUGINS, _TinyOpenSet()]
    cli = build_cli(build_host(opts))
    db = str(tmp_path / "lb.sqlite")

    def report(*args: str) -> str:
        out = CliRunner().invoke(cli, ["report", "--db", db, *args])
        assert out.exit_code == 0, out.output
        return out.output

    md = report("--format", "markdown")
    assert "| top1 | auroc | fpr95 |" in md and "## Open-set: AUROC against zero-shot (DeLong)" in md
    assert "| tiny-openset | tiny-clip | tda |" in md
    header = next(line for line in report("--format", "csv").splitlines() if line.startswith("run_id,"))
    assert "auroc" in header and "fpr95" in header
    text = report("--format", "json")
    rows = json.loads(text[text.index("["):])
    assert all({"auroc", "fpr95"} <= set(r["metrics"]) for r in rows)
    assert 'scope="col">auroc</th>' in report("--format", "html")
    latex = report("--layout", "paper", "--format", "latex")
    captions = [line for line in latex.splitlines() if line.startswith(r"\caption{open-set: ")]
    assert any("AUROC" in c for c in captions) and any("FPR at 95" in c for c in captions)
