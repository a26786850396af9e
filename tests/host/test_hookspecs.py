"""Every hook is documented in docs/hooks.md (exact signature) and has a test here; the facade
covers every hook; misspelt hooks are caught."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from rlcf_bench import (
    DatasetSpec,
    MethodSpec,
    ModelSpec,
    ReferenceResult,
    ReportSection,
    RewardModelSpec,
    SuiteRun,
    SuiteSpec,
    TaskSpec,
    hookimpl,
    hookspecs,
)
from rlcf_bench.plugins import PluginError, PluginHost
from rlcf_bench.runner import RunRequest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def _hooks() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if name.startswith("rlcfb_") and callable(fn)}


def test_every_hook_is_documented_with_its_signature():
    text = DOCS.read_text()
    for name, sig in _hooks().items():
        heading = f"### {name}({', '.join(sig.parameters)})"
        assert heading in text, f"docs/hooks.md lacks the heading {heading!r}"
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"


def test_every_hook_has_a_test():
    names = set(re.findall(r"def test_hook_(rlcfb_\w+)", Path(__file__).read_text()))
    assert set(_hooks()) <= names, f"hooks without a test: {set(_hooks()) - names}"


def test_facade_is_the_only_hook_caller():
    root = Path(__file__).resolve().parents[2]
    callers = [p for p in (root / "rlcf_bench").rglob("*.py") if "pm.hook" in p.read_text()]
    assert [p.name for p in callers] == ["plugins.py"]


def test_misspelt_hook_is_an_error():
    class Misspelt:
        @hookimpl
        def rlcfb_register_method(self):  # missing "s"
            return []

    with pytest.raises(PluginError, match="unknown hook 'rlcfb_register_method'") as info:
        PluginHost(autoload=False, extra=[Misspelt()])
    assert isinstance(info.value.__cause__, pluggy.PluginValidationError)


class _Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def rlcfb_run_start(self, run_id, spec, n_total, n_done):
        self.calls.append(("start", run_id, spec.method, n_total, n_done))

    @hookimpl
    def rlcfb_run_step(self, step):
        self.calls.append(("step", len(step.sample_ids), step.done, step.total))

    @hookimpl
    def rlcfb_run_finish(self, result):
        self.calls.append(("finish", result.n_samples, round(result.metrics["top1"].value, 6)))

    @hookimpl
    def rlcfb_run_error(self, error):
        self.calls.append(("error", error.exc_type, error.message))


def _run(tmp_path, extra, method="zero-shot", limit=6):
    from rlcf_bench.runner import ExecutionOptions, Runner
    from rlcf_bench.store import Store

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", *extra])
    runner = Runner(host, Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), ExecutionOptions(device="cpu", batch_size=4))
    return runner.run(RunRequest("classification", "tiny-colors", method, "tiny-clip",
                                 protocol_overrides=(("limit", limit),)))


def test_hook_rlcfb_run_start(tmp_path):
    rec = _Recorder()
    _run(tmp_path, [rec])
    assert rec.calls[0] == ("start", 1, "zero-shot", 6, 0)


def test_hook_rlcfb_run_step(tmp_path):
    rec = _Recorder()
    _run(tmp_path, [rec])
    steps = [c for c in rec.calls if c[0] == "step"]
    assert steps == [("step", 4, 4, 6), ("step", 2, 6, 6)]


def test_hook_rlcfb_run_finish(tmp_path):
    rec = _Recorder()
    result = _run(tmp_path, [rec])
    assert rec.calls[-1] == ("finish", 6, round(result.metrics["top1"].value, 6))


class _Broken:
    from rlcf_bench import Method

    class BrokenMethod(Method[None]):
        name = "broken"

        def setup(self, ctx):
            pass

        def predict(self, batch):
            raise ZeroDivisionError("boom")

    @hookimpl
    def rlcfb_register_methods(self):
        return [MethodSpec.from_method(self.BrokenMethod)]


def test_hook_rlcfb_run_error(tmp_path):
    rec = _Recorder()
    with pytest.raises(ZeroDivisionError):
        _run(tmp_path, [rec, _Broken()], method="broken")
    assert rec.calls[-1] == ("error", "ZeroDivisionError", "boom")


class _Registers:
    @hookimpl
    def rlcfb_register_tasks(self):
        return [TaskSpec(name="t-x", version="1", kind="classification", build=lambda d, p: None)]

    @hookimpl
    def rlcfb_register_datasets(self):
        return [DatasetSpec(name="d-x", version="1", task_kinds=frozenset({"classification"}), build=lambda root: None)]

    @hookimpl
    def rlcfb_register_models(self):
        return [ModelSpec(name="m-x", version="1", load=lambda name, device: None)]

    @hookimpl
    def rlcfb_register_reward_models(self):
        return [RewardModelSpec(name="r-x", version="1", members=(("m-x", 0.5), ("tiny-clip", 0.5)))]

    @hookimpl
    def rlcfb_register_methods(self):
        return [MethodSpec.from_method(_Broken.BrokenMethod)]

    @hookimpl
    def rlcfb_register_suites(self):
        return [SuiteSpec(name="s-x", description="", runs=lambda methods: [SuiteRun("t-x", "d-x", "broken", "m-x")])]

    @hookimpl
    def rlcfb_display_names(self):
        return {"broken": "Broken (ours)"}

    @hookimpl
    def rlcfb_register_references(self):
        return [ReferenceResult("t-x", "d-x", "broken", "m-x", "top1", 42.0, "a paper")]

    @hookimpl
    def rlcfb_report_sections(self, rows, store):
        return [ReportSection("extra", f"{len(rows)} rows")]

    @hookimpl
    def rlcfb_add_commands(self, cli):
        import click

        @cli.command("hello-x")
        def hello():
            click.echo("hello from a plugin")


@pytest.fixture
def reg_host():
    return PluginHost(autoload=False, extra=[_Registers()])


def test_hook_rlcfb_register_tasks(reg_host):
    spec = reg_host.registry("tasks").get("t-x")
    assert spec.kind == "classification" and spec.provider


def test_hook_rlcfb_register_datasets(reg_host):
    assert reg_host.registry("datasets").names() == ["d-x"]


def test_hook_rlcfb_register_models(reg_host):
    assert reg_host.registry("models").get("m-x").version == "1"


def test_hook_rlcfb_register_reward_models(reg_host):
    assert reg_host.registry("reward-models").get("r-x").members == (("m-x", 0.5), ("tiny-clip", 0.5))


def test_hook_rlcfb_register_methods(reg_host):
    assert reg_host.registry("methods").get("broken").method_cls is _Broken.BrokenMethod


def test_hook_rlcfb_register_suites(reg_host):
    runs = reg_host.registry("suites").get("s-x").runs([])
    assert runs == [SuiteRun("t-x", "d-x", "broken", "m-x")]


def test_hook_rlcfb_register_references(reg_host):
    assert reg_host.references()[0].value == 42.0


def test_hook_rlcfb_display_names(reg_host):
    assert reg_host.display_names()["broken"] == "Broken (ours)"

    class Bad:
        @hookimpl
        def rlcfb_display_names(self):
            return {"x": 1}

    reg_host.register(Bad(), "bad-names")
    with pytest.raises(PluginError, match="mapping of str to str"):
        reg_host.display_names()


def test_hook_rlcfb_report_sections(reg_host):
    assert reg_host.report_sections([1, 2, 3], store=None) == [ReportSection("extra", "3 rows")]


def test_hook_rlcfb_add_commands(reg_host):
    from click.testing import CliRunner

    from rlcf_bench.cli import build_cli

    out = CliRunner().invoke(build_cli(reg_host), ["hello-x"])
    assert out.exit_code == 0 and "hello from a plugin" in out.output


class _Resolves:
    """Claims ``x:<anything>`` names; the spec depends on the parameters given with the name."""

    @hookimpl
    def rlcfb_resolve_dataset(self, name, params):
        if not name.startswith("x:"):
            return None
        kinds = frozenset({params.get("kind", "classification")})
        return DatasetSpec(name=name, version="1", task_kinds=kinds, build=lambda root, **p: name[2:])

    @hookimpl
    def rlcfb_register_datasets(self):
        return [DatasetSpec(name="x:registered", version="7", task_kinds=frozenset({"retrieval"}), build=lambda root: None)]


def test_hook_rlcfb_resolve_dataset():
    from rlcf_bench.registry import RegistryError

    host = PluginHost(autoload=False, extra=[_Resolves()])
    spec = host.dataset("x:/some/path")
    assert spec.name == "x:/some/path" and spec.build(None) == "/some/path" and spec.provider
    assert host.dataset("x:/some/path", {"kind": "retrieval"}).task_kinds == {"retrieval"}
    assert host.dataset("x:registered").version == "7"  # registered names win
    assert host.dataset("x:/some/path") is spec  # resolved once per session
    with pytest.raises(RegistryError, match="unknown dataset 'y:/p'"):
        host.dataset("y:/p")
