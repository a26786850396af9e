"""The core (``rlcf_bench/``) names no method: which methods are compared with which is declared by
suites (:class:`rlcf_bench.Comparisons`), so no string in the core's code may be a registered
method's name. Prose (docstrings and comments) may use words like "zero-shot"; the command-line
help's example lines (``rlcf-bench run --method ...``) are examples a user reads, not a decision
the core makes, and are the one exemption."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rlcf_bench
from rlcf_bench.plugins import PluginHost

CORE = Path(rlcf_bench.__file__).parent
_EXAMPLE_LINE = re.compile(r"^\s*rlcf-bench .*$", re.MULTILINE)


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def named_methods(source: str, names: set[str]) -> list[tuple[int, str]]:
    """``(line, name)`` for every non-docstring string constant of ``source`` naming a method as a
    whole token (``zero`` in ``zero-shot`` or ``rlcf`` in ``rlcf-bench`` is no match)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    patterns = {n: re.compile(r"(?<![\w-])" + re.escape(n) + r"(?![\w-])") for n in names}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = _EXAMPLE_LINE.sub("", node.value)
            hits += [(node.lineno, n) for n, p in patterns.items() if p.search(text)]
    return hits


def test_the_scan_finds_a_method_name() -> None:
    names = {"zero-shot", "tpt-prompt", "zero"}
    assert named_methods('ZERO_SHOT = "zero-shot"\n', names) == [(1, "zero-shot")]
    assert named_methods('x = f"Δ vs {1} tpt-prompt"\n', names) == [(1, "tpt-prompt")]
    assert named_methods('"""zero-shot prose."""\nx = "rlcf-bench run --method zero-shot"\n', names) == []


def test_no_registered_method_name_in_the_core() -> None:
    names = {spec.name for spec in PluginHost().methods()}
    assert {"zero-shot", "tpt-prompt", "rlcf-image"} <= names  # the first-party plugins are installed
    found = [f"{path.relative_to(CORE.parent)}:{line}: {name}"
             for path in sorted(CORE.rglob("*.py")) for line, name in named_methods(path.read_text("utf-8"), names)]
    assert found == []
