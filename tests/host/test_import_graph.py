"""The structure of the code, drawn from its imports (every ``import`` statement of every module,
function-level ones included).

* The host package: no cycle among its modules, none even counting the imports of ``if
  TYPE_CHECKING:`` blocks (never executed, but a cycle there is still two modules that must be read
  together), and no host module importing a plugin package or, outside the toolkit, the toolkit.
* The first-party plugin packages (``plugins/*``, ``baselines``): no cycle inside a package (typing
  imports included), and each package imports only the first-party packages its layer allows
  (:data:`ALLOWED`): the core imports no plugin, a task imports no suite or method, and so on.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = REPO / "rlcf_bench"
#: Every first-party plugin package, by import name -> its folder.
PLUGIN_ROOTS = {**{p.name: p for p in (REPO / "plugins").iterdir() if (p / "__init__.py").exists()},
                **{p.name: p for p in (REPO / "plugins").glob("*/*")  # a separate distribution's package
                   if (p / "__init__.py").exists() and not (p.parent / "__init__.py").exists()},
                "rlcf_bench_baselines": REPO / "baselines" / "rlcf_bench_baselines"}
PLUGIN_PACKAGES = frozenset(PLUGIN_ROOTS)


def _modules_under(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


@functools.cache
def host_modules() -> dict[str, Path]:
    """``dotted name -> file`` of every module of the host package (packages by their ``__init__``)."""
    return _modules_under(HOST, "rlcf_bench")


@functools.cache
def all_modules() -> dict[str, Path]:
    """Every first-party module: the host's and every plugin package's."""
    out = dict(host_modules())
    for package, root in PLUGIN_ROOTS.items():
        out.update(_modules_under(root, package))
    return out


def _executed(tree: ast.AST, typing: bool = False) -> Iterator[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks (with ``typing``: every node)."""
    for node in ast.iter_child_nodes(tree):
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield other
                yield from _executed(other, typing)
            continue
        yield node
        yield from _executed(node, typing)


