"""The HTML report's matplotlib charts: error bars, legends instead of point labels, memory only
where it differs, store text escaped, deterministic output."""

from __future__ import annotations

from report_store import EVIL, KnownStore, render

from rlcf_bench.report import charts


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
    assert svg.count(">method<") == 1 and svg.count(">dataset<") == 1  # one legend each, outside the axes
    assert "(log scale)" not in svg  # 10..30 ms: linear axis


def test_memory_chart_only_where_memory_differs(known: KnownStore) -> None:
    assert not charts.memory_differs([1100.0, 1150.0, 1200.0])
    assert charts.memory_differs([300.0, 2400.0])
    page = render(known.store, "html")
    assert page.count("peak memory</text>") == 1  # classification: 300-2400 MB; retrieval, captioning: 512 each
    assert page.count("Peak memory 512–512 MB in every run") == 2
