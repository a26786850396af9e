"""The paper layout as LaTeX (booktabs) that fits the page of a one- or two-column paper.

Every table is scaled down to the line width when wider (``\\rlcfbfit``: a ``\\resizebox`` that
never enlarges), so it cannot overflow. Scaling alone would make a wide table unreadable, so the
writer estimates each table's natural width (:func:`natural_width`, in points at ``\\small``)
and chooses:

* up to :data:`COLUMN_WIDTH` / :data:`MIN_SCALE`: a ``table`` (one column of a two-column paper);
* up to :data:`TEXT_WIDTH` / :data:`MIN_SCALE`: a ``table*`` (spans both columns of a two-column
  paper; the same as ``table`` in a one-column paper);
* wider: the table is split — the per-dataset columns with the last column in one float (in
  chunks of datasets where even those are too wide), the last column with the Δ columns in the
  next — each a ``table*``, so no float is scaled below :data:`MIN_SCALE` of its natural width.

The marks are explained under each table (``bold``, ``†``, ``*``, ``‡`` for the reward model's
reference rows), and the caption is the table's sentence (:attr:`PaperTable.caption`). Text from
the store, the plugins and ``--label`` is escaped (:func:`latex_escape`); display names are plain
text, never LaTeX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import fmt
from .paper import DIGITS, PaperCell, PaperRow, PaperTable
from .paper_cells import delta_cells

#: The widths the layout is chosen for (points): one column of a two-column paper (LaTeX's
#: ``article`` 229.5 pt; CVPR 237 pt, ACL 219 pt) and the narrowest common text width (``article``'s
#: one-column 345 pt; NeurIPS/ICLR 397 pt, two-column papers 455-505 pt).
COLUMN_WIDTH = 230.0
TEXT_WIDTH = 345.0
#: The smallest scale a table is shrunk to before the writer splits it instead.
MIN_SCALE = 0.7
#: Estimated width of one character at ``\small`` (digits are 4.5 pt; text averages about this),
#: and the space between two columns (``\tabcolsep`` = 4 pt on each side).
CHAR_PT = 4.6
COLUMN_GAP_PT = 8.0

PREAMBLE = (
    "% rlcf-bench results (paper layout). Needs \\usepackage{booktabs}, \\usepackage{xcolor} and\n"
    "% \\usepackage{graphicx}. \\rlcfbfit scales a table down to the line width (never up).\n"
    "\\providecommand{\\rlcfbfit}[1]{\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{#1}}"
)

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "Δ": r"$\Delta$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "≥": r"$\geq$", "≤": r"$\leq$",
    "±": r"$\pm$", "×": r"$\times$", "·": r"$\cdot$", "−": "-", "–": "--",
}
_REFERENCE_MARK = r"$^\ddagger$"


def latex_escape(text: str) -> str:
    """Escape text for LaTeX: the ten characters with a special meaning, ``< > |`` (which the
    default OT1 font encoding would print as other glyphs) and the symbols the tables use."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text)).replace(fmt.DASH, "---")


def _cell(c: PaperCell, intervals: bool, grey: bool) -> str:
    if not c.present:
        return "--"
    text = fmt.num(c.value, DIGITS)
    if c.best:
        text = rf"\textbf{{{text}}}"
    if intervals and c.ci_low is not None and c.ci_high is not None:
        text += rf" {{\scriptsize[{fmt.num(c.ci_low, DIGITS)}, {fmt.num(c.ci_high, DIGITS)}]}}"
    if c.tied and not c.best and not grey:
        text += r"$^\dagger$"
    return rf"\textcolor{{gray}}{{{text}}}" if grey else text


def _delta(text: str) -> str:
    """A Δ cell with its interval in small type, as the cells' intervals."""
    head, sep, rest = text.partition(" [")
    if not sep:
        return latex_escape(text)
    interval, _, tail = rest.partition("]")
    return f"{latex_escape(head)} {{\\scriptsize[{latex_escape(interval)}]}}{latex_escape(tail)}"


def _label(row: PaperRow) -> str:
    if row.kind == "reference":
        return latex_escape(row.name) + _REFERENCE_MARK
    label = latex_escape(row.label)
    return rf"\textcolor{{gray}}{{{label}}}" if row.kind == "reported" else label


