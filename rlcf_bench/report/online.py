"""What reports show for online methods: the spread across stream orders and the stream curve.

* **Order spread.** Runs that differ only in the protocol's ``order_seed`` (same task, dataset,
  method, configuration, model, versions and otherwise identical protocol) are *orders of one
  experiment*. The run with the lowest order seed stands for them in the leaderboard (it shares
  the protocol hash of the episodic runs it is ranked with); it carries an :class:`OrderSpread`
  — mean, sample standard deviation, min and max of the primary metric over the orders — and the
  other orders are not listed as groups of their own (their run ids and values are in the spread).
* **Stream curve.** For a run that stored the stream metrics (methods that carry state), the
  running accuracy along the stream, read from its per-sample rows in the order they were
  written (= the stream order: such a method is fed one sample at a time and a resumed run
  continues after its stored prefix), thinned to at most :data:`CURVE_POINTS` points.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..online_protocol import ORDER_SEED, order_seed_of, running_accuracy, stream_metric_name
from ..store import Run, SampleResult, Store
from ..types import stable_hash

CURVE_POINTS = 100


@dataclass(frozen=True)
class OrderSpread:
    metric: str
    order_seeds: tuple[int, ...]
    run_ids: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "n_orders": self.n, "order_seeds": list(self.order_seeds),
                "run_ids": list(self.run_ids), "values": list(self.values), "mean": self.mean, "sd": self.sd,
                "min": min(self.values), "max": max(self.values)}

    def text(self) -> str:
        return (f"{self.n} stream orders: {self.metric} {self.mean:.2f} ± {self.sd:.2f} (sd; "
                f"min {min(self.values):.2f}, max {max(self.values):.2f})")


def _family(run: Run) -> str:
    protocol = dict(run.protocol or {})
    params = {k: v for k, v in dict(protocol.get("params") or {}).items() if k != ORDER_SEED}
    protocol["params"] = params
    return stable_hash([run.task, run.task_version, run.dataset, run.dataset_version, run.dataset_params, run.method,
                        run.method_version, run.config_hash, run.model, run.model_version, run.reward_model,
                        run.reward_model_version, run.bench_version, protocol])


def order_spreads(runs: Sequence[Run], rows: Sequence[Any], primary: dict[str, tuple[str, ...]]) -> set[int]:
    """Attach an :class:`OrderSpread` to the representative row of every family of orders;
    return the run ids of the other orders (not listed on their own)."""
    by_id = {r.run_id: r for r in rows}
    families: dict[str, list[tuple[int, Run]]] = defaultdict(list)
    for run in runs:
        seed = order_seed_of((run.protocol or {}).get("params") or {})
        if seed is not None and run.id in by_id:
            families[_family(run)].append((seed, run))
    hidden: set[int] = set()
    for members in families.values():
        if len({seed for seed, _ in members}) < 2:
            continue
        members.sort(key=lambda m: (m[0], m[1].id))
        head = by_id[members[0][1].id]
        metric = next((m for m in primary.get(head.task_kind, ()) if m in head.metrics), None)
        scored = [(seed, run.id, by_id[run.id].metrics[metric].value) for seed, run in members
                  if metric and metric in by_id[run.id].metrics]
        if metric is None or len(scored) < 2:
            continue
        head.orders = OrderSpread(metric, tuple(s for s, _, _ in scored), tuple(i for _, i, _ in scored),
                                  tuple(float(v) for _, _, v in scored))
        hidden.update(run.id for _, run in members[1:])
    return hidden


def stream_curves(store: Store, rows: Sequence[Any]) -> None:
    """Set ``row.stream_curve`` (``[(percent of stream, running accuracy %)]``) on the rows that
    stored the stream metrics."""
    marker = stream_metric_name(100)
    wanted = [r for r in rows if marker in r.metrics]
    if not wanted:
        return
    with store.session() as s:
        for row in wanted:
            scores = list(s.scalars(select(SampleResult.score).where(SampleResult.run_id == row.run_id)
                                    .order_by(SampleResult.id)))
            row.stream_curve = thin(running_accuracy(scores))


def thin(curve: Sequence[float], points: int = CURVE_POINTS) -> list[tuple[float, float]]:
    """At most ``points`` evenly spaced points of ``curve`` (always its last one), x in % of the stream."""
    n = len(curve)
    if n == 0:
        return []
    step = max(1, math.ceil(n / points))
    idx = list(range(step - 1, n, step))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return [(100.0 * (i + 1) / n, curve[i]) for i in idx]


def line_chart(title: str, series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], *, width: int = 640,
               height: int = 360) -> str:
    """Lines ``(label, colour, [(x %, y %)])`` on a 0–100 % stream axis, as inline SVG (escaped)."""
    from . import svg

    left, right, top, bottom = 56, 24, 34, 44
    pw, ph = width - left - right, height - top - bottom
    ys = [y for _, _, pts in series for _, y in pts if math.isfinite(y)]
    y_lo, y_hi = (max(0.0, min(ys) - 5), min(100.0, max(ys) + 5)) if ys else (0.0, 100.0)
    y_ticks = svg.nice_ticks(y_lo, max(y_hi, y_lo + 1.0))
    lo, hi = y_ticks[0], y_ticks[-1]

    def fx(x: float) -> float:
        return left + pw * x / 100.0

    def fy(y: float) -> float:
        return top + ph - ph * (y - lo) / ((hi - lo) or 1.0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" style="{svg.FONT}">', f"<title>{svg.esc(title)}</title>",
             f'<text x="8" y="20" font-size="15" font-weight="600">{svg.esc(title)}</text>']
    for t in (0, 25, 50, 75, 100):
        parts.append(f'<line x1="{fx(t):.1f}" y1="{top}" x2="{fx(t):.1f}" y2="{top + ph}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{fx(t):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle" fill="#444">'
                     f"{t}%</text>")
    for t in y_ticks:
        parts.append(f'<line x1="{left}" y1="{fy(t):.1f}" x2="{left + pw}" y2="{fy(t):.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 6}" y="{fy(t) + 4:.1f}" font-size="11" text-anchor="end" fill="#444">'
                     f"{svg.esc(f'{t:g}')}</text>")
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 8}" font-size="12" text-anchor="middle">'
                 "samples seen (% of the stream)</text>")
    parts.append(f'<text x="14" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + ph / 2})">running top-1 (%)</text>')
    for label, colour, pts in series:
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts if math.isfinite(y))
        parts.append(f'<polyline class="stream" fill="none" stroke="{svg.esc(colour)}" stroke-width="2" '
                     f'points="{path}"><title>{svg.esc(label)}</title></polyline>')
    parts.append("</svg>")
    return "\n".join(parts)


def stream_plots(report: Any) -> str:
    """HTML: per dataset, the running accuracy along the stream of the online runs of its main group."""
    import html

    from . import svg

    out = []
    for section in report.sections:
        main = next((g for g in section.groups if g.is_main), None)
        rows = [r for r in (main.rows if main else []) if r.stream_curve]
        if not rows:
            continue
        colours = svg.colour_map([r.method for r in rows])
        series = [(f"run {r.run_id}: {r.method}", colours[r.method], r.stream_curve) for r in rows]
        legend = "".join(f'<span><span class="swatch" style="background:{html.escape(c)}"></span>'
                         f"{html.escape(name)}</span>" for name, c in colours.items())
        chart = line_chart(f"{section.task} · {section.dataset}: accuracy along the stream", series)
        out.append(f'<figure class="plot">{chart}'
                   f'<div class="legend">{legend}</div><p class="caption">Running top-1 of the online runs '
                   "(stream order 0) after each share of the stream: a rising curve is a method learning from "
                   "the stream; the end point is the run's top-1.</p></figure>")
    if not out:
        return ""
    return '<h3>Online methods along the stream</h3>\n<div class="plots">' + "\n".join(out) + "</div>"
