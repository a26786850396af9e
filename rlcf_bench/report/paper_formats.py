"""The paper layout (:mod:`rlcf_bench.report.paper`) as Markdown, CSV, HTML and LaTeX (booktabs).

Every text format prints the cells through :func:`cell_text` (two decimals), so the formats
cannot disagree on a number; CSV carries full precision. Text from the store is escaped for each
syntax: markdown cells as in the full report, HTML through :func:`html.escape`, LaTeX by
backslash-escaping its special characters (:mod:`rlcf_bench.report.paper_latex`, which also fits
the table to the page), CSV cells that a spreadsheet would run as a
formula get a leading ``'``.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence

from .csv_table import _n, _text
from .markdown import md_escape
from .paper import PaperTable
from .paper_cells import SIG, TIED, cell_text, delta_cells, delta_text
from .paper_latex import latex_escape, render_paper_latex
from .rows import Comparison

PAPER_FORMATS: tuple[str, ...] = ("markdown", "csv", "html", "latex")
_ALIASES = {"md": "markdown", "tex": "latex", "htm": "html"}


def normalise_paper_format(name: str) -> str:
    out = _ALIASES.get(name.lower(), name.lower())
    if out not in PAPER_FORMATS:
        raise ValueError(f"the paper layout has no format {name!r}; choose one of {', '.join(PAPER_FORMATS)}")
    return out


def _note(tables: Sequence[PaperTable]) -> str:
    if not tables:
        return "No finished runs match."
    return ("Main comparable group of each dataset only; rows ordered by method family, then by the last "
            f"column. Best measured value per column in bold; {TIED}: not significantly different from it "
            "(its paired test against the column's best run, Holm-adjusted over the column, p >= 0.05). "
            "Reported rows are the paper's numbers for the same setting. The last column averages the "
            "dataset group a suite declares (e.g. OOD avg, named in each caption; each dataset weighted "
            "equally), else all datasets of the table; it is empty where a row misses one. The Δ columns give "
            "the last column's difference to the reference method and to the family baseline with its 95% "
            f"interval; {SIG}: significant after the multiplicity adjustment (the average's test is stratified "
            "by dataset; it covers the listed datasets only).")


# ---------------------------------------------------------------------------------- markdown


def render_paper_markdown(tables: Sequence[PaperTable], *, intervals: bool = False) -> str:
    lines = ["# rlcf-bench results (paper layout)", "", md_escape(_note(tables)), ""]
    for t in tables:
        lines += [f"## {md_escape(t.task)}", "", md_escape(t.caption), "", md_escape(t.legend), ""]
        lines += [f"Datasets: {md_escape(t.sources_text)}", ""] if t.sources else []
        columns = (*t.columns, *t.delta_columns)
        lines.append("| method | " + " | ".join(md_escape(c) for c in columns) + " |")
        lines.append("|---|" + "|".join("---:" for _ in columns) + "|")
        for row in t.rows:
            cells = []
            for c in row.cells:
                text = md_escape(cell_text(c, intervals))
                text = f"**{text}**" if c.best else (f"_{text}_" if row.kind == "reported" and c.present else text)
                cells.append(text + (TIED if c.tied and not c.best and row.kind == "measured" else ""))
            cells += [md_escape(d) for d in delta_cells(row, t)]
            label = md_escape(row.label)
            lines.append(f"| {'_' + label + '_' if row.kind == 'reported' else label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------- CSV


def render_paper_csv(tables: Sequence[PaperTable], *, intervals: bool = False) -> str:
    """Long format, one line per (table, row, column): easy to pivot, full precision. The Δ
    columns are lines too (``column`` names them): ``value`` is the difference, ``delta_ci_low``/
    ``delta_ci_high`` its 95% interval, ``p``/``p_adjusted``/``significant`` its test
    (``tested`` false: a corpus metric's difference, shown untested); ``tied``: not significantly
    different from the column's best (adjusted)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["task", "metric", "row", "kind", "source", "column", "value"]
    header += ["ci_low", "ci_high"] if intervals else []
    header += ["best", "run_id", "tied", "family", "against", "delta_ci_low", "delta_ci_high", "p", "p_adjusted",
               "significant", "tested"]
    w.writerow(header)
    for t in tables:
        for row in t.rows:
            lead = [_text(t.task), _text(t.metric), _text(row.label), row.kind, _text(row.source)]
            for column, c in zip(t.columns, row.cells):
                line = [*lead, _text(column), _n(c.value if c.present else None)]
                line += [_n(c.ci_low), _n(c.ci_high)] if intervals else []
                line += [_n(c.best), _n(c.run_id), _n(c.tied and not c.best and row.kind == "measured"),
                         _text(row.family), "", "", "", "", "", "", ""]
                w.writerow(line)
            for column, comp in zip(t.delta_columns, (row.vs_reference, row.vs_baseline)):
                shown = comp if row.kind == "measured" and comp is not None and comp.n_shared else None
                line = [*lead, _text(column), _n(None if shown is None else shown.delta)]
                line += ["", ""] if intervals else []
                line += ["false", "", "false", _text(row.family)]
                tested = shown is not None and not (isinstance(shown, Comparison) and not shown.on_primary)
                line += (["", "", "", "", "", "", ""] if shown is None else
                         [_text(shown.against_method), _n(shown.ci_low if tested else None),
                          _n(shown.ci_high if tested else None), _n(shown.p_value if tested else None),
                          _n(shown.p_adjusted if tested else None), _n(shown.significant and tested), _n(tested)])
                w.writerow(line)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- HTML

_CSS = """
body { margin: 0; background: #fafafa; color: #1d1d1f;
       font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif; }
main { max-width: 1400px; margin: 0 auto; padding: 16px 24px 48px; }
table.paper { border-collapse: collapse; background: #fff; margin: 6px 0 18px;
              border-top: 2px solid #222; border-bottom: 2px solid #222; }
table.paper th { border-bottom: 1px solid #222; padding: 4px 10px; text-align: right; }
table.paper th:first-child, table.paper td:first-child { text-align: left; }
table.paper td { padding: 3px 10px; text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.paper td.best { font-weight: 700; }
table.paper tr.reported td { color: #888; font-style: italic; }
table.paper tr.first-reported td { border-top: 1px solid #bbb; }
"""


def render_paper_html(tables: Sequence[PaperTable], *, intervals: bool = False) -> str:
    e = html.escape
    body = ["<h1>rlcf-bench results (paper layout)</h1>", f"<p>{e(_note(tables))}</p>"]
    for t in tables:
        body.append(f"<h2>{e(t.task)}</h2>")
        body.append(f'<table class="paper" data-task="{e(t.task)}"><caption>{e(t.caption)} {e(t.legend)}{" Datasets: " + e(t.sources_text) if t.sources else ""}</caption>')
        body.append("<thead><tr><th>method</th>" + "".join(f'<th scope="col">{e(c)}</th>'
                                                            for c in (*t.columns, *t.delta_columns))
                    + "</tr></thead><tbody>")
        first_reported = True
        for row in t.rows:
            cls = row.kind
            if row.kind == "reported" and first_reported:
                cls, first_reported = "reported first-reported", False
            cells = "".join(("<td class=\"best\">" if c.best else "<td>") + e(cell_text(c, intervals))
                            + (TIED if c.tied and not c.best and row.kind == "measured" else "") + "</td>"
                            for c in row.cells)
            cells += "".join(f"<td>{e(d)}</td>" for d in delta_cells(row, t))
            body.append(f'<tr class="{cls}"><td>{e(row.label)}</td>{cells}</tr>')
        body.append("</tbody></table>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
            f"<title>rlcf-bench results (paper layout)</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def _latex(tables: Sequence[PaperTable], *, intervals: bool = False) -> str:
    return render_paper_latex(tables, intervals=intervals, note=_note(tables))


_RENDERERS = {"markdown": render_paper_markdown, "csv": render_paper_csv, "html": render_paper_html,
              "latex": _latex}

__all__ = ["PAPER_FORMATS", "cell_text", "delta_text", "latex_escape", "normalise_paper_format", "render_paper_tables"]


def render_paper_tables(tables: Sequence[PaperTable], fmt_name: str, *, intervals: bool = False) -> str:
    return _RENDERERS[normalise_paper_format(fmt_name)](tables, intervals=intervals)
