"""The plugin manager and the one typed facade that calls hooks.

Load order: hook specs, objects the caller passes (the CLI's terminal reporter), entry points of group ``rlcf_bench`` (unless
autoload is off), one-file plugins from ``--plugins-dir``; ``-p no:NAME`` blocks are applied
before loading; ``check_pending()`` catches misspelt ``rlcfb_`` implementations.

A plugin that is a *package* has each of its public submodules registered as its own plugin
(``NAME.submodule``): dropping a file into ``baselines/`` adds a method with no list to edit.

The manager is per session (``PluginHost``), never a module global, so tests build their own.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import pkgutil
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import pluggy

from . import hookspecs
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
    from .registry import MethodRegistry, Registry

AUTOLOAD_ENV = "RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "RLCF_BENCH_TRACE_PLUGINS"
ENTRY_POINT_GROUP = "rlcf_bench"



class PluginError(RuntimeError):
    """A plugin could not be loaded, or two plugins clash."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginHost:
    """A session's plugin manager plus the typed facade over ``pm.hook``.

    :param autoload: load entry points of group ``rlcf_bench`` (also switched off by the
        environment variable ``RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD=1``).
    :param blocked: plugin names to block (``-p no:NAME``); a block of ``baselines`` also blocks
        ``baselines.tpt`` and the other submodules.
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
        self.register(module, name=name, dist=dist)
        if hasattr(module, "__path__"):  # a package: every public submodule is a plugin too
            for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda i: i.name):
                if info.name.startswith("_"):
                    continue
                subname = f"{name}.{info.name}"
                if self._is_blocked(subname):
                    continue
                try:
                    sub = importlib.import_module(f"{module.__name__}.{info.name}")
                except Exception as exc:
                    raise PluginError(f"plugin {subname!r} failed to import: {exc!r}") from exc
                self._register_tree(sub, subname, dist)

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
    def _collect(self, hook_name: str) -> list[tuple[str, Any]]:
        """Call a registration hook implementation by implementation, keeping the provider."""
        out: list[tuple[str, Any]] = []
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            result = self._call(impl, hook_name, {})
            for spec in result or ():
                out.append((impl.plugin_name, spec))
        return out

    def tasks(self) -> list[TaskSpec]:
        return self._specs("rlcfb_register_tasks")

    def datasets(self) -> list[DatasetSpec]:
        return self._specs("rlcfb_register_datasets")

    def models(self) -> list[ModelSpec]:
        return self._specs("rlcfb_register_models")

    def reward_models(self) -> list[RewardModelSpec]:
        return self._specs("rlcfb_register_reward_models")

    def methods(self) -> list[MethodSpec]:
        return self._specs("rlcfb_register_methods")

    def suites(self) -> list[SuiteSpec]:
        return self._specs("rlcfb_register_suites")

    def references(self) -> list[ReferenceResult]:
        return [spec for _, spec in self._collect("rlcfb_register_references")]

    def _specs(self, hook_name: str) -> list[Any]:
        import dataclasses

        return [
            dataclasses.replace(spec, provider=spec.provider or provider)
            for provider, spec in self._collect(hook_name)
        ]

    @staticmethod
    def _call(impl: Any, hook_name: str, kwargs: dict[str, Any]) -> Any:
        """Call one hook implementation; a failure names the plugin that raised it."""
        try:
            return impl.function(*[kwargs[a] for a in impl.argnames])
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} — its hook {hook_name} raised "
                              f"{type(exc).__name__}: {exc} (block it with -p no:{impl.plugin_name})") from exc

    def _each(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of a hook (last registered first, as pluggy does)."""
        caller = getattr(self.pm.hook, hook_name)
        return [self._call(impl, hook_name, kwargs) for impl in reversed(caller.get_hookimpls())]
    def dataset(self, name: str, params: Mapping[str, Any] | None = None) -> DatasetSpec:
        """The dataset spec for ``name``: a registered one, else the answer of
        ``rlcfb_resolve_dataset`` (scheme names such as ``folder:/path``), cached per session;
        else the registry's unknown-name error with close matches. Two plugins answering for one
        name is an error naming both (plugin order never decides)."""
        import dataclasses

        registry = self.registry("datasets")
        if name in registry:
            return registry.get(name)
        given = dict(params or {})
        key = (name, tuple(sorted((k, str(v)) for k, v in given.items())))
        if key not in self._resolved:
            answers: list[DatasetSpec] = []
            for impl in reversed(self.pm.hook.rlcfb_resolve_dataset.get_hookimpls()):
                args = {"name": name, "params": given}
                spec = cast("DatasetSpec | None", impl.function(*[args[a] for a in impl.argnames]))
                if spec is not None:
                    answers.append(dataclasses.replace(spec, provider=spec.provider or impl.plugin_name))
            if not answers:
                return registry.get(name)  # raises: unknown name, with suggestions
            if len(answers) > 1:
                from .registry import RegistryError

                raise RegistryError(f"dataset name {name!r} is resolved by two plugins: "
                                    f"{' and '.join(repr(a.provider) for a in answers)}; block one with -p no:PLUGIN")
            self._resolved[key] = answers[0]
        return self._resolved[key]

    def run_start(self, run_id: int, spec: RunSpec, n_total: int, n_done: int) -> None:
        self._each("rlcfb_run_start", run_id=run_id, spec=spec, n_total=n_total, n_done=n_done)

    def run_step(self, step: StepRecord) -> None:
        self._each("rlcfb_run_step", step=step)

    def run_finish(self, result: RunResult) -> None:
        self._each("rlcfb_run_finish", result=result)

    def run_error(self, error: RunError) -> None:
        self._each("rlcfb_run_error", error=error)

    def add_commands(self, cli: Any) -> None:
        self._each("rlcfb_add_commands", cli=cli)

    def report_sections(self, rows: Sequence[Any], store: Any) -> list[ReportSection]:
        sections: list[ReportSection] = []
        for result in self._each("rlcfb_report_sections", rows=rows, store=store):
            sections.extend(result or ())
        return sections

    # ------------------------------------------------------------------ registries
    @overload
    def registry(self, kind: Literal["methods"]) -> MethodRegistry: ...
    @overload
    def registry(self, kind: Literal["tasks"]) -> Registry[TaskSpec]: ...
    @overload
    def registry(self, kind: Literal["datasets"]) -> Registry[DatasetSpec]: ...
    @overload
    def registry(self, kind: Literal["models"]) -> Registry[ModelSpec]: ...
    @overload
    def registry(self, kind: Literal["reward-models"]) -> Registry[RewardModelSpec]: ...
    @overload
    def registry(self, kind: Literal["suites"]) -> Registry[SuiteSpec]: ...
    @overload
    def registry(self, kind: str) -> Registry[Any]: ...

    def registry(self, kind: str) -> Registry[Any]:
        from .registry import MethodRegistry, Registry

        if kind not in self._registries:
            getters: dict[str, Callable[[], Sequence[Any]]] = {
                "tasks": self.tasks, "datasets": self.datasets, "models": self.models,
                "reward-models": self.reward_models, "methods": self.methods, "suites": self.suites,
            }
            getter = getters[kind]
            self._registries[kind] = (MethodRegistry if kind == "methods" else Registry)(kind, getter())
        registry: Registry[Any] = self._registries[kind]
        return registry
