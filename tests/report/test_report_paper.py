"""The paper layout (methods x datasets, averages last) in Markdown, CSV, HTML and LaTeX.

The known store (report_store.py) gets a second classification dataset and two runs that differ
only by a method option. Each format is parsed back independently and the four must give the
same number, the same best marks and the same rows; the numbers themselves are recomputed here
from the known per-sample scores. The LaTeX is compiled when a TeX engine is installed, and
always parsed: balanced environments, booktabs rules, every row as many cells as the header.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_store import B16, EVIL, L14, KnownStore, add_run, build_report, cls_metrics, correct_on, render_paper
from sqlalchemy import select, update

from rlcf_bench.report import build_paper_tables
from rlcf_bench.report.markdown import md_unescape
from rlcf_bench.report.paper import REFERENCE_SUFFIX
from rlcf_bench.store import Run

Cells = dict[tuple[str, str, str], tuple[str, bool]]  # (task, row label, column) -> (value text, best)


def _extend(known: KnownStore) -> None:
    """imagenet-r: zero-shot 12/40, tpt 16/40, rlcf 20/40, the reward model's zero-shot 30/40;
    and two tpt runs on imagenet-r that differ by ``lr`` only (apart from the default tpt)."""
    cls = {"task": "classification", "kind": "classification", "dataset": "imagenet-r"}
    for method, hits, extra in (("zero-shot", 12, {}), ("tpt", 16, {}), ("rlcf", 20, {"reward_model": L14}),
                                ("zero-shot", 30, {"model": L14})):
        sc = correct_on(40, set(range(hits)))
        known.ids[f"r_{method}_{hits}"] = add_run(known.store, **cls, method=method, scores=sc,
                                                  metrics=cls_metrics(sc), **extra)
    configs = {}
    for lr, hits in ((0.001, 18), (0.01, 14)):
        sc = correct_on(40, set(range(hits)))
        configs[add_run(known.store, **cls, method="tpt", scores=sc, metrics=cls_metrics(sc))] = lr
    with known.store.session() as s, s.begin():
        for run in s.scalars(select(Run).where(Run.method == "tpt")):  # the others: lr 0.005
            s.execute(update(Run).where(Run.id == run.id).values(
                method_config={"lr": configs.get(run.id, 0.005), "steps": 1}))


# ------------------------------------------------------------------ parsers, one per format


def _parse_markdown(text: str) -> Cells:
    out: Cells = {}
    task, columns = "", []
    for line in text.splitlines():
        if line.startswith("## "):
            task = line[3:].split(":", 1)[0]
        elif line.startswith("| method |"):
            columns = [md_unescape(c.strip()) for c in line.strip("|").split(" | ")[1:]]
        elif line.startswith("| ") and columns:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            label = md_unescape(cells[0].strip("_"))
            for col, cell in zip(columns, cells[1:]):
                best = cell.startswith("**")
                if best:  # **value** with its tie mark after it
                    cell = cell[2:].replace("**", "", 1)
                elif cell.startswith("_") and not cell.startswith("_—"):
                    cell = cell.strip("_")
                out[(task, label, col)] = (md_unescape(cell), best)
    return out


def _parse_csv(text: str) -> Cells:
    out: Cells = {}
    for r in csv.DictReader(io.StringIO(text)):
        value = r["value"]
        if r["column"].startswith("Δ "):  # a Δ column: the difference, its interval and its adjusted mark
            shown = "—" if value == "" else f"{float(value):+.2f}"
            if value and r["tested"] == "false":
                shown += " (untested)"
            elif value:
                shown += f" [{float(r['delta_ci_low']):+.2f}, {float(r['delta_ci_high']):+.2f}]"
                shown += "*" if r["significant"] == "true" else ""
            if value and r["column"] == "Δ vs family baseline":
                shown = f"{r['against']}: {shown}"
            out[(r["task"], r["row"], r["column"])] = (shown, False)
            continue
        shown = "—" if value == "" else f"{float(value):.2f}"
        if value and r["ci_low"]:
            shown += f" [{float(r['ci_low']):.2f}, {float(r['ci_high']):.2f}]"
        out[(r["task"], r["row"], r["column"])] = (shown + ("†" if r["tied"] == "true" else ""), r["best"] == "true")
    return out


class _HtmlTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: Cells = {}
        self.task, self.columns, self.row, self.cell_best, self.text = "", [], [], [], None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.task, self.columns = a.get("data-task") or "", []
        elif tag == "tr":
            self.row, self.cell_best = [], []
        elif tag in ("td", "th"):
            self.text = ""
            self.cell_best.append("best" in (a.get("class") or ""))

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.row.append(self.text or "")
            self.text = None
        elif tag == "tr":
            if self.row and self.row[0] == "method":
                self.columns = self.row[1:]
            elif self.row:
                for col, cell, best in zip(self.columns, self.row[1:], self.cell_best[1:]):
                    self.cells[(self.task, self.row[0], col)] = (cell, best)


def _parse_html(text: str) -> Cells:
    p = _HtmlTables()
    p.feed(text)
    return p.cells


_LATEX_UNESCAPE = [("---", "—"), (r"$^\ddagger$", REFERENCE_SUFFIX), (r"$^\dagger$", "†"), (r"$\Delta$", "Δ"), (r"\textless{}", "<"), (r"\textgreater{}", ">"), (r"\textbar{}", "|"), (r"\_", "_"),
                   (r"\%", "%"), (r"\&", "&"), (r"\#", "#"), (r"\$", "$"), (r"\{", "{"), (r"\}", "}")]


def _strip_macros(cell: str) -> tuple[str, bool]:
    best = r"\textbf{" in cell
    cell = re.sub(r"\\textcolor\{gray\}\{(.*)\}$", r"\1", cell.strip())
    cell = re.sub(r"\\textbf\{([^}]*)\}", r"\1", cell)
    cell = re.sub(r"\{\\scriptsize(\[[^]]*\])\}", r"\1", cell)
    for a, b in _LATEX_UNESCAPE:
        cell = cell.replace(a, b)
    return ("—" if cell == "--" else cell), best


def _parse_latex(text: str) -> Cells:
    """Checks the structure while reading: environments balanced and nested, the booktabs rules
    in order, every row as many cells as the column specification."""
    stack: list[str] = []
    out: Cells = {}
    task, n_cols, columns, rules = "", 0, [], []
    for line in text.splitlines():
        if line.startswith("% table: "):
            task = _strip_macros(line[len("% table: "):])[0]
        if line.startswith("%"):
            continue
        for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", line):
            if kind == "begin":
                stack.append(env)
            else:
                assert stack and stack[-1] == env, f"\\end{{{env}}} closes {stack[-1:] or 'nothing'}"
                stack.pop()
        m = re.match(r"\\begin\{tabular\}\{(\w+)\}", line)
        if m:
            n_cols, columns, rules = len(m.group(1)), [], []
            assert set(m.group(1)) <= {"l", "r", "c"}
        if line in (r"\toprule", r"\midrule", r"\bottomrule"):
            rules.append(line)
        if line == r"\end{tabular}}":  # closes \rlcfbfit too
            assert rules[0] == r"\toprule" and rules[-1] == r"\bottomrule" and rules.count(r"\toprule") == 1
        if line.endswith(r"\\") and stack and stack[-1] == "tabular":
            cells = re.split(r"(?<!\\)&", line[:-2])
            assert len(cells) == n_cols, f"{len(cells)} cells, {n_cols} columns: {line}"
            if not columns:
                columns = [_strip_macros(c)[0] for c in cells[1:]]
                continue
            label = _strip_macros(cells[0])[0]
            for col, cell in zip(columns, cells[1:]):
                out[(task, label, col)] = _strip_macros(cell)
    assert not stack, f"unclosed environments: {stack}"
    return out


# ------------------------------------------------------------------ tests


def test_paper_layout_agrees_across_formats(known: KnownStore, tmp_path: Path) -> None:
    _extend(known)
    parsed = {fmt: parser(render_paper(known.store, fmt, intervals=True))
              for fmt, parser in (("markdown", _parse_markdown), ("csv", _parse_csv), ("html", _parse_html),
                                  ("latex", _parse_latex))}
    reference = parsed["csv"]
    assert len(reference) > 20
    for fmt, cells in parsed.items():
        assert cells == reference, f"{fmt} disagrees with csv: {set(cells.items()) ^ set(reference.items())}"

    def value(label: str, column: str, task: str = "classification") -> float:
        return float(reference[(task, label, column)][0].split(" ")[0])

    # Independent arithmetic from the known scores (40 samples per dataset).
    assert value("zero-shot", "imagenet-a") == pytest.approx(50.0)
    assert value("zero-shot", "imagenet-r") == pytest.approx(100 * 12 / 40)
    assert value("zero-shot", "average") == pytest.approx(round((50.0 + 30.0) / 2, 2))
    assert value("rlcf", "average") == pytest.approx(round((50.0 + 50.0) / 2, 2))
    # Without the installed method's defaults, the options that differ between its runs label the
    # rows. The lr=0.005 tpt row has both datasets; best per column among measured rows, in every format.
    assert value("tpt [lr=0.005]", "average") == pytest.approx(round((75.0 + 40.0) / 2, 2))
    best = {(k[1], k[2]) for k, (_, b) in reference.items() if b and k[0] == "classification"}
    assert best == {("tpt [lr=0.005]", "imagenet-a"), ("rlcf", "imagenet-r"), ("tpt [lr=0.005]", "average")}
    # Rows that differ by an option are two rows, labelled by the option; without the other
    # dataset their average is empty rather than an average over fewer datasets.
    assert value("tpt [lr=0.001]", "imagenet-r") == pytest.approx(45.0)
    assert value("tpt [lr=0.01]", "imagenet-r") == pytest.approx(35.0)
    assert reference[("classification", "tpt [lr=0.001]", "average")][0] == "—"
    # The reward model's zero-shot is context, never marked best although it is the highest.
    ref_label = f"zero-shot ({L14}) — reward model's reference run"
    assert value(ref_label, "imagenet-r") == pytest.approx(75.0)
    assert not reference[("classification", ref_label, "imagenet-r")][1]
    # The paper's number is a grey row; the hostile name stayed a name in every format.
    assert value("rlcf (reported: RLCF Table 1)", "imagenet-a") == pytest.approx(65.45)
    assert ("classification", EVIL, "imagenet-a") in reference
    # Δ columns: this table's last column is a plain average over two datasets that no suite declares,
    # so it has no test and its Δ cells are dashes (a declared average's are tested:
    # test_report_averages.py); the one-dataset retrieval table shows its dataset's test.
    assert reference[("classification", "rlcf", "Δ vs family baseline")][0] == "—"
    assert reference[("classification", "rlcf", "Δ vs zero-shot")][0] == "—"
    assert reference[("retrieval", "rlcf", "Δ vs zero-shot")][0].startswith("+33.33 [")
    # Intervals: the stored Wilson interval, printed alike everywhere.
    assert reference[("classification", "zero-shot", "imagenet-a")][0] == "50.00 [35.20, 64.80]"


def test_paper_options_and_toggles(known: KnownStore) -> None:
    _extend(known)
    md = render_paper(known.store, "markdown", reported=False)
    assert "reported" not in md.split("\n\n", 2)[2] and "[35.20" not in md
    tex = render_paper(known.store, "latex")
    assert r"\textcolor{gray}{rlcf (reported: RLCF Table 1)}" in tex and r"\textless{}script" in tex
    html = render_paper(known.store, "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    with pytest.raises(ValueError, match="no format 'json'"):
        render_paper(known.store, "json")
    tables = build_paper_tables(build_report(known.store, method="tpt"))
    assert [t.task for t in tables] == ["classification"]


def test_latex_compiles_when_a_tex_engine_is_installed(known: KnownStore, tmp_path: Path) -> None:
    engine = shutil.which("pdflatex") or shutil.which("lualatex")
    if engine is None:
        pytest.skip("no pdflatex/lualatex here: the LaTeX is only parsed (test above)")
    _extend(known)
    doc = tmp_path / "t.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs,xcolor,graphicx}\n\\begin{document}\n"
                   + render_paper(known.store, "latex", intervals=True) + "\n\\end{document}\n")
    res = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:]
    assert B16  # the known store's policy model is the main model: no model suffix on its rows


def test_options_against_the_installed_defaults_in_every_format(known: KnownStore) -> None:
    """With the method's defaults known, a run at the defaults shows no options; the others show
    only what differs (the full report's formats too; JSON as a dict)."""
    import json

    from rlcf_bench.report import render_report

    _extend(known)
    defaults = {("tpt", "classification"): {"lr": 0.005, "steps": 1}}
    report = build_report(known.store, method_defaults=defaults)
    labels = {r.label for t in build_paper_tables(report) for r in t.rows}
    assert {"tpt", "tpt [lr=0.001]", "tpt [lr=0.01]"} <= labels
    by_run = {r["run_id"]: r for r in json.loads(render_report(report, "json"))}
    lr_runs = [rid for rid, r in by_run.items() if r["method"] == "tpt" and r["method_config"]["lr"] == 0.001]
    assert len(lr_runs) == 1 and by_run[lr_runs[0]]["method_options"] == {"lr": 0.001}
    assert by_run[known.ids["tpt"]]["method_options"] == {}
    rows_csv = {int(r["run_id"]): r for r in csv.DictReader(io.StringIO(render_report(report, "csv")))}
    assert rows_csv[lr_runs[0]]["method_options"] == "lr=0.001"
    md = render_report(report, "markdown")
    assert f"| {lr_runs[0]} | tpt [lr=0.001] |" in md
    assert "Protocol p1aaaaaa: n_views" not in md  # the known store's protocol dict holds only the seed
    assert "Protocol p1aaaaaa: seed=0" in md


def test_defaults_are_per_implementation_so_a_multi_task_name_shows_no_spurious_options(registry_host) -> None:
    """``zero-shot`` captions with ``beams`` and classifies without: each run is compared with the
    defaults of the implementation that ran it, so neither shows its own defaults as options."""
    from rlcf_bench.report.options import method_defaults, options_by_run

    defaults = method_defaults(registry_host)
    captioning, classification = defaults[("zero-shot", "captioning")], defaults[("zero-shot", "classification")]
    assert "beams" in captioning and "beams" not in classification
    shown = options_by_run({1: (("zero-shot", "captioning"), captioning),
                            2: (("zero-shot", "classification"), classification),
                            3: (("zero-shot", "captioning"), {**captioning, "beams": 1})}, defaults)
    assert shown == {1: {}, 2: {}, 3: {"beams": 1}}


def test_labels_rename_and_stay_escaped(known: KnownStore) -> None:
    """``--label KEY=TEXT`` renames methods, datasets and the metric in every format, and a label
    is text: LaTeX, markdown and HTML escape it as they escape the store's names."""
    from click.testing import CliRunner

    from rlcf_bench.cli import build_cli
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.report.labels import parse_labels

    _extend(known)
    labels = parse_labels(["tpt=TPT_$x$ & co", "imagenet-a=IN-A", "top1=Top-1 <acc>", "tpt=TPT_$x$ & co"])
    tex = render_paper(known.store, "latex", labels=labels)
    assert r"TPT\_\$x\$ \& co [lr=0.001] &" in tex and "& IN-A &" in tex and r"Top-1 \textless{}acc\textgreater{}" in tex
    html = render_paper(known.store, "html", labels=labels)
    assert "TPT_$x$ &amp; co" in html and "<acc>" not in html
    with pytest.raises(ValueError, match="KEY=TEXT"):
        parse_labels(["no-equals-sign"])
    out = CliRunner().invoke(build_cli(PluginHost(autoload=False)),
                             ["report", "--layout", "paper", "--format", "latex", "--label", "imagenet-a=IN-A",
                              "--db", str(known.path)])
    assert out.exit_code == 0 and "& IN-A &" in out.output, out.output
    out = CliRunner().invoke(build_cli(PluginHost(autoload=False)),
                             ["report", "--layout", "paper", "--label", "oops", "--db", str(known.path)])
    assert out.exit_code == 2 and "--label expects KEY=TEXT" in out.output


def test_own_datasets_head_their_columns_with_a_short_name(known: KnownStore) -> None:
    """A dataset given as a path heads its column with its last component (unless labelled)."""
    for dataset in ("folder:/home/me/data/street-photos/", "csv:/home/me/lists/night.csv"):
        sc = correct_on(4, {0, 1})
        add_run(known.store, task="classification", kind="classification", dataset=dataset, method="zero-shot",
                scores=sc, metrics=cls_metrics(sc))
    table = build_paper_tables(build_report(known.store))[0]
    assert {"street-photos", "night"} <= set(table.columns)
    assert ("street-photos", "folder:/home/me/data/street-photos/") in table.sources  # the full name stays said
    assert "street-photos = folder:/home/me/data/street-photos/" in render_paper(known.store, "markdown")
    assert "% night = csv:/home/me/lists/night.csv" in render_paper(known.store, "latex")
    labelled = build_paper_tables(build_report(known.store), names={"csv:/home/me/lists/night.csv": "Night"})[0]
    assert "Night" in labelled.columns and "night" not in labelled.columns
