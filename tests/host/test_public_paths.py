"""Packages split into modules by concern keep one public import path: every public name a module
of :data:`PACKAGES` defines is importable from the package itself (``from rlcf_bench.types import
MethodContext``, ``rlcf_bench.tta.episode.run_episode``), the very same object, listed in the
package's ``__all__``; and ``__all__`` lists nothing else. A name added to one of the modules
without its re-export fails here."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGES = ("rlcf_bench.types", "rlcf_bench.tta.episode")


def defined_names(path: Path) -> Iterator[str]:
    """The public names a module defines at its top level (classes, functions, assigned names; not
    its lazily imported modules, ``torch: Any = LazyModule("torch")``)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call) \
                and ast.unparse(node.value.func) == "LazyModule":
            continue
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        yield from (n for n in names if not n.startswith("_"))


def modules_of(package: str) -> list[str]:
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(importlib.import_module(package).__path__)]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_of_a_module_is_exported_by_its_package(package: str) -> None:
    pkg = importlib.import_module(package)
    modules = modules_of(package)
    assert len(modules) >= 5  # the package is split, and the walk finds its modules
    exported: set[str] = set()
    for name in modules:
        module = importlib.import_module(name)
        for public in defined_names(Path(str(module.__file__))):
            assert public in pkg.__all__, f"{name}.{public} is not re-exported by {package}"
            assert getattr(pkg, public) is getattr(module, public)
            exported.add(public)
    assert set(pkg.__all__) == exported  # nothing listed that no module defines
    assert len(pkg.__all__) == len(set(pkg.__all__))


def test_the_historical_paths_of_the_split_modules() -> None:
    """A sample of what plugins import, spelled as they spell it (one name per former section)."""
    from rlcf_bench.tta.episode import DistillationConfig, FrozenViewsMethod, MomentumStart, run_episode
    from rlcf_bench.types import HOST_PROTOCOL_PARAMS, SKIPPED, DatasetLayoutError, MethodContext, ModelSpec, TaskSpec

    assert MethodContext.__module__ == "rlcf_bench.types.method"
    assert ModelSpec.__module__ == "rlcf_bench.types.components"
    assert TaskSpec.__module__ == "rlcf_bench.types.task"
    assert (SKIPPED, "order_seed" in HOST_PROTOCOL_PARAMS) == ("skipped", True)
    assert issubclass(DatasetLayoutError, RuntimeError)
    assert DistillationConfig().steps == 3 and callable(run_episode)
    assert FrozenViewsMethod.max_batch == 64 and MomentumStart.__module__ == "rlcf_bench.tta.episode.state"
