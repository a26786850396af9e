"""Tiny inline-SVG charts written by hand: horizontal bars and a scatter plot.

No JavaScript, no external fonts or files. Every label is escaped with :func:`html.escape`
(valid for SVG embedded in HTML as well). Values are plain numbers; NaN/None points are left out.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Okabe–Ito colour-blind-safe palette, then a few extra distinguishable colours.
PALETTE: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#7F7F7F", "#8C564B", "#17BECF", "#BCBD22",
)

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def shorten(text: str, limit: int) -> str:
    """Cut a label to ``limit`` characters with an ellipsis (the full text stays in the tooltip)."""
    text = str(text)
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def colour_map(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (sorted order), cycling the palette."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    colour: str
    group: str = ""
    tooltip: str = ""


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    colour: str
    tooltip: str = ""


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi] with a 1/2/5 x 10^k step."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _tick_text(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:g}"


def bar_chart(title: str, bars: Sequence[Bar], unit: str = "", *, width: int = 640, full_scale: float | None = None,
              value_digits: int = 2) -> str:
    """Horizontal bars, grouped under group headings (e.g. one group per dataset)."""
    finite = [b for b in bars if b.value is not None and math.isfinite(b.value)]
    label_w, right_pad, row_h, head_h, top, bottom = 200, 60, 22, 22, 34, 30
    plot_w = width - label_w - right_pad
    vmax = max([b.value for b in finite] + [0.0])
    if full_scale is not None and vmax <= full_scale:
        vmax = full_scale
    ticks = nice_ticks(0.0, vmax if vmax > 0 else 1.0)
    scale_max = ticks[-1]
    groups: list[str] = []
    for b in finite:
        if b.group not in groups:
            groups.append(b.group)
    n_heads = sum(1 for g in groups if g)
    height = top + bottom + row_h * len(finite) + head_h * n_heads + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" style="{FONT}">',
             f"<title>{esc(title)}</title>",
             f'<text x="8" y="20" font-size="15" font-weight="600">{esc(title)}</text>']
    axis_y = height - bottom
    for t in ticks:
        x = label_w + plot_w * (t / scale_max)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{axis_y + 16}" font-size="11" text-anchor="middle" fill="#444">'
                     f"{esc(_tick_text(t))}</text>")
    if unit:
        parts.append(f'<text x="{label_w + plot_w:.1f}" y="{axis_y + 28}" font-size="11" text-anchor="end" '
                     f'fill="#444">{esc(unit)}</text>')
    y = top
    for g in groups:
        if g:
            parts.append(f'<text x="8" y="{y + 15}" font-size="12" font-weight="600" fill="#222">'
                         f"{esc(shorten(g, 80))}</text>")
            y += head_h
        for b in (b for b in finite if b.group == g):
            w = max(0.0, plot_w * (b.value / scale_max))
            tip = esc(b.tooltip or f"{b.label}: {b.value:.{value_digits}f}{unit}")
            parts.append(f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">'
                         f"{esc(shorten(b.label, 30))}<title>{tip}</title></text>")
            parts.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                         f'fill="{esc(b.colour)}"><title>{tip}</title></rect>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="11" fill="#222">'
                         f"{b.value:.{value_digits}f}</text>")
            y += row_h
    parts.append(f'<line x1="{label_w}" y1="{top}" x2="{label_w}" y2="{axis_y}" stroke="#444"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def scatter_chart(title: str, points: Sequence[Point], x_label: str, y_label: str, *, width: int = 640,
                  height: int = 420) -> str:
    """Scatter plot; the x axis is logarithmic when the values span more than 20x."""
    pts = [p for p in points if p.x is not None and p.y is not None and math.isfinite(p.x) and math.isfinite(p.y)]
    left, right, top, bottom = 64, 24, 34, 48
    pw, ph = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" style="{FONT}">',
             f"<title>{esc(title)}</title>",
             f'<text x="8" y="20" font-size="15" font-weight="600">{esc(title)}</text>']
    if not pts:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">no data</text></svg>')
        return "\n".join(parts)
    xs, ys = [p.x for p in pts], [p.y for p in pts]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20
    if log_x:
        lo_e, hi_e = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        hi_e = max(hi_e, lo_e + 1)
        x_ticks = [10.0 ** e for e in range(lo_e, hi_e + 1)]

        def fx(v: float) -> float:
            return left + pw * (math.log10(v) - lo_e) / (hi_e - lo_e)
    else:
        x_ticks = nice_ticks(min(0.0, min(xs)), max(xs) * 1.05 if max(xs) > 0 else 1.0)

        def fx(v: float) -> float:
            return left + pw * (v - x_ticks[0]) / (x_ticks[-1] - x_ticks[0])
    span = max(ys) - min(ys)
    pad = max(span * 0.1, 1.0)
    y_ticks = nice_ticks(min(ys) - pad, max(ys) + pad)

    def fy(v: float) -> float:
        return top + ph - ph * (v - y_ticks[0]) / (y_ticks[-1] - y_ticks[0])

    for t in x_ticks:
        x = fx(t)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle" fill="#444">'
                     f"{esc(_tick_text(t))}</text>")
    for t in y_ticks:
        y = fy(t)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#444">'
                     f"{esc(_tick_text(t))}</text>")
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    x_text = x_label + (" (log scale)" if log_x else "")
    parts.append(f'<text x="{left + pw / 2}" y="{height - 8}" font-size="12" text-anchor="middle">{esc(x_text)}</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + ph / 2})">{esc(y_label)}</text>')
    placed: list[tuple[float, float, float]] = []  # (x0, x1, baseline) of labels already drawn
    for p in pts:
        cx, cy = fx(p.x), fy(p.y)
        tip = esc(p.tooltip or f"{p.label}: {p.y:.2f} at {p.x:.1f}")
        parts.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{esc(p.colour)}" '
                     f'stroke="#fff" stroke-width="1"><title>{tip}</title></circle>')
        label = shorten(p.label, 34)
        on_right = cx < left + pw * 0.6
        anchor, tx = ("start", cx + 7) if on_right else ("end", cx - 7)
        text_w = 5.6 * len(label)  # rough width of 10px text
        x0, x1 = (tx, tx + text_w) if on_right else (tx - text_w, tx)
        ty = cy - 6
        while any(a < x1 and x0 < b and abs(ty - y) < 11 for a, b, y in placed):
            ty += 11  # nudge down until it no longer overlaps a label already placed
        placed.append((x0, x1, ty))
        parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="10" fill="#333" text-anchor="{anchor}">'
                     f"{esc(label)}</text>")
    parts.append("</svg>")
    return "\n".join(parts)
