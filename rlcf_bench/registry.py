"""Name → spec registries built from the registration hooks.

A duplicate name is an error naming both providers (resolve it with ``-p no:PLUGIN``); an
unknown name is an error with close matches.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, specs: Iterable[T]) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        for spec in specs:
            name = spec.name  # type: ignore[attr-defined]
            if name in self._items:
                first = self._items[name].provider  # type: ignore[attr-defined]
                second = spec.provider  # type: ignore[attr-defined]
                raise RegistryError(
                    f"{kind[:-1] if kind.endswith('s') else kind} {name!r} is registered twice: "
                    f"by plugin {first!r} and by plugin {second!r}; block one with -p no:PLUGIN"
                )
            self._items[name] = spec

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(sorted(self._items.values(), key=lambda s: s.name))  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self._items)

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._items)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        for spec in self._items.values():  # backends that claim a family of names
            accepts: Any = getattr(spec, "accepts", None)
            if accepts is not None and accepts(name):
                return spec
        close = difflib.get_close_matches(name, list(self._items), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise RegistryError(
            f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}{hint} "
            f"(`rlcf-bench ls {self.kind}` lists them)"
        )
