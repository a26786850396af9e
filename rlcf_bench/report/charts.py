"""The report's charts, drawn by matplotlib: inlined as SVG in the HTML page (offline, no script)
and written as PDF and SVG files for a paper (``report --figures DIR``, :mod:`rlcf_bench.report.figures`).

* bars of the primary metric per dataset and method, with the 95% interval as an error bar and
  the value printed just past the interval's cap (never on it);
* the metric against the median latency, one panel per dataset (shared axes): each method has its
  own colour *and* marker (:func:`style_map`: distinct pairs for 84 methods), named once in a
  legend under the panels, so no legend can overlap another or the data;
* peak memory, only where it differs meaningfully between runs (:data:`MEMORY_SPREAD`):
  a chart of near-equal bars says nothing and takes room.

The object-oriented API (:class:`matplotlib.figure.Figure`, constrained layout) is used, so no
pyplot state or GUI backend is involved. Math rendering is on, so log-axis ticks print as
powers of ten; text from the store or a plugin goes through :func:`plain`, which escapes ``$`` so it
is never parsed as mathtext (a method name with ``$`` stays as written). In SVG, text stays text
(``svg.fonttype = none``) and is escaped by matplotlib's SVG writer; PDFs embed TrueType fonts
(``pdf.fonttype = 42``). Output is deterministic (fixed hash salt, no date).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

#: Draw the memory chart only when the largest peak is at least this multiple of the smallest.
MEMORY_SPREAD = 1.25

_RC: dict[RcKeyType, Any] = {"svg.fonttype": "none", "svg.hashsalt": "rlcf-bench", "pdf.fonttype": 42, "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False}
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")

#: The Okabe–Ito colour-blind-safe palette without its yellow (too pale on white); the reward
#: models' reference rows are grey (``html_page.REFERENCE_COLOUR``).
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


def style_map(names: Sequence[str]) -> dict[str, Style]:
    """A stable (colour, marker) pair per name (sorted order): the palette's colours with the first
    marker, then again with the next, so the first ``len(PALETTE) * len(MARKERS)`` (84) names all
    get distinct pairs and neighbours in the order differ in colour."""
    return {name: Style(PALETTE[i % len(PALETTE)], MARKERS[(i // len(PALETTE)) % len(MARKERS)])
            for i, name in enumerate(sorted(set(names)))}


def colour_map(names: Sequence[str]) -> dict[str, str]:
    """The colour of each name's :func:`style_map` pair."""
    return {name: style.colour for name, style in style_map(names).items()}


def plain(text: object) -> str:
    """Store or plugin text as matplotlib must print it: ``$`` escaped, so never mathtext."""
    return str(text).replace("$", r"\$")


@dataclass(frozen=True)
class BarItem:
    group: str  # the dataset
    label: str  # the method
    value: float
    colour: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ScatterItem:
    x: float
    y: float
    method: str
    dataset: str
    colour: str
    marker: str = "o"


def _save(fig: Figure, target: Any, fmt: str) -> None:
    import matplotlib

    metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None}
    with matplotlib.rc_context(_RC):
        fig.savefig(target, format=fmt, bbox_inches="tight", metadata=metadata)


def to_svg(fig: Figure) -> str:
    """The figure as an SVG element to inline in HTML."""
    buf = io.StringIO()
    _save(fig, buf, "svg")
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # creator/licence RDF: not ours to show
    text = re.sub(r"[ \t]*<!--.*?-->\n?", "", text, flags=re.S)  # matplotlib's copy of each text's source
    return text[text.index("<svg"):]  # drop the XML declaration and doctype: the SVG is inlined


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = ("pdf", "svg")) -> list[Path]:
    """Write ``stem.<fmt>`` for each format; return the paths."""
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        _save(fig, path, fmt)
        paths.append(path)
    return paths


def _finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def bar_figure(title: str, items: Sequence[BarItem], unit: str = "", *, full_scale: float | None = None,
               digits: int = 2) -> Figure:
    """Horizontal bars grouped by dataset (a bold header row per group), error bars where known;
    each value printed just past its bar's interval (or its end), clear of the cap."""
    import matplotlib
    from matplotlib.figure import Figure

    items = [b for b in items if _finite(b.value)]
    rows: list[tuple[str, BarItem | None]] = []
    for group in dict.fromkeys(b.group for b in items):
        rows.append((group, None))
        rows += [(b.label, b) for b in items if b.group == group]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 0.8 + 0.24 * len(rows)), layout="constrained")
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        for y, (_, b) in zip(ys, rows):
            if b is None:
                continue
            err = None
            end = b.value
            if _finite(b.low) and _finite(b.high):
                err = [[max(0.0, b.value - b.low)], [max(0.0, b.high - b.value)]]
                end = max(b.value, b.high)
            ax.barh(y, b.value, color=b.colour, xerr=err, ecolor="#333", capsize=2.5, height=0.7)
            ax.annotate(f"{b.value:.{digits}f}", (end, y), xytext=(4, 0), textcoords="offset points", va="center",
                        ha="left", fontsize=8, gid="bar-value")
        ax.set_yticks(ys, [plain(name) for name, _ in rows])
        for tick, (_, b) in zip(ax.get_yticklabels(), rows):
            if b is None:
                tick.set_fontweight("bold")
        top = max([b.high if _finite(b.high) else b.value for b in items] + [0.0])
        ax.set_xlim(0, max(full_scale or 0.0, top * 1.15) or 1.0)
        ax.set_xlabel(plain(unit.strip() or "value"))
        ax.set_title(plain(title), loc="left", fontweight="bold")
        ax.grid(axis="x", color="#e6e6e6")
        ax.set_axisbelow(True)
        return fig


