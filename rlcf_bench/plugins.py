"""The plugin manager and the one typed facade that calls hooks.

Load order: hook specs, objects the caller passes (the CLI's terminal reporter), entry points of group ``rlcf_bench`` (unless
autoload is off), one-file plugins from ``--plugins-dir``; ``-p no:NAME`` blocks are applied
before loading; ``check_pending()`` catches misspelt ``rlcfb_`` implementations.

A plugin that is a *package* has each of its public submodules that *defines* an ``rlcfb_`` hook
implementation registered as its own plugin (``NAME.submodule``): dropping a file into
``baselines/`` adds a method with no list to edit, and a public module of shared code (no hook of
its own) is not a plugin. Modules whose name starts with ``_`` are private and not scanned.

Every hook is called through pluggy (``pm.hook.NAME(...)``), so tracing, wrappers (``wrapper=True``,
``hookwrapper=True``) and ``tryfirst``/``trylast`` behave as pluggy documents. Before a hook is
called, the host guards each of its implementations once (:func:`_guard`): a failure becomes a
:class:`PluginError` naming the plugin, and the specs a registration hook returns are stamped with
the plugin that returned them (``provider``), which is how duplicates name both providers.

The manager is per session (``PluginHost``), never a module global, so tests build their own.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata as md
import importlib.util
import os
import pkgutil
import sys
import types
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import pluggy

from . import hookspecs
from .errors import PluginError as PluginError  # re-exported: rlcf_bench.plugins.PluginError is public
from .hookspecs import PROJECT
from .types import (
    DatasetSpec,
    MethodSpec,
    ModelSpec,
    PluginInfo,
    ReferenceResult,
    ReportSection,
    RewardModelSpec,
    RunError,
    RunResult,
    RunSpec,
    StepRecord,
    SuiteSpec,
    TaskSpec,
)

if TYPE_CHECKING:
    import click

    from .registry import MethodRegistry, Registry
    from .report.rows import LeaderboardRow
    from .store import Store

AUTOLOAD_ENV = "RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "RLCF_BENCH_TRACE_PLUGINS"
ENTRY_POINT_GROUP = "rlcf_bench"

#: Registration hooks whose specs carry a ``provider``: the host stamps the plugin that returned them.
_PROVIDED_HOOKS = frozenset({
    "rlcfb_register_tasks", "rlcfb_register_datasets", "rlcfb_register_models", "rlcfb_register_reward_models",
    "rlcfb_register_methods", "rlcfb_register_suites",
})
#: Hooks answering with one spec (or ``None``), stamped the same way.
_PROVIDED_ONE_HOOKS = frozenset({"rlcfb_resolve_dataset"})
#: Hooks whose exceptions pass unchanged: a resolver's error is about the name the user typed
#: (``csv:`` without a path, a missing optional extra), which the CLI reports as invalid input.
_USER_INPUT_HOOKS = frozenset({"rlcfb_resolve_dataset"})
#: Marks an implementation function the host has already guarded.
_GUARDED = "__rlcfb_guarded__"


def _failure(plugin: str, hook_name: str, exc: BaseException) -> PluginError:
    return PluginError(f"plugin {plugin!r} — its hook {hook_name} raised {type(exc).__name__}: {exc} "
                       f"(block it with -p no:{plugin})")


def _stamp(spec: Any, plugin: str) -> Any:
    """``spec`` with ``provider`` set to ``plugin`` unless the plugin set it itself."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type) and getattr(spec, "provider", None) == "":
        return dataclasses.replace(spec, provider=plugin)
    return spec


def _stamped(result: Any, plugin: str, hook_name: str) -> Any:
    """An implementation's answer with its specs stamped (a registration hook answers a list)."""
    if result is None:
        return None
    if hook_name in _PROVIDED_ONE_HOOKS:
        return _stamp(result, plugin)
    if not isinstance(result, (list, tuple)):
        raise PluginError(f"plugin {plugin!r} — its hook {hook_name} returned {type(result).__name__}, "
                          f"not a list of specs (block it with -p no:{plugin})")
    return [_stamp(spec, plugin) for spec in result]