def imported_names(module: str, path: Path, typing: bool = False) -> Iterator[str]:
    """The absolute dotted names ``module`` imports (``from a import b`` gives ``a.b`` where that is
    a module, else ``a``); with ``typing``, those of ``if TYPE_CHECKING:`` blocks too."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = all_modules()
    for node in _executed(ast.parse(path.read_text(encoding="utf-8")), typing):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            yield from subs if len(subs) == len(node.names) else [base, *subs]


@functools.cache
def import_graph(typing: bool = False, every: bool = False) -> dict[str, set[str]]:
    """``module -> first-party modules it imports``: of the host package, or with ``every`` of the
    host and every plugin package; with ``typing``, counting ``TYPE_CHECKING`` imports. A module's
    own parent packages are not edges: Python initialises them before the module whatever the
    module imports."""
    modules = all_modules() if every else host_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in imported_names(module, path, typing):
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


def test_typing_imports_and_plugin_packages_are_in_the_graph() -> None:
    assert "rlcf_bench.task" not in import_graph()["rlcf_bench.types.task"]
    assert "rlcf_bench.task" in import_graph(typing=True)["rlcf_bench.types.task"]  # `if TYPE_CHECKING:` import
    every = import_graph(every=True)
    assert "rlcf_bench_tasks.retrieval_common" in every["rlcf_bench_baselines.zero_shot"]  # a plugin package's import
    assert "rlcf_bench_micro.zoo" in every["rlcf_bench_micro.commands"]  # a relative one inside a package


def test_no_cycles_among_host_modules() -> None:
    assert cycles(import_graph()) == []


#: ``TYPE_CHECKING`` imports that close a cycle, each with the reason it is not broken yet. Named as
#: edges (not as cycles) so that unrelated changes to the modules around them keep the test exact.
KNOWN_TYPING_EDGES = {
    # The report-section hook is typed with the rows it receives, the report's LeaderboardRow, and
    # the report's modules name PluginHost (report/options.py, report/tasks.py read the installed
    # plugins' metadata). Breaking it needs the report to take a narrower host protocol (the
    # report's files are being reworked in parallel).
    ("rlcf_bench.hookspecs", "rlcf_bench.report.rows"),
    ("rlcf_bench.plugins", "rlcf_bench.report.rows"),
}


def test_no_cycles_counting_typing_imports_but_the_known_edges() -> None:
    """``if TYPE_CHECKING:`` imports count: modules that name each other only for the type checker
    still have to be read together. A known edge must still exist and still close a cycle."""
    graph = import_graph(typing=True, every=True)
    assert all(b in graph[a] for a, b in KNOWN_TYPING_EDGES), "a known edge is gone: remove it here"
    pruned = {m: {n for n in names if (m, n) not in KNOWN_TYPING_EDGES} for m, names in graph.items()}
    assert cycles(pruned) == []
    for edge in KNOWN_TYPING_EDGES:  # each exception is needed: without it, it would close a cycle
        a, b = edge
        with_edge = {m: set(names) for m, names in pruned.items()}
        with_edge[a].add(b)
        assert any(a in c and b in c for c in cycles(with_edge)), f"{edge} closes no cycle: remove it here"


#: Which first-party plugin packages each plugin package may import (besides itself and the host
#: package ``rlcf_bench``, toolkit included; the host imports none, tested above). The layers:
#: tasks and model backends (the ClipCap/CapDec captioner included) rest on the core alone;
#: datasets on the core and the tasks (an open-set mix, ``imagenet-openset``, is built with the
#: open-set task's ``openset_mix``, as does the embedded suite's micro-openset); the tiny fixtures and the embedded suite on the models (their
#: captioners are ClipCap models); methods (``baselines``, the RLCF family) on the tasks they serve
#: and the models; the example distribution, a template a third party copies, on the core alone.
#: Nothing imports a suite or a method package, and no task imports a model or a suite (the back-edges).
ALLOWED: dict[str, frozenset[str]] = {
    "rlcf_bench_tasks": frozenset(),
    "rlcf_bench_datasets": frozenset({"rlcf_bench_tasks"}),
    "rlcf_bench_models": frozenset(),
    "rlcf_bench_fixtures": frozenset({"rlcf_bench_models"}),
    "rlcf_bench_baselines": frozenset({"rlcf_bench_tasks"}),
    "rlcf_bench_rlcf": frozenset({"rlcf_bench_tasks", "rlcf_bench_models"}),
    "rlcf_bench_micro": frozenset({"rlcf_bench_models", "rlcf_bench_tasks"}),  # the open-set mix (micro-openset)
    "rlcf_bench_example": frozenset(),
}

#: Private modules (a leading ``_``) of a plugin package that other packages may import, each with
#: its reason. Shared code is otherwise a public module: plugin discovery registers only the modules
#: that define an ``rlcfb_`` hook, so a public module of shared code is no plugin.
SHARED_PRIVATE: dict[str, str] = {
    # Discovery imports every public submodule of a plugin package, and the captioner's modules
    # import torch at module level: a public package would make every CLI start import torch.
    "rlcf_bench_models._clipcap": "the ClipCap/CapDec captioner, imported by the fixtures' and the "
                                  "micro suite's captioners",
}


def test_a_plugin_package_imports_no_private_module_of_another() -> None:
    """``rlcf_bench_tasks._retrieval`` imported by the retrieval methods was such a case."""
    graph = import_graph(typing=True, every=True)
    assert "rlcf_bench_tasks.retrieval_common" in graph["rlcf_bench_rlcf._retrieval"]  # public shared code
    offenders = sorted(
        (module, name) for module, names in graph.items() if module.split(".")[0] in PLUGIN_PACKAGES
        for name in names
        if name.split(".")[0] in PLUGIN_PACKAGES - {module.split(".")[0]}
        and any(part.startswith("_") for part in name.split(".")[1:])
        and not any(name == p or name.startswith(p + ".") for p in SHARED_PRIVATE))
    assert offenders == []


def test_every_plugin_package_has_a_layer_and_the_layers_have_no_cycle() -> None:
    assert set(ALLOWED) == PLUGIN_PACKAGES
    assert cycles({p: set(deps) for p, deps in ALLOWED.items()}) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_plugin_package_imports_only_what_its_layer_allows(package: str) -> None:
    """Typing imports included. A tasks module importing the micro suite or a model (a back-edge),
    or the models importing a task, fails here."""
    graph = import_graph(typing=True, every=True)
    offenders = sorted((module, name) for module, names in graph.items() if module.split(".")[0] == package
                       for name in names
                       if name.split(".")[0] not in {package, "rlcf_bench", *ALLOWED[package]})
    assert offenders == []


def test_no_host_module_imports_a_plugin_package() -> None:
    assert {"rlcf_bench_baselines", "rlcf_bench_tasks", "rlcf_bench_models"} <= PLUGIN_PACKAGES
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
