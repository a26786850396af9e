"""Name → spec registries built from the registration hooks.

A duplicate name is an error naming both providers (resolve it with ``-p no:PLUGIN``); an
unknown name is an error with close matches. Methods are keyed by (name, task): one public name
(``zero-shot``, ``rlcf``) may have one implementation per task (:class:`MethodRegistry`). A name
claimed by two backends' ``accepts`` is an error naming both: plugin order never decides.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .errors import RegistryError as RegistryError  # its public path (defined with the other errors)
from .types import MethodSpec, config_from_pairs


class Spec(Protocol):
    """What a registry holds: a spec with a name and the plugin that supplied it (the host fills
    ``provider`` in). A spec may also claim a family of names with ``accepts(name) -> bool``."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> str: ...


T = TypeVar("T", bound=Spec)


def _singular(component: str) -> str:
    return component[:-1] if component.endswith("s") else component


def _accepts(spec: Spec, name: str) -> bool:
    """Whether ``spec`` claims ``name`` through its optional ``accepts``."""
    accepts = getattr(spec, "accepts", None)
    return accepts is not None and bool(accepts(name))




class Registry(Generic[T]):
    def __init__(self, component: str, specs: Iterable[T]) -> None:
        self.component = component  # what it registers: "tasks", "datasets", ...
        self._items: dict[str, T] = {}
        for spec in specs:
            name = spec.name
            if name in self._items:
                first = self._items[name].provider
                second = spec.provider
                raise RegistryError(
                    f"{_singular(component)} {name!r} is registered twice: "
                    f"by plugin {first!r} and by plugin {second!r}; block one with -p no:PLUGIN"
                )
            self._items[name] = spec

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(sorted(self._items.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._items)

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._items)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        # Backends that claim a family of names (ARCH@TAG, ...): exactly one may claim a name.
        claimants = [spec for spec in self._items.values() if _accepts(spec, name)]
        if len(claimants) > 1:
            who = " and ".join(f"{s.name!r} (plugin {s.provider!r})" for s in claimants)
            raise RegistryError(f"{_singular(self.component)} name {name!r} is accepted by two backends: {who}; "
                                f"block one with -p no:PLUGIN")
        if claimants:
            return claimants[0]
        raise self.unknown(name)

    def summary(self, name: str) -> Any:
        """What ``rlcf-bench ls`` shows for ``name`` (the spec itself)."""
        return self.get(name)

    def unknown(self, name: str) -> RegistryError:
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return RegistryError(f"unknown {_singular(self.component)} {name!r}{hint} (`rlcf-bench ls {self.component}` lists them)")


@dataclass(frozen=True)
class MethodSummary:
    """One public method name over its per-task implementations (what ``ls methods`` shows)."""

    name: str
    version: str
    tasks: frozenset[str]
    requires: frozenset[str]
    episodic: bool
    provider: str
    description: str
    #: ``episodic``, ``online`` (per sample) or ``batch`` (online, per batch): MethodSpec.mode
    mode: str = "episodic"


class MethodRegistry(Registry[MethodSpec]):
    """Methods keyed by (name, task).

    A public name may have several implementations, one per task (``zero-shot`` classifies with
    one class and captions with another); two implementations of one name for the same task are an
    error naming both providers. ``get(name, task)`` is the implementation serving ``task``.
    """

    def __init__(self, component: str, specs: Iterable[MethodSpec]) -> None:
        self.component = component
        self._items = {}  # name → its first implementation (names, ``in``)
        self._impls: dict[str, list[MethodSpec]] = {}
        self._by_task: dict[tuple[str, str], MethodSpec] = {}
        for spec in specs:
            for task in sorted(spec.tasks):
                first = self._by_task.get((spec.name, task))
                if first is not None:
                    raise RegistryError(
                        f"method {spec.name!r} for task {task!r} is registered twice: by plugin {first.provider!r} "
                        f"and by plugin {spec.provider!r}; block one with -p no:PLUGIN")
                self._by_task[(spec.name, task)] = spec
            self._items.setdefault(spec.name, spec)
            self._impls.setdefault(spec.name, []).append(spec)

    def __iter__(self) -> Iterator[MethodSpec]:
        """Every implementation, by name then task."""
        return iter(sorted((s for impls in self._impls.values() for s in impls),
                           key=lambda s: (s.name, sorted(s.tasks))))

    def implementations(self, name: str) -> list[MethodSpec]:
        if name not in self._impls:
            raise self.unknown(name)
        return list(self._impls[name])

    def tasks_of(self, name: str) -> frozenset[str]:
        return frozenset().union(*(s.tasks for s in self.implementations(name)))

    def get(self, name: str, task: str | None = None) -> MethodSpec:
        """The implementation of ``name`` for ``task`` (``None``: the name's only implementation)."""
        impls = self.implementations(name)
        if task is None:
            if len(impls) == 1:
                return impls[0]
            raise RegistryError(f"method {name!r} has one implementation per task "
                                f"({', '.join(sorted(self.tasks_of(name)))}): name the task")
        if (name, task) not in self._by_task:
            raise RegistryError(f"method {name!r} does not support task {task!r} "
                                f"(it supports {', '.join(sorted(self.tasks_of(name)))})")
        return self._by_task[(name, task)]

    def config(self, name: str, task: str, pairs: Any) -> Any:
        """The config of ``name``'s implementation for ``task`` from ``-m key=value`` pairs; an
        option that implementation does not have is an error naming the task."""
        try:
            return config_from_pairs(self.get(name, task).config_cls, pairs)
        except ValueError as exc:
            raise ValueError(f"{exc} (method {name!r} on the {task} task)") from exc

    def summary(self, name: str) -> MethodSummary:
        impls = self.implementations(name)
        versions = sorted({s.version for s in impls})
        return MethodSummary(
            name=name, version="/".join(versions), tasks=self.tasks_of(name),
            requires=frozenset().union(*(s.requires for s in impls)), episodic=all(s.episodic for s in impls),
            provider=",".join(sorted({s.provider for s in impls})),
            description="; ".join(dict.fromkeys(s.description.rstrip(".") for s in impls if s.description)),
            mode="/".join(dict.fromkeys(s.mode for s in impls)),
        )