def _guard(impl: pluggy.HookImpl, hook_name: str) -> None:
    """Guard one implementation in place, once: pluggy's own calling (``_multicall``) then runs
    the guarded function with the same arguments (``argnames`` are kept).

    * a plain implementation's exception becomes a :class:`PluginError` naming its plugin, and the
      specs it returns are stamped with its plugin (``provider``);
    * a wrapper's (``wrapper=True`` or ``hookwrapper=True``) own exception is named the same way; an
      exception it lets through from the implementations it wraps is already a ``PluginError``
      naming the implementation and passes unchanged; the specs a new-style wrapper adds are
      stamped with the wrapper's plugin;
    * the exceptions of the hooks of ``_USER_INPUT_HOOKS`` pass unchanged.

    pluggy offers no per-implementation interception and declares ``HookImpl.function`` final;
    replacing it with a guard of the same signature is the one place the host reaches into a
    pluggy object, and ``tests/host/test_plugin_calls.py`` pins the behaviour on the installed
    pluggy.
    """
    function: Callable[..., Any] = impl.function
    if getattr(function, _GUARDED, False):
        return
    plugin = impl.plugin_name
    guarded: Callable[..., Any]
    if impl.wrapper or impl.hookwrapper:
        new_style = bool(impl.wrapper)

        @functools.wraps(function)
        def guarded_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            try:
                result = yield from function(*args, **kwargs)
            except PluginError:  # an implementation's failure, named there (or this wrapper's own)
                raise
            except Exception as exc:
                if hook_name in _USER_INPUT_HOOKS:  # a resolver's error passes through its wrappers too
                    raise
                raise _failure(plugin, hook_name, exc) from exc
            if new_style and hook_name in _PROVIDED_HOOKS and isinstance(result, list):
                return [_stamped(r, plugin, hook_name) for r in result]
            return result

        guarded = guarded_wrapper
    else:

        @functools.wraps(function)
        def guarded_call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = function(*args, **kwargs)
            except PluginError:
                raise
            except Exception as exc:
                if hook_name in _USER_INPUT_HOOKS:
                    raise
                raise _failure(plugin, hook_name, exc) from exc
            if hook_name in _PROVIDED_HOOKS or hook_name in _PROVIDED_ONE_HOOKS:
                return _stamped(result, plugin, hook_name)
            return result

        guarded = guarded_call
    setattr(guarded, _GUARDED, True)
    # HookImpl.function is annotated Final in pluggy (see the docstring for why it is replaced).
    object.__setattr__(impl, "function", guarded)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def defines_hooks(module: types.ModuleType) -> bool:
    """Whether ``module`` itself defines an ``rlcfb_`` hook implementation: a function of that name
    whose ``__module__`` is this module (one imported from elsewhere is its own module's). A
    function of that name without ``@hookimpl`` counts too: registering the module then reports it
    (:meth:`PluginHost.register`) instead of skipping it silently."""
    return any(name.startswith("rlcfb_") and callable(value) and getattr(value, "__module__", None) == module.__name__
               for name, value in vars(module).items())


