"""Layout validation (datasets): what is present, missing or malformed on disk."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayoutProblem:
    path: str
    expected: str
    found: str


@dataclass
class LayoutReport:
    dataset: str
    root: str
    ok_items: list[str] = field(default_factory=list)
    problems: list[LayoutProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, expected: str, found: str) -> None:
        self.problems.append(LayoutProblem(str(path), expected, found))

    def render(self) -> str:
        lines = [f"dataset {self.dataset!r} at {self.root}: {'OK' if self.ok else 'PROBLEMS'}"]
        lines += [f"  present   {item}" for item in self.ok_items]
        lines += [f"  PROBLEM   {p.path}\n            expected: {p.expected}\n            found:    {p.found}" for p in self.problems]
        from ..fs_names import fs_text  # file names hold any bytes; the report must print anyway

        return fs_text("\n".join(lines))

    def __iter__(self) -> Iterator[LayoutProblem]:
        return iter(self.problems)


class DatasetLayoutError(RuntimeError):
    """Raised before a run starts when a dataset's on-disk layout is wrong."""

    def __init__(self, report: LayoutReport) -> None:
        super().__init__(report.render())
        self.report = report