@dataclass(frozen=True)
class _Part:
    """One float: which cells (indices into a row's cells) and Δ columns it shows."""

    cells: tuple[int, ...]
    deltas: bool
    note: str = ""


def _plain_length(latex: str) -> int:
    """Printed characters of a cell, roughly: macros and braces dropped, small type counted at 70%."""
    import re

    small = sum(len(m) for m in re.findall(r"\\scriptsize\[([^]]*)\]", latex))
    text = re.sub(r"\\[a-zA-Z]+|[{}$^]", "", latex)
    return int(len(text) - 0.3 * small)


def natural_width(table: PaperTable, part: _Part, intervals: bool) -> float:
    """The estimated natural width of ``part`` of ``table``, in points at ``\\small``."""

    columns: list[list[str]] = [["Method", *(_label(r) for r in table.rows)]]
    for j in part.cells:
        columns.append([latex_escape(table.columns[j]), *(_cell(r.cells[j], intervals, False) for r in table.rows)])
    if part.deltas:
        for k, title in enumerate(table.delta_columns):
            columns.append([latex_escape(title), *(_delta(delta_cells(r, table)[k]) for r in table.rows)])
    return sum(max(_plain_length(c) for c in col) * CHAR_PT + COLUMN_GAP_PT for col in columns)


def _parts(table: PaperTable, intervals: bool) -> tuple[str, list[_Part]]:
    """The float environment and the parts the table is printed in (see the module docstring)."""
    n = len(table.datasets)
    whole = _Part(tuple(range(n + 1)), True)
    width = natural_width(table, whole, intervals)
    if width <= COLUMN_WIDTH / MIN_SCALE:
        return "table", [whole]
    if width <= TEXT_WIDTH / MIN_SCALE:
        return "table*", [whole]
    chunks: list[list[int]] = [[]]
    for j in range(n):
        trial = _Part((*chunks[-1], j, n), False)
        if chunks[-1] and natural_width(table, trial, intervals) > TEXT_WIDTH / MIN_SCALE:
            chunks.append([])
        chunks[-1].append(j)
    parts = [_Part((*chunk, n) if i == len(chunks) - 1 else tuple(chunk), False,
                   f"Part {i + 1} of {len(chunks) + 1}." if len(chunks) > 1 else "")
             for i, chunk in enumerate(chunks)]
    parts.append(_Part((n,), True, "The Δ columns of the table above."))
    return "table*", parts


def _float(table: PaperTable, env: str, part: _Part, intervals: bool, first: bool) -> list[str]:

    caption = table.caption if first else f"{table.caption} (continued)"
    titles = [table.columns[j] for j in part.cells] + (list(table.delta_columns) if part.deltas else [])
    sources = [f"% {latex_escape(title)} = {latex_escape(name)}".replace("\n", " ") for title, name in table.sources]
    lines = [f"% table: {latex_escape(table.task)}", *sources, rf"\begin{{{env}}}[t]", r"\centering",
             rf"\caption{{{latex_escape(caption)}}}", r"\small", r"\setlength{\tabcolsep}{4pt}", r"\rlcfbfit{%",
             rf"\begin{{tabular}}{{l{'r' * len(titles)}}}", r"\toprule",
             "Method & " + " & ".join(latex_escape(t) for t in titles) + r" \\", r"\midrule"]
    reported_started = False
    for row in table.rows:
        grey = row.kind == "reported"
        if grey and not reported_started:
            lines.append(r"\midrule")
            reported_started = True
        cells = [_cell(row.cells[j], intervals, grey) for j in part.cells]
        if part.deltas:
            cells += [_delta(d) for d in delta_cells(row, table)]
        lines.append(_label(row) + " & " + " & ".join(cells) + r" \\")
    note = " ".join(x for x in (part.note, table.legend) if x)
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip",
              rf"\parbox{{\linewidth}}{{\footnotesize {latex_escape(note)}}}", rf"\end{{{env}}}", ""]
    return lines


def render_paper_latex(tables: Sequence[PaperTable], *, intervals: bool = False, note: str = "") -> str:
    """One float per task (or per part of a wide task, see the module docstring)."""
    lines = [PREAMBLE, *(f"% {latex_escape(line)}" for line in note.splitlines() if line)]
    for t in tables:
        env, parts = _parts(t, intervals)
        for i, part in enumerate(parts):
            lines += _float(t, env, part, intervals, i == 0)
    return "\n".join(lines)