class PluginHost:
    """A session's plugin manager plus the typed facade over ``pm.hook``.

    :param autoload: load entry points of group ``rlcf_bench`` (also switched off by the
        environment variable ``RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD=1``).
    :param blocked: plugin names to block (``-p no:NAME``); a block of ``baselines`` also blocks
        ``baselines.tpt_prompt`` and the other submodules.
    :param plugins_dirs: folders whose ``*.py`` files are loaded as one-file plugins.
    :param extra: plugin objects or importable module names to register first (the CLI's
        reporter, tests, ``-p NAME``).
    """

    def __init__(
        self,
        *,
        autoload: bool = True,
        blocked: Iterable[str] = (),
        plugins_dirs: Sequence[str | os.PathLike[str]] = (),
        extra: Sequence[Any] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._dist_of: dict[str, tuple[str | None, str | None]] = {}
        self._registries: dict[str, Any] = {}
        self._resolved: dict[tuple[str, tuple[tuple[str, str], ...]], DatasetSpec] = {}
        self.blocked = set(blocked)
        for name in self.blocked:
            self.pm.set_blocked(name)
        if _truthy(os.environ.get(TRACE_ENV)):
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
            self.pm.enable_tracing()
        for obj in extra:
            if isinstance(obj, str):
                self.register_module(obj, name=obj)
            else:
                self.register(obj, name=getattr(obj, "plugin_name", None) or getattr(obj, "__name__", None))
        self.autoload = autoload and not _truthy(os.environ.get(AUTOLOAD_ENV))
        if self.autoload:
            self._load_entry_points()
        for directory in plugins_dirs:
            self._load_plugins_dir(Path(directory))
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:  # e.g. a misspelt hook name
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginError(f"plugin {name!r} — {exc} (hook names are listed in rlcf_bench/hookspecs.py; "
                              f"check the spelling)") from exc

    # ------------------------------------------------------------------ loading
    def _is_blocked(self, name: str) -> bool:
        return any(name == b or name.startswith(b + ".") for b in self.blocked)

    def register(self, plugin: Any, name: str | None = None, dist: tuple[str | None, str | None] = (None, None)) -> str | None:
        if name is not None and self._is_blocked(name):
            return None
        existing = self.pm.get_plugin(name) if name else None
        if existing is not None and existing is not plugin:
            raise PluginError(f"two plugins are named {name!r}: {existing!r} and {plugin!r}")
        if existing is plugin:
            return name
        if isinstance(plugin, types.ModuleType):
            unmarked = sorted(attr for attr, value in vars(plugin).items()
                              if attr.startswith("rlcfb_") and callable(value)
                              and getattr(value, "__module__", None) == plugin.__name__
                              and self.pm.parse_hookimpl_opts(plugin, attr) is None)
            if unmarked:
                raise PluginError(f"plugin {name or plugin.__name__!r} — {', '.join(unmarked)} lacks @hookimpl "
                                  f"(from rlcf_bench import hookimpl), so pluggy would never call it")
        try:
            registered = self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # a hook with a wrong signature
            raise PluginError(f"plugin {name or plugin!r} — {exc}") from exc
        if registered:
            self._dist_of[registered] = dist
            self._registries.clear()
        return registered

    def register_module(self, modname: str, name: str, dist: tuple[str | None, str | None] = (None, None)) -> None:
        if self._is_blocked(name):
            return
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # a broken plugin must say which one it is
            raise PluginError(f"plugin {name!r} ({modname}) failed to import: {exc!r}") from exc
        self._register_tree(module, name, dist)

    def _register_tree(self, module: types.ModuleType, name: str, dist: tuple[str | None, str | None]) -> None:
        """Register ``module`` as plugin ``name``; if it is a package, also every public submodule
        (recursively) that defines an ``rlcfb_`` hook implementation (:func:`defines_hooks`), as
        ``name.submodule``. Private modules (a leading ``_``) are not scanned."""
        self.register(module, name=name, dist=dist)
        self._register_submodules(module, name, dist)

    def _register_submodules(self, package: types.ModuleType, name: str,
                             dist: tuple[str | None, str | None]) -> None:
        if not hasattr(package, "__path__"):
            return
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            subname = f"{name}.{info.name}"
            if info.name.startswith("_") or self._is_blocked(subname):
                continue
            try:
                sub = importlib.import_module(f"{package.__name__}.{info.name}")
            except Exception as exc:
                raise PluginError(f"plugin {subname!r} failed to import: {exc!r}") from exc
            if defines_hooks(sub):
                self.register(sub, name=subname, dist=dist)
            self._register_submodules(sub, subname, dist)

    def _load_entry_points(self) -> None:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self._is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"entry point {ep.name!r} = {ep.value!r} of distribution {dist[0]!r} failed to load: {exc!r}"
                ) from exc
            if isinstance(obj, types.ModuleType):
                self._register_tree(obj, ep.name, dist)
            else:
                self.register(obj, name=ep.name, dist=dist)

    def _load_plugins_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            raise PluginError(f"--plugins-dir {directory}: not a directory")
        for path in sorted(directory.glob("*.py")):
            name = f"plugins_dir.{path.stem}"
            if self._is_blocked(path.stem) or self._is_blocked(name):
                continue
            spec = importlib.util.spec_from_file_location(f"rlcf_bench_plugins_dir_{path.stem}", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            # Registered before it runs, as an import would: dataclasses (with postponed
            # annotations) and pickling look the module up by name.
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[spec.name]
                raise PluginError(f"plugin file {path} failed to import: {exc!r}") from exc
            self.register(module, name=name, dist=(str(path), None))

    # ------------------------------------------------------------------ introspection
    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda x: x[0]):
            hooks = tuple(sorted(h.name for h in (self.pm.get_hookcallers(plugin) or [])))
            dist, version = self._dist_of.get(name, (None, None))
            infos.append(PluginInfo(name=name, distribution=dist, version=version, hooks=hooks))
        return infos

    def provider_of(self, plugin: Any) -> str:
        return self.pm.get_name(plugin) or repr(plugin)

    # ------------------------------------------------------------------ the typed facade
    def _call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook through pluggy (tracing, wrappers, ``tryfirst``/``trylast`` as pluggy
        documents) with every implementation guarded (:func:`_guard`): the non-``None`` answers,
        in pluggy's calling order."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            _guard(impl, hook_name)
        try:
            results = caller(**kwargs)
        except PluginError:
            raise
        except Exception as exc:  # pluggy's own refusal (a wrapper that does not yield, ...)
            if hook_name in _USER_INPUT_HOOKS:
                raise
            raise PluginError(f"hook {hook_name} failed: {type(exc).__name__}: {exc}") from exc
        return cast("list[Any]", results)

    def _collect(self, hook_name: str) -> list[Any]:
        """A registration hook's specs, flattened (each stamped with the plugin that returned it)."""
        return [spec for specs in self._call(hook_name) for spec in specs]

    def tasks(self) -> list[TaskSpec]:
        return self._collect("rlcfb_register_tasks")

    def datasets(self) -> list[DatasetSpec]:
        return self._collect("rlcfb_register_datasets")

    def models(self) -> list[ModelSpec]:
        return self._collect("rlcfb_register_models")

    def reward_models(self) -> list[RewardModelSpec]:
        return self._collect("rlcfb_register_reward_models")

    def methods(self) -> list[MethodSpec]:
        return self._collect("rlcfb_register_methods")

    def suites(self) -> list[SuiteSpec]:
        """The registered suites; the parts of a shared suite (``SuiteSpec.shared``) merged into one."""
        out: list[SuiteSpec] = []
        for spec in self._collect("rlcfb_register_suites"):
            i = next((k for k, s in enumerate(out) if s.name == spec.name and s.shared and spec.shared), None)
            if i is None:
                out.append(spec)
            else:
                out[i] = out[i].merge(spec)
        return out

    def references(self) -> list[ReferenceResult]:
        return self._collect("rlcfb_register_references")

    def display_names(self) -> dict[str, str]:
        """The plugins' display names (``rlcfb_display_names``), the first answer for a key winning."""
        out: dict[str, str] = {}
        for answer in self._call("rlcfb_display_names"):
            if not isinstance(answer, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                          for k, v in answer.items()):
                raise PluginError(f"rlcfb_display_names must return a mapping of str to str, got {answer!r}")
            for key, text in answer.items():
                out.setdefault(key, text)
        return out

    def dataset(self, name: str, params: Mapping[str, Any] | None = None) -> DatasetSpec:
        """The dataset spec for ``name``: a registered one, else the answer of
        ``rlcfb_resolve_dataset`` (scheme names such as ``folder:/path``), cached per session;
        else the registry's unknown-name error with close matches. Two plugins answering for one
        name is an error naming both (plugin order never decides)."""
        registry = self.registry("datasets")
        if name in registry:
            return registry.get(name)
        given = dict(params or {})
        from .streams import continual_members, continual_spec

        members = continual_members(name)
        if members is not None:  # the domains of a continual stream as one dataset (rlcf_bench.streams)
            return continual_spec(name, members, lambda m: self.dataset(m, given))
        key = (name, tuple(sorted((k, str(v)) for k, v in given.items())))
        if key not in self._resolved:
            answers: list[DatasetSpec] = self._call("rlcfb_resolve_dataset", name=name, params=given)
            if not answers:
                return registry.get(name)  # raises: unknown name, with suggestions
            if len(answers) > 1:
                from .registry import RegistryError

                raise RegistryError(f"dataset name {name!r} is resolved by two plugins: "
                                    f"{' and '.join(repr(a.provider) for a in answers)}; block one with -p no:PLUGIN")
            self._resolved[key] = answers[0]
        return self._resolved[key]

    def run_start(self, run_id: int, spec: RunSpec, n_total: int, n_done: int) -> None:
        self._call("rlcfb_run_start", run_id=run_id, spec=spec, n_total=n_total, n_done=n_done)

    def run_step(self, step: StepRecord) -> None:
        self._call("rlcfb_run_step", step=step)

    def run_finish(self, result: RunResult) -> None:
        self._call("rlcfb_run_finish", result=result)

    def run_error(self, error: RunError) -> None:
        self._call("rlcfb_run_error", error=error)

    def add_commands(self, cli: click.Group) -> None:
        self._call("rlcfb_add_commands", cli=cli)

    def report_sections(self, rows: Sequence[LeaderboardRow], store: Store) -> list[ReportSection]:
        sections: list[ReportSection] = []
        for result in self._call("rlcfb_report_sections", rows=rows, store=store):
            sections.extend(result)
        return sections

    # ------------------------------------------------------------------ registries
    @overload
    def registry(self, component: Literal["methods"]) -> MethodRegistry: ...
    @overload
    def registry(self, component: Literal["tasks"]) -> Registry[TaskSpec]: ...
    @overload
    def registry(self, component: Literal["datasets"]) -> Registry[DatasetSpec]: ...
    @overload
    def registry(self, component: Literal["models"]) -> Registry[ModelSpec]: ...
    @overload
    def registry(self, component: Literal["reward-models"]) -> Registry[RewardModelSpec]: ...
    @overload
    def registry(self, component: Literal["suites"]) -> Registry[SuiteSpec]: ...
    @overload
    def registry(self, component: str) -> Registry[Any]: ...

    def registry(self, component: str) -> Registry[Any]:
        from .registry import MethodRegistry, Registry

        if component not in self._registries:
            getters: dict[str, Callable[[], Sequence[Any]]] = {
                "tasks": self.tasks, "datasets": self.datasets, "models": self.models,
                "reward-models": self.reward_models, "methods": self.methods, "suites": self.suites,
            }
            getter = getters[component]
            self._registries[component] = (MethodRegistry if component == "methods" else Registry)(component, getter())
        registry: Registry[Any] = self._registries[component]
        return registry
