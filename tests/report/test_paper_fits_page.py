"""The paper layout of the committed reference fits the page of a one- and a two-column paper.

The tables are built from the committed reference report (``reference_report.py``) with the
installed plugins' display names, written as LaTeX and compiled with ``pdflatex`` in a plain
``article`` and a ``twocolumn`` one. ``\\rlcfbfit`` (the writer's scale-to-fit) is wrapped so that
the log states each table's natural width, its printed width and the line width; the test reads
them back: every table within its line, none shrunk below a readable scale, no overfull box, no
float larger than the page. Skipped, with the reason, where no ``pdflatex`` is installed (CI
installs ``texlive-latex-recommended``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from reference_report import REFERENCE, reference_report

from rlcf_bench.plugins import PluginHost
from rlcf_bench.report import build_paper_tables
from rlcf_bench.report.labels import display_names
from rlcf_bench.report.paper_formats import render_paper_tables
from rlcf_bench.report.paper_latex import MIN_SCALE, PREAMBLE

#: The table may be printed smaller than its natural size down to this factor (the writer aims at
#: MIN_SCALE from an estimate of the width; the log gives the true one).
READABLE = 0.6

_MEASURE = r"""
\newsavebox\rlcfbnatural
\newsavebox\rlcfbprinted
\newcommand{\rlcfbfit}[1]{\sbox\rlcfbnatural{#1}\sbox\rlcfbprinted{\rlcfbfitorig{#1}}%
  \typeout{RLCFB natural=\the\wd\rlcfbnatural\space printed=\the\wd\rlcfbprinted\space line=\the\linewidth
  \space text=\the\textwidth}\usebox\rlcfbprinted}
"""


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def _measure_preamble() -> str:
    """The writer's own \\rlcfbfit, renamed, inside a wrapper that logs the widths."""
    line = next(x for x in PREAMBLE.splitlines() if x.startswith(r"\providecommand{\rlcfbfit}"))
    return line.replace(r"\providecommand{\rlcfbfit}", r"\newcommand{\rlcfbfitorig}") + _MEASURE


def _compile(tmp_path: Path, name: str, options: str, body: str) -> str:
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no pdflatex on PATH (apt-get install texlive-latex-recommended): the LaTeX is only parsed "
                    "(test_report_paper.py)")
    doc = tmp_path / f"{name}.tex"
    doc.write_text(f"\\documentclass[{options}]{{article}}\n\\usepackage{{booktabs,xcolor,graphicx}}\n"
                   f"{_measure_preamble()}\n\\begin{{document}}\n{body}\n\\clearpage\n\\end{{document}}\n",
                   encoding="utf-8")
    res = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / f"{name}.log").read_text(encoding="latin-1")
    assert res.returncode == 0, log[-3000:]
    return log


def _widths(log: str) -> list[tuple[float, float, float]]:
    found = re.findall(r"RLCFB natural=([\d.]+)pt printed=([\d.]+)pt line=([\d.]+)pt", log.replace("\n", ""))
    return [(float(a), float(b), float(c)) for a, b, c in found]


@pytest.mark.parametrize("options", ["", "twocolumn"], ids=["one-column", "two-column"])
def test_reference_paper_tables_fit_the_page(host: PluginHost, tmp_path: Path, options: str) -> None:
    tables = build_paper_tables(reference_report(host), names=display_names(host))
    for intervals in (False, True):
        latex = render_paper_tables(tables, "latex", intervals=intervals)
        log = _compile(tmp_path, f"paper{int(intervals)}", options, latex)
        widths = _widths(log)
        assert len(widths) >= len(tables), "every table is measured"
        for natural, printed, line in widths:
            print(f"{options or 'onecolumn'} intervals={intervals}: natural {natural:.1f}pt, printed {printed:.1f}pt, "
                  f"line {line:.1f}pt (scale {printed / natural:.2f})")
            assert printed <= line + 0.1, f"a table {printed}pt wide in a {line}pt line"  # TeX's own \hfuzz
            assert printed / natural >= READABLE, f"a table shrunk to {printed / natural:.2f} of its size"
        assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
        assert "Float too large" not in log