def bar_chart(title: str, items: Sequence[BarItem], unit: str = "", *, full_scale: float | None = None,
              digits: int = 2) -> str:
    """:func:`bar_figure` as inline SVG."""
    return to_svg(bar_figure(title, items, unit, full_scale=full_scale, digits=digits))


def _legend_below(fig: Figure, handles: Sequence[Any], title: str) -> None:
    """One legend under the axes, outside them (constrained layout makes room), never over data."""
    width = max((len(str(h.get_label())) for h in handles), default=1)
    ncols = max(1, min(len(handles), int(90 // (width + 4))))
    fig.legend(handles=handles, title=title, loc="outside lower center", ncols=ncols, frameon=False, fontsize=8)


def scatter_figure(title: str, items: Sequence[ScatterItem], x_label: str, y_label: str) -> Figure:
    """Metric against latency, one panel per dataset (shared axes); methods by colour and marker,
    in one legend under the panels."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    items = [p for p in items if _finite(p.x) and _finite(p.y)]
    datasets = list(dict.fromkeys(p.dataset for p in items)) or [""]
    ncols = min(len(datasets), 3)
    nrows = math.ceil(len(datasets) / ncols)
    styles = {p.method: Style(p.colour, p.marker) for p in items}
    xs = [p.x for p in items]
    log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(2.6 * ncols + 1.0, 2.3 * nrows + 0.6 + 0.18 * math.ceil(len(styles) / 3)),
                     layout="constrained")
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, dataset in zip(axes, datasets):
            for p in (p for p in items if p.dataset == dataset):
                ax.scatter(p.x, p.y, color=p.colour, marker=p.marker, s=36, edgecolors="white", linewidths=0.5,
                           zorder=3)
            if log:
                ax.set_xscale("log")
            if len(datasets) > 1:
                ax.set_title(plain(dataset), fontsize=9)
            ax.grid(color="#e6e6e6")
        for ax in axes[len(datasets):]:
            ax.set_visible(False)
        fig.supxlabel(plain(x_label + (" (log scale)" if log else "")), fontsize=9)
        fig.supylabel(plain(y_label), fontsize=9)
        fig.suptitle(plain(title), x=0.01, ha="left", fontweight="bold", fontsize=10)
        if items:
            handles = [Line2D([], [], color=st.colour, marker=st.marker, linestyle="", label=plain(m))
                       for m, st in styles.items()]
            _legend_below(fig, handles, "method")
        else:
            axes[0].text(0.5, 0.5, "no data", transform=axes[0].transAxes, ha="center", color="#666")
        return fig


def scatter_chart(title: str, items: Sequence[ScatterItem], x_label: str, y_label: str) -> str:
    """:func:`scatter_figure` as inline SVG."""
    return to_svg(scatter_figure(title, items, x_label, y_label))


def memory_differs(values: Sequence[float | None]) -> bool:
    """Whether peak memory differs enough between runs for a chart to say something."""
    finite = [v for v in values if _finite(v) and v > 0]
    return len(finite) > 1 and max(finite) >= MEMORY_SPREAD * min(finite)


@dataclass(frozen=True)
class LineItem:
    label: str
    colour: str
    points: Sequence[tuple[float, float]]
    marker: str = ""


def line_figure(title: str, lines: Sequence[LineItem], x_label: str, y_label: str) -> Figure:
    """Lines over a 0–100 % x axis (the online methods' running accuracy along the stream), named
    in a legend under the axes."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 3.6 + 0.18 * math.ceil(len(lines) / 3)), layout="constrained")
        ax = fig.add_subplot()
        for line in lines:
            pts = [(x, y) for x, y in line.points if _finite(x) and _finite(y)]
            ax.plot([x for x, _ in pts], [y for _, y in pts], color=line.colour, linewidth=1.6, label=plain(line.label),
                    marker=line.marker or None, markevery=max(1, len(pts) // 8))
        ax.set_xlim(0, 100)
        ax.set_xlabel(plain(x_label))
        ax.set_ylabel(plain(y_label))
        ax.set_title(plain(title), loc="left", fontweight="bold")
        ax.grid(color="#e6e6e6")
        if lines:
            _legend_below(fig, ax.get_legend_handles_labels()[0], "run")
        return fig


def line_chart(title: str, lines: Sequence[LineItem], x_label: str, y_label: str) -> str:
    """:func:`line_figure` as inline SVG."""
    return to_svg(line_figure(title, lines, x_label, y_label))
