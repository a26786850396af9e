"""What the documentation tells users to import keeps working, and the tests the code cites exist.

* Every first-party import in README.md and docs/*.md — ``from X import Y`` / ``import X`` in their
  code blocks, and dotted paths such as ``rlcf_bench.tta.vlm.OpenClipVLM`` in inline code — imports.
* Every ``tests/....py`` a docstring, comment or page cites is a file of the repository.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIRST_PARTY = re.compile(r"^(rlcf_bench|rlcf_bench_[a-z]+)$")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"(?<![\w./])((?:rlcf_bench|rlcf_bench_[a-z]+)(?:\.[A-Za-z_]\w*)+)")
IMPORT_LINE = re.compile(r"^\s*(from\s+[\w.]+\s+import\s+[^#]+|import\s+[\w., ]+)")


def _imports_of(code: str) -> Iterator[str]:
    """``module`` or ``module:name`` for every first-party import statement in ``code``."""
    try:
        statements = [node for node in ast.walk(ast.parse(code))]
    except SyntaxError:  # a shell block, a fragment: take the lines that are import statements
        statements = []
        for line in code.splitlines():
            match = IMPORT_LINE.match(line)
            if match:
                try:
                    statements.extend(ast.parse(match.group(1).strip().rstrip("\\(")).body)
                except SyntaxError:
                    continue
    for node in statements:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if FIRST_PARTY.match(alias.name.split(".")[0]))
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if FIRST_PARTY.match(node.module.split(".")[0]):
                yield from (f"{node.module}:{alias.name}" for alias in node.names if alias.name != "*")


@cache
def documented_paths() -> dict[str, list[str]]:
    """``import path -> pages using it``."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        paths = [p for block in FENCE.findall(text) for p in _imports_of(block)]
        for span in INLINE.findall(FENCE.sub("", text)):
            if span.startswith(("from ", "import ")):
                paths.extend(_imports_of(span))
            paths.extend(DOTTED.findall(span))
        for path in paths:
            found.setdefault(path, []).append(page.name)
    return found


def resolve(path: str) -> object:
    """Import ``module:name`` (``from module import name``) or a dotted ``a.b.c`` (the longest
    importable module prefix, then attributes)."""
    if ":" in path:
        module_name, name = path.split(":")
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            return getattr(module, name)
        return importlib.import_module(f"{module_name}.{name}")
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


def test_the_pages_are_parsed():
    paths = documented_paths()
    assert "rlcf_bench:hookimpl" in paths  # README's one-file method: `from rlcf_bench import ... hookimpl`
    assert "rlcf_bench.bounded" in paths  # an inline dotted path: `rlcf_bench.bounded(default, ge=...)`
    assert list(_imports_of("from rlcf_bench.tta import (\n  episode,\n  views)\n")) == [
        "rlcf_bench.tta:episode", "rlcf_bench.tta:views"]
    assert list(_imports_of("$ python -c 1\nfrom os import path\nimport rlcf_bench_baselines.tda\n")) == ["rlcf_bench_baselines.tda"]


@pytest.mark.parametrize("path", sorted(documented_paths()))
def test_every_documented_import_path_works(path):
    try:
        resolve(path)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{path} (used in {', '.join(sorted(set(documented_paths()[path])))}) does not import: {exc}")


CITED_TEST = re.compile(r"tests/[\w/]+\.py")
SCANNED = ["rlcf_bench", "plugins", "baselines", "docs", "tools", "tests"]


def test_every_cited_test_file_exists():
    missing = []
    files = [ROOT / "README.md", *(p for d in SCANNED for p in (ROOT / d).rglob("*")
                                  if p.suffix in {".py", ".md", ".toml", ".sh"} and "__pycache__" not in p.parts)]
    for path in files:
        for cited in set(CITED_TEST.findall(path.read_text(encoding="utf-8", errors="replace"))):
            if not (ROOT / cited).exists():
                missing.append(f"{path.relative_to(ROOT)} cites {cited}")
    assert missing == []