def test_reference_table_reads_as_a_paper_table(host: PluginHost) -> None:
    """Columns in the suite's order with its display names, rows by family then by the average,
    a caption a person would write and the marks explained; the numbers are the committed ones."""
    report = reference_report(host)
    table = build_paper_tables(report, names=display_names(host))[0]
    assert table.datasets == ("micro-sketch", "micro-rendition", "micro-hard", "micro-resampled", "micro-noise")
    assert table.columns == ("Sketch", "Rendition", "Hard", "Resampled", "Noise", "OOD avg")
    labels = [r.label for r in table.rows]
    assert labels[0] == "Zero-shot" and labels.index("TPT (prompt)") < labels.index("TPT (image encoder)")
    assert table.caption.startswith("Classification: Top-1 accuracy (%) on 5 datasets, with their OOD avg (Sketch, ")
    assert "‡" in table.legend and "†" in table.legend and "Bold" in table.legend
    latex = render_paper_tables([table], "latex")
    assert r"Zero-shot (micro-reward)$^\ddagger$ &" in latex
    # The numbers are the committed paper.md's (written by `report --layout paper`, with the plugins'
    # display names): the same cells, row by row and column by column.
    committed = (REFERENCE / "paper.md").read_text(encoding="utf-8").split("\n## ")[1].splitlines()
    start = next(i for i, x in enumerate(committed) if x.startswith("| method"))
    header = [c.strip() for c in committed[start].strip("|").split("|")]
    cells = {}
    for line in committed[start + 2:]:
        if not line.startswith("|"):
            break
        parts = [c.strip() for c in line.strip("|").split("|")]
        cells.update({(parts[0], col): val for col, val in zip(header[1:], parts[1:])})
    ours = render_paper_tables([table], "markdown").split("\n## ")[1].splitlines()
    ours_header = [c.strip() for c in next(x for x in ours if x.startswith("| method")).strip("|").split("|")]
    n = 0
    for line in (x for x in ours if x.startswith("| ") and not x.startswith("| method")):
        parts = [c.strip() for c in line.strip("|").split("|")]
        for col, val in zip(ours_header[1:], parts[1:]):
            assert cells[(parts[0], col)] == val, (parts[0], col)
            n += 1
    assert n == len(cells) and n >= 19 * 8
    assert MIN_SCALE > READABLE


def test_a_wide_table_is_split_into_parts_that_fit(tmp_path: Path) -> None:
    """Fourteen datasets with long names and 20 methods: the writer splits the datasets into
    chunks (and the Δ columns apart); every part fits a one-column page at a readable scale."""
    from rlcf_bench.report.paper import PaperCell, PaperRow, PaperTable

    datasets = tuple(f"my-own-dataset-number-{i:02d}" for i in range(14))
    rows = tuple(PaperRow(f"method-with-a-long-name-{k:02d}", "measured",
                          tuple(PaperCell(50.0 + k + i / 10, 40.0, 60.0, tied=k % 3 == 0) for i in range(15)))
                 for k in range(20))
    table = PaperTable("classification", "classification", "top1", datasets, rows)
    latex = render_paper_tables([table], "latex", intervals=True)
    assert latex.count(r"\begin{table*}") >= 3 and "(continued)" in latex
    log = _compile(tmp_path, "wide", "", latex)
    widths = _widths(log)
    assert len(widths) == latex.count(r"\begin{table*}")
    for natural, printed, line in widths:
        print(f"wide part: natural {natural:.1f}pt, printed {printed:.1f}pt, line {line:.1f}pt")
        assert printed <= line + 0.1 and printed / natural >= READABLE, (natural, printed, line)
    assert "Overfull \\hbox" not in log and "Float too large" not in log
