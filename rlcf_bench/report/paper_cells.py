"""The text of a paper table's cells, shared by every paper format (markdown, CSV, HTML, LaTeX):
a value with its optional interval, and the Δ cells with their marks."""

from __future__ import annotations

from . import fmt
from .averages import PooledComparison
from .paper import DIGITS, PaperCell, PaperRow, PaperTable
from .rows import Comparison

TIED = "†"  # not significantly different from the column's best (adjusted)
SIG = "*"  # a Δ significant after the multiplicity adjustment


def cell_text(cell: PaperCell, intervals: bool) -> str:
    """``50.00`` or, with intervals, ``50.00 [34.49, 65.51]``; a dash for a missing value."""
    if not cell.present:
        return fmt.DASH
    text = fmt.num(cell.value, DIGITS)
    if intervals and cell.ci_low is not None and cell.ci_high is not None:
        text += f" [{fmt.num(cell.ci_low, DIGITS)}, {fmt.num(cell.ci_high, DIGITS)}]"
    return text


def delta_text(c: Comparison | PooledComparison | None) -> str:
    """``+2.10 [-0.30, +4.50]*``: the last column's difference with the 95% interval of the tested
    difference, ``*`` when significant after the adjustment; a corpus metric's difference has no
    test of its own here (``untested``)."""
    if c is None or c.n_shared == 0:
        return fmt.DASH
    if isinstance(c, Comparison) and not c.on_primary:
        return f"{fmt.signed(c.delta)} (untested)"
    return f"{fmt.signed(c.delta)} {fmt.interval(c.ci_low, c.ci_high)}{SIG if c.significant else ''}"


def delta_cells(row: PaperRow, table: PaperTable) -> tuple[str, str]:
    """The two Δ cells; the family baseline's names the baseline (it varies by row)."""
    if row.kind != "measured":
        return (fmt.DASH, fmt.DASH)
    base = delta_text(row.vs_baseline)
    named = (base if row.vs_baseline is None or base == fmt.DASH
             else f"{table.title(row.vs_baseline.against_method)}: {base}")
    return (delta_text(row.vs_reference), named)
