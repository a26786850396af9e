"""The HTML report's charts, drawn by matplotlib and inlined as SVG (offline, no script).

* bars of the primary metric per dataset and method, with the 95% interval as an error bar;
* the metric against the median latency: colour is the method, the marker the dataset, both
  named in legends that matplotlib places outside the axes, so no label can overlap a point,
  another label or an axis title;
* peak memory, only where it differs meaningfully between runs (:data:`MEMORY_SPREAD`):
  a chart of near-equal bars says nothing and takes room.

The object-oriented API (:class:`matplotlib.figure.Figure`) is used, so no pyplot state or GUI
backend is involved; text stays text (``svg.fonttype = none``), is escaped by matplotlib's SVG
writer, and is never parsed as mathtext (a method name with ``$`` stays as written). Output is
deterministic (fixed hash salt, no date).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

#: Draw the memory chart only when the largest peak is at least this multiple of the smallest.
MEMORY_SPREAD = 1.25

_RC: dict[RcKeyType, Any] = {"svg.fonttype": "none", "svg.hashsalt": "rlcf-bench", "text.parse_math": False, "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")

#: Okabe–Ito colour-blind-safe palette, then a few extra distinguishable colours.
PALETTE: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#7F7F7F", "#8C564B", "#17BECF", "#BCBD22",
)


def colour_map(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (sorted order), cycling the palette."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


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


def _to_svg(fig: object) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})  # type: ignore[attr-defined]
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # creator/licence RDF: not ours to show
    return text[text.index("<svg"):]  # drop the XML declaration and doctype: the SVG is inlined


def _finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def bar_chart(title: str, items: Sequence[BarItem], unit: str = "", *, full_scale: float | None = None,
              digits: int = 2) -> str:
    """Horizontal bars grouped by dataset (a bold header row per group), error bars where known."""
    import matplotlib
    from matplotlib.figure import Figure

    items = [b for b in items if _finite(b.value)]
    rows: list[tuple[str, BarItem | None]] = []
    for group in dict.fromkeys(b.group for b in items):
        rows.append((group, None))
        rows += [(b.label, b) for b in items if b.group == group]
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 0.8 + 0.24 * len(rows)))
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        for y, (_, b) in zip(ys, rows):
            if b is None:
                continue
            err = None
            if _finite(b.low) and _finite(b.high):
                err = [[max(0.0, b.value - b.low)], [max(0.0, b.high - b.value)]]
            ax.barh(y, b.value, color=b.colour, xerr=err, ecolor="#333", capsize=2.5, height=0.7)
            ax.text(b.value, y, f" {b.value:.{digits}f}", va="center", ha="left", fontsize=8)
        ax.set_yticks(ys, [name for name, _ in rows])
        for tick, (_, b) in zip(ax.get_yticklabels(), rows):
            if b is None:
                tick.set_fontweight("bold")
        top = max([b.high if _finite(b.high) else b.value for b in items] + [0.0])
        ax.set_xlim(0, max(full_scale or 0.0, top * 1.12) or 1.0)
        ax.set_xlabel(unit.strip() or "value")
        ax.set_title(title, loc="left", fontweight="bold")
        ax.grid(axis="x", color="#e6e6e6")
        ax.set_axisbelow(True)
        return _to_svg(fig)


def scatter_chart(title: str, items: Sequence[ScatterItem], x_label: str, y_label: str) -> str:
    """Metric against latency; legends (method colours, dataset markers) outside the axes."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    items = [p for p in items if _finite(p.x) and _finite(p.y)]
    datasets = list(dict.fromkeys(p.dataset for p in items))
    marker = {d: _MARKERS[i % len(_MARKERS)] for i, d in enumerate(datasets)}
    colours = dict((p.method, p.colour) for p in items)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 4.0))
        ax = fig.add_subplot()
        for p in items:
            ax.scatter(p.x, p.y, color=p.colour, marker=marker[p.dataset], s=42, edgecolors="white", linewidths=0.6,
                       zorder=3)
        xs = [p.x for p in items]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
            x_label += " (log scale)"
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.grid(color="#e6e6e6")
        if items:
            methods = [Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()]
            first = ax.legend(handles=methods, title="method", loc="upper left", bbox_to_anchor=(1.02, 1.0),
                              frameon=False)
            ax.add_artist(first)
            shapes = [Line2D([], [], color="#555", marker=marker[d], linestyle="", label=d) for d in datasets]
            ax.legend(handles=shapes, title="dataset", loc="lower left", bbox_to_anchor=(1.02, 0.0), frameon=False)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="#666")
        return _to_svg(fig)


def memory_differs(values: Sequence[float | None]) -> bool:
    """Whether peak memory differs enough between runs for a chart to say something."""
    finite = [v for v in values if _finite(v) and v > 0]
    return len(finite) > 1 and max(finite) >= MEMORY_SPREAD * min(finite)


@dataclass(frozen=True)
class LineItem:
    label: str
    colour: str
    points: Sequence[tuple[float, float]]


def line_chart(title: str, lines: Sequence[LineItem], x_label: str, y_label: str) -> str:
    """Lines over a 0–100 % x axis (the online methods' running accuracy along the stream)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for line in lines:
            pts = [(x, y) for x, y in line.points if _finite(x) and _finite(y)]
            ax.plot([x for x, _ in pts], [y for _, y in pts], color=line.colour, linewidth=1.6, label=line.label)
        ax.set_xlim(0, 100)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.grid(color="#e6e6e6")
        if lines:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        return _to_svg(fig)
