"""The structure of the host package, drawn from its imports (every ``import`` statement of every
module, function-level ones included; only ``if TYPE_CHECKING:`` blocks are left out, as they are
never executed): no cycle among host modules, and no host module importing a plugin package."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = REPO / "rlcf_bench"
#: Every first-party plugin package (each folder of plugins/, and baselines/), by import name.
PLUGIN_PACKAGES = frozenset({p.name for p in (REPO / "plugins").iterdir() if p.is_dir()}
                            | {p.name for p in (REPO / "plugins").glob("*/*") if (p / "__init__.py").exists()}
                            | {"baselines"})


@functools.cache
def host_modules() -> dict[str, Path]:
    """``dotted name -> file`` of every module of the host package (packages by their ``__init__``)."""
    out = {}
    for path in sorted(HOST.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _executed(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield other
                yield from _executed(other)
            continue
        yield node
        yield from _executed(node)


def imported_names(module: str, path: Path) -> Iterator[str]:
    """The absolute dotted names ``module`` imports (``from a import b`` gives ``a.b`` where that is
    a module, else ``a``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = host_modules()
    for node in _executed(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            yield from subs if len(subs) == len(node.names) else [base, *subs]


def import_graph() -> dict[str, set[str]]:
    """``module -> host modules it imports``. A module's own parent packages are not edges: Python
    initialises them before the module whatever the module imports."""
    modules = host_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in imported_names(module, path):
            parts = name.split(".")
            target = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in modules),
                          None)
            if target is not None and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_drawn_from_real_imports() -> None:
    graph = import_graph()
    assert "rlcf_bench.types" in graph["rlcf_bench.runner"]  # a module-level relative import
    assert "rlcf_bench.report.averages" in graph["rlcf_bench.report.build"]
    assert "rlcf_bench.online_protocol" in graph["rlcf_bench.task"]  # a function-level import counts
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycles_among_host_modules() -> None:
    assert cycles(import_graph()) == []


def test_no_host_module_imports_a_plugin_package() -> None:
    assert {"baselines", "rlcf_bench_tasks", "rlcf_bench_models"} <= PLUGIN_PACKAGES
    offenders = sorted((module, name) for module, path in host_modules().items()
                       for name in imported_names(module, path) if name.split(".")[0] in PLUGIN_PACKAGES)
    assert offenders == []


def test_the_core_knows_no_toolkit_module() -> None:
    """The core (runner, store, reports, CLI, ...) imports nothing of the TTA toolkit
    (``rlcf_bench.tta``), not even inside a function: the toolkit is for method plugins."""
    graph = import_graph()
    assert any(m.startswith("rlcf_bench.tta.") for m in graph)  # the toolkit is in the graph
    offenders = sorted((m, n) for m, names in graph.items() if not m.startswith("rlcf_bench.tta")
                       for n in names if n.startswith("rlcf_bench.tta"))
    assert offenders == []
