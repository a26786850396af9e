"""The report's matplotlib charts: error bars, legends instead of point labels, memory only
where it differs, store text escaped, deterministic output; and no glitches (issue 28): math
rendering on (no raw mathtext), legends clear of each other and of the data (matplotlib's own
extents), distinct colour/marker pairs, values clear of the error-bar caps, PDF/SVG export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from reference_report import reference_report
from report_store import EVIL, KnownStore, render

from rlcf_bench.plugins import PluginHost
from rlcf_bench.report import charts
from rlcf_bench.report.figures import stream_figures, task_figures


def test_bars_carry_their_interval_as_an_error_bar() -> None:
    with_ci = charts.bar_chart("t", [charts.BarItem("d", "m", 50.0, "#000", 40.0, 60.0)], "%")
    without = charts.bar_chart("t", [charts.BarItem("d", "m", 50.0, "#000")], "%")
    assert 'id="LineCollection_' in with_ci and 'id="LineCollection_' not in without
    assert with_ci == charts.bar_chart("t", [charts.BarItem("d", "m", 50.0, "#000", 40.0, 60.0)], "%")


def test_scatter_names_methods_and_datasets_in_legends_and_escapes_them() -> None:
    items = [charts.ScatterItem(10.0 * (i + 1), 50.0 + i, m, d, c)
             for i, (m, d, c) in enumerate([(EVIL, "a", "#111"), ("tpt $x$", "b", "#222"), (EVIL, "b", "#111")])]
    svg = charts.scatter_chart("s", items, "ms", "top1")
    assert "<script>" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "tpt $x$" in svg  # never parsed as mathtext
    assert svg.count(">method<") == 1  # one legend, under the panels
    assert ">a<" in svg and ">b<" in svg  # a panel per dataset, titled
    assert "(log scale)" not in svg  # 10..30 ms: linear axis


def test_memory_chart_only_where_memory_differs(known: KnownStore) -> None:
    assert not charts.memory_differs([1100.0, 1150.0, 1200.0])
    assert charts.memory_differs([300.0, 2400.0])
    page = render(known.store, "html")
    assert page.count("peak memory</text>") == 1  # classification: 300-2400 MB; retrieval, captioning: 512 each
    assert page.count("Peak memory 512–512 MB in every run") == 2
    # Log-scale latency ticks drawn as powers of ten, not as raw mathtext (nor its source comments).
    assert "(log scale)" in page and not RAW_MATHTEXT.search(page) and "<!--" not in page


# ------------------------------------------------------------------ glitches (issue 28)

RAW_MATHTEXT = re.compile(r"\$[^$<]*\\(mathdefault|times|cdot)|\\mathdefault")
LONG = ["confident-view-ensemble", "boostadapter", "rlcf-image [lr=0.0001, steps=3]", "RM zero-shot (micro-reward)"]


def _drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()
    return fig


def _overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


def _assert_legends_clear(fig: Figure) -> int:
    """Every legend inside the figure (no label cut), clear of every axes and of each other
    (matplotlib's own extents after drawing); the number of legends checked."""
    fig = _drawn(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    boxes = [leg.get_window_extent(renderer) for leg in legends]
    frame = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)  # what savefig(bbox_inches="tight") keeps
    for leg, box in zip(legends, boxes):
        for text in leg.get_texts():
            t = text.get_window_extent(renderer)
            assert frame.x0 - 0.5 <= t.x0 and t.x1 <= frame.x1 + 0.5, f"legend label {text.get_text()!r} is cut"
        for ax in fig.axes:
            if ax.get_visible():
                assert not _overlap(box, ax.get_window_extent(renderer)), "a legend overlaps an axes' data area"
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not _overlap(a, b), "two legends overlap"
    return len(legends)


def test_palette_gives_distinct_colour_marker_pairs() -> None:
    names = [f"method-{i:02d}" for i in range(84)]
    styles = charts.style_map(names)
    assert len({(s.colour, s.marker) for s in styles.values()}) == 84
    assert len({styles[n].colour for n in names[:7]}) == 7  # neighbours differ in colour first
    assert charts.style_map(list(reversed(names))) == styles  # stable, whatever the order given
    assert "#F0E442" not in charts.PALETTE  # Okabe-Ito's yellow is too pale on white


def test_legends_never_overlap_each_other_or_the_data() -> None:
    """24 methods with long names on five datasets, and a stream plot of ten runs."""
    styles = charts.style_map([*LONG, *(f"method-{i}" for i in range(20))])
    items = [charts.ScatterItem(1.0 + 37 * i + j, 40.0 + i + j, m, f"micro-domain-{j}", st.colour, st.marker)
             for i, (m, st) in enumerate(styles.items()) for j in range(5)]
    scatter = charts.scatter_figure("classification: top1 vs latency", items, "ms per sample (median)", "top1 (%)")
    assert _assert_legends_clear(scatter) == 1
    lines = [charts.LineItem(f"{m} (run {i})", st.colour, [(10.0 * k, 50.0 + k) for k in range(11)], st.marker)
             for i, (m, st) in enumerate(list(styles.items())[:10])]
    assert _assert_legends_clear(charts.line_figure("stream", lines, "samples seen (%)", "running top-1 (%)")) == 1


def test_bar_values_sit_clear_of_the_error_bar_caps() -> None:
    items = [charts.BarItem("d", m, 40.0 + i, "#000", 30.0 + i, 55.0 + i) for i, m in enumerate(LONG)]
    fig = _drawn(charts.bar_figure("t", items, "%", full_scale=100.0))
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    values = [t for t in ax.texts if t.get_gid() == "bar-value"]
    caps = [cap for c in ax.containers if getattr(c, "errorbar", None) is not None for cap in c.errorbar.lines[1]]
    assert len(values) == len(items) and caps
    for text in values:
        box = text.get_window_extent(renderer)
        for cap in caps:
            assert not _overlap(box, cap.get_window_extent(renderer)), f"{text.get_text()} sits on an error-bar cap"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.mark.slow
def test_every_figure_of_the_reference_renders_clean(host: PluginHost) -> None:
    """The committed reference's figures (18 methods on five datasets, a latency axis spanning
    more than a factor 20, so logarithmic): no raw mathtext in the SVG, legends clear. (About a
    minute on a loaded 2-core machine; the known store's figures are checked the same way in the
    default suite, below.)"""
    report = reference_report(host)
    figures = [f for t in task_figures(report) for f in t.figures] + stream_figures(report)
    assert len(figures) >= 6
    log_axes = 0
    for f in figures:
        fig = f.build()
        _assert_legends_clear(fig)
        svg = charts.to_svg(fig)
        assert not RAW_MATHTEXT.search(svg), f"{f.stem}: raw mathtext {RAW_MATHTEXT.search(svg)}"
        log_axes += "(log scale)" in svg
        if f.stem == "classification-top1":
            assert ">confident-view-ensemble<" in svg  # the full label, as one text element
    assert log_axes >= 1, "the reference's latencies span a log axis (whose ticks were raw mathtext before)"


def test_report_figures_option_writes_pdf_and_svg(known: KnownStore, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rlcf_bench.cli import build_cli

    out = CliRunner().invoke(build_cli(PluginHost(autoload=False)),
                             ["report", "--figures", str(tmp_path / "figs"), "--db", str(known.path)])
    assert out.exit_code == 0, out.output
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert "classification-top1.pdf" in written and "classification-top1-latency.svg" in written
    assert "classification-peak-memory.pdf" in written  # 300-2400 MB: the memory chart is drawn
    assert len(written) % 2 == 0 and {Path(n).suffix for n in written} == {".pdf", ".svg"}
    assert all((tmp_path / "figs" / n).read_bytes().startswith(b"%PDF") for n in written if n.endswith(".pdf"))
    svgs = {n: (tmp_path / "figs" / n).read_text(encoding="utf-8") for n in written if n.endswith(".svg")}
    assert "(log scale)" in svgs["classification-top1-latency.svg"]  # 5-400 ms: ticks are powers of ten
    for name, svg in svgs.items():  # matplotlib keeps each text's source in a comment: the drawn text counts
        drawn = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
        assert not RAW_MATHTEXT.search(drawn), f"{name}: raw mathtext"
