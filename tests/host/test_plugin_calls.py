"""The facade calls hooks through pluggy: tracing, wrappers (new and old style) and
``tryfirst``/``trylast`` behave as pluggy documents, while a failing plugin is still named and the
specs keep the plugin that supplied them (so duplicates name both providers)."""

from __future__ import annotations

import pytest

from rlcf_bench import ModelSpec, ReportSection, hookimpl
from rlcf_bench.plugins import TRACE_ENV, PluginError, PluginHost
from rlcf_bench.registry import RegistryError


def _model(name: str, provider: str = "") -> ModelSpec:
    return ModelSpec(name=name, version="1", load=lambda n, d: None, provider=provider)


class Models:
    """Registers ``names`` (a plain implementation)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def rlcfb_register_models(self):
        return [_model(n) for n in self.names]


def _ordered(title: str, **opts: bool) -> object:
    """A plugin answering one report section titled ``title``, with the hookimpl options ``opts``."""

    class Section:
        @hookimpl(**opts)
        def rlcfb_report_sections(self, rows, store):
            return [ReportSection(title=title, markdown="")]

    return Section()


def test_tracing_shows_the_hooks_the_host_calls(monkeypatch, capsys):
    monkeypatch.setenv(TRACE_ENV, "1")
    host = PluginHost(autoload=False, extra=[Models("m1")])
    assert host.registry("models").names() == ["m1"]
    host.report_sections([], None)
    err = capsys.readouterr().err
    assert "rlcfb_register_models" in err and "rlcfb_report_sections" in err


def test_tryfirst_and_trylast_order_the_answers_as_pluggy_documents():
    # pluggy calls the last registered first, except that tryfirst goes before and trylast after.
    plugins = [_ordered("last", trylast=True), _ordered("plain-1"), _ordered("first", tryfirst=True),
               _ordered("plain-2")]
    host = PluginHost(autoload=False, extra=plugins)
    titles = [s.title for s in host.report_sections([], None)]
    assert titles == ["first", "plain-2", "plain-1", "last"]


def test_a_new_style_wrapper_on_a_registration_hook_wraps_the_whole_call():
    class DropAndAdd:
        @hookimpl(wrapper=True)
        def rlcfb_register_models(self):
            result = yield
            kept = [[s for s in specs if s.name != "dropped"] for specs in result]
            return [*kept, [_model("added")]]

    host = PluginHost(autoload=False)
    host.register(Models("kept", "dropped"), name="models")
    host.register(DropAndAdd(), name="drop-and-add")
    models = host.registry("models")
    assert models.names() == ["added", "kept"]
    # Each spec names the plugin that supplied it: the wrapper's own addition names the wrapper.
    assert (models.get("kept").provider, models.get("added").provider) == ("models", "drop-and-add")


def test_a_new_style_wrapper_on_tasks_does_not_break_the_registry():
    class Passthrough:
        def __init__(self):
            self.seen = None

        @hookimpl(wrapper=True)
        def rlcfb_register_tasks(self):
            result = yield
            self.seen = sorted(s.name for specs in result for s in specs)
            return result

    wrapper = Passthrough()
    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", wrapper])
    names = host.registry("tasks").names()
    assert "classification" in names and wrapper.seen == names
    assert all(spec.provider.startswith("rlcf_bench_tasks.") for spec in host.registry("tasks"))


def test_an_old_style_hookwrapper_sees_and_can_replace_the_result():
    class OnlyFirst:
        @hookimpl(hookwrapper=True)
        def rlcfb_register_models(self):
            outcome = yield
            outcome.force_result(outcome.get_result()[:1])

    host = PluginHost(autoload=False, extra=[Models("a"), Models("b"), OnlyFirst()])
    assert host.registry("models").names() == ["b"]  # the last registered is called first


def test_a_failing_plugin_is_named():
    class Broken:
        @hookimpl
        def rlcfb_register_models(self):
            raise ValueError("no weights here")

    host = PluginHost(autoload=False, extra=[Models("fine")])
    host.register(Broken(), name="broken-models")
    with pytest.raises(PluginError, match=r"plugin 'broken-models' — its hook rlcfb_register_models raised "
                                          r"ValueError: no weights here \(block it with -p no:broken-models\)"):
        host.registry("models")


def test_a_failure_inside_a_wrapped_call_names_the_implementation_not_the_wrapper():
    class Broken:
        @hookimpl
        def rlcfb_run_step(self, step):
            raise RuntimeError("disk full")

    class Wrapper:
        @hookimpl(wrapper=True)
        def rlcfb_run_step(self, step):
            return (yield)

    host = PluginHost(autoload=False)
    host.register(Broken(), name="broken-logger")
    host.register(Wrapper(), name="wrapper")
    with pytest.raises(PluginError, match="plugin 'broken-logger' — its hook rlcfb_run_step raised RuntimeError"):
        host.run_step(None)  # type: ignore[arg-type]


def test_a_failing_wrapper_is_named():
    class BadWrapper:
        @hookimpl(wrapper=True)
        def rlcfb_register_models(self):
            yield
            raise KeyError("oops")

    host = PluginHost(autoload=False, extra=[Models("m")])
    host.register(BadWrapper(), name="bad-wrapper")
    with pytest.raises(PluginError, match="plugin 'bad-wrapper' — its hook rlcfb_register_models raised KeyError"):
        host.registry("models")


def test_a_wrapper_that_does_not_yield_is_a_plugin_error():
    class NoYield:
        @hookimpl(wrapper=True)
        def rlcfb_register_models(self):
            return
            yield  # a generator that never yields

    host = PluginHost(autoload=False, extra=[NoYield()])
    with pytest.raises(PluginError, match="rlcfb_register_models"):
        host.registry("models")


def test_a_registration_hook_answering_something_else_than_a_list_is_named():
    class NotAList:
        @hookimpl
        def rlcfb_register_models(self):
            return _model("x")

    host = PluginHost(autoload=False)
    host.register(NotAList(), name="not-a-list")
    with pytest.raises(PluginError, match="plugin 'not-a-list' — its hook rlcfb_register_models returned ModelSpec"):
        host.registry("models")


def test_duplicates_name_both_providers():
    host = PluginHost(autoload=False)
    host.register(Models("same"), name="one")
    host.register(Models("same"), name="two")
    with pytest.raises(RegistryError, match="'same' is registered twice: by plugin '(one|two)' and by plugin "
                                            "'(one|two)'") as info:
        host.registry("models")
    assert "'one'" in str(info.value) and "'two'" in str(info.value)


def test_a_provider_the_plugin_set_itself_is_kept():
    class OwnProvider:
        @hookimpl
        def rlcfb_register_models(self):
            return [_model("mine", provider="declared")]

    host = PluginHost(autoload=False, extra=[OwnProvider()])
    assert host.registry("models").get("mine").provider == "declared"


def test_hooks_called_directly_through_pluggy_stay_plain_until_the_host_calls_them():
    """The guard is installed by the host's call; pluggy's own call then also names plugins."""
    host = PluginHost(autoload=False)
    host.register(Models("m"), name="direct")
    assert [s.provider for specs in host.pm.hook.rlcfb_register_models() for s in specs] == [""]
    host.models()
    assert [s.provider for specs in host.pm.hook.rlcfb_register_models() for s in specs] == ["direct"]


def test_a_resolver_s_error_about_the_typed_name_passes_unchanged_through_a_wrapper():
    class Resolver:
        @hookimpl
        def rlcfb_resolve_dataset(self, name, params):
            raise ValueError(f"dataset {name!r}: expected x:/path")

    class Wrapper:
        @hookimpl(wrapper=True)
        def rlcfb_resolve_dataset(self, name, params):
            return (yield)

    host = PluginHost(autoload=False, extra=[Resolver(), Wrapper()])
    with pytest.raises(ValueError, match=r"dataset 'x:': expected x:/path"):  # not a PluginError
        host.dataset("x:")
