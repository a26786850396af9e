"""What a report's ``--method`` / ``--dataset`` filters do, and what they never do.

A filter only *hides*: the report is built from every finished run of the task, so a rank, a
paired test, a multiplicity adjustment (whose family spans a table's datasets) and a "best" mark
are the same numbers the unfiltered report prints. Both filters take several names (``--method A
--method B``: the rows of A or B). An average over a dataset group is shown only when the
dataset filter keeps every dataset of the group; otherwise one note says the filter left the
group out (never that a run is missing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: A filter as the API takes it: one name, several names, or None (everything).
NameFilter = str | Iterable[str] | None


def names(selection: NameFilter) -> frozenset[str] | None:
    """The names a filter selects (None: no filter; an empty collection also means none)."""
    if selection is None:
        return None
    if isinstance(selection, str):
        return frozenset({selection})
    chosen = frozenset(selection)
    return chosen or None


@dataclass(frozen=True)
class Selection:
    """The rows a report shows: ``methods`` / ``datasets`` None keeps all."""

    methods: frozenset[str] | None = None
    datasets: frozenset[str] | None = None

    @classmethod
    def of(cls, method: NameFilter = None, dataset: NameFilter = None) -> Selection:
        return cls(names(method), names(dataset))

    @property
    def active(self) -> bool:
        return self.methods is not None or self.datasets is not None

    def method(self, name: str) -> bool:
        return self.methods is None or name in self.methods

    def dataset(self, name: str) -> bool:
        return self.datasets is None or name in self.datasets

    def datasets_all(self, group: Sequence[str]) -> bool:
        """Whether the dataset filter keeps every dataset of ``group``."""
        return self.datasets is None or set(group) <= self.datasets

    def left_out(self, group: Sequence[str]) -> list[str]:
        return [d for d in group if not self.dataset(d)]

    def scope_text(self) -> str:
        """One sentence for a filtered table: what the marks and tests refer to."""
        parts = []
        if self.methods is not None:
            parts.append("method " + ", ".join(sorted(self.methods)))
        if self.datasets is not None:
            parts.append("dataset " + ", ".join(sorted(self.datasets)))
        return (f"Filtered to {' and '.join(parts)}: the filter only hides rows and columns; ranks, tests, "
                "adjustments and the best marks are those of the unfiltered report (best among every method "
                "run, not only the rows shown).")
