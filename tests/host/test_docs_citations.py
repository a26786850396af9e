"""The "why" lives in the repository: no file cites the external reference documents the code
was first written from, and every ``docs/<page>.md#<anchor>`` citation names a heading that
exists (GitHub's anchor of that heading), so a docstring's pointer cannot silently rot."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SKIP_PARTS = {"__pycache__", "build", "dist", "node_modules", "site-packages"}

# Built from pieces so that this file does not match itself.
_SECTION = "\u00a7"
FORBIDDEN = [
    re.compile("spec " + _SECTION),
    re.compile("rlcf" + "-spec"),
    re.compile("methods" + "-zoo"),
    re.compile(r"\.\./" + "shared"),
    re.compile("shared/" + "reference"),
    # a bare section number ("§5.2") points at a document nobody can open; the paper's own
    # sections ("paper §4.2") are public and allowed
    re.compile(r"(?<![Pp]aper )" + _SECTION + r"\s*\d"),
]
CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
DOC_LINK = re.compile(r"\]\((?:\./)?([\w-]+\.md)?#([\w-]+)\)")  # links between pages of docs/
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation dropped (letters, digits, ``_``,
    ``-`` and spaces kept), spaces turned into hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: str) -> frozenset[str]:
    """The anchors of ``docs/<page>``'s headings (outside fenced code), with GitHub's ``-1``,
    ``-2`` suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced = False
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(out)


def _repo_files() -> list[Path]:
    """Tracked and new (not ignored) files; a plain walk when this is not a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
        paths = [ROOT / p for p in listed if p]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*")
                 if not any(part.startswith(".") or part in SKIP_PARTS for part in p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.suffix in {".py", ".md"} and p.is_file())


def forbidden_citations(text: str) -> list[str]:
    return [m.group(0) for rx in FORBIDDEN for m in rx.finditer(text)]


def test_detectors_flag_external_citations_and_slug_like_github():
    assert forbidden_citations("views as in spec " + _SECTION + "1.2") != []
    assert forbidden_citations("see ../" + "shared/reference/x.md") != []
    assert forbidden_citations("the " + _SECTION + "5.2 feature dictionary") != []
    assert forbidden_citations("RLCF paper " + _SECTION + "4.2") == []
    assert forbidden_citations("see docs/original-code.md#views") == []
    assert github_slug("Reward ensemble (RLCF-S)") == "reward-ensemble-rlcf-s"
    assert github_slug("Top-K instead of sampling") == "top-k-instead-of-sampling"
    assert github_slug("`rlcfb_register_tasks()`") == "rlcfb_register_tasks"


def test_no_file_cites_the_external_reference_documents():
    here = Path(__file__).resolve()
    offenders = []
    for path in _repo_files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "docs" or path.resolve() == here:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for hit in forbidden_citations(line):
                offenders.append(f"{rel}:{lineno}: {hit!r}")
    assert not offenders, ("cite the project's docs/ pages instead of the external reference:\n"
                           + "\n".join(offenders))


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_pages_link_to_existing_headings(page):
    broken = []
    for target, anchor in DOC_LINK.findall((DOCS / page).read_text(encoding="utf-8")):
        target = target or page
        if not (DOCS / target).is_file():
            broken.append(f"{target} (no such page)")
        elif anchor not in anchors(target):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"docs/{page} links to missing headings: {broken}"


def test_every_docs_citation_names_an_existing_page_and_heading():
    here = Path(__file__).resolve()
    broken = []
    cited = 0
    for path in _repo_files():
        if path.resolve() == here:
            continue
        rel = path.relative_to(ROOT)
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for page, anchor in CITATION.findall(line):
                cited += 1
                if not (DOCS / page).is_file():
                    broken.append(f"{rel}:{lineno}: docs/{page} does not exist")
                elif anchor and anchor not in anchors(page):
                    broken.append(f"{rel}:{lineno}: docs/{page} has no heading #{anchor}")
    assert cited > 0, "no docs/ citations found: the scanner is not reading the repository"
    assert not broken, "\n".join(broken)
