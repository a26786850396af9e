"""What reports show for online methods: the spread across stream orders and the stream curve.

* **Spread over orders and seeds.** Runs that differ only in the protocol's ``order_seed`` and/or
  its (view) ``seed`` (same task, dataset, method, configuration, model, versions and otherwise
  identical protocol) are *repetitions of one experiment* (``--orders N``, ``--seeds N``). The run
  with the lowest seed and order stands for them in the leaderboard (it shares the protocol hash of
  the runs it is ranked with); it carries an :class:`OrderSpread` — mean, sample standard
  deviation, min and max of the primary metric over the repetitions — and the others are not
  listed as groups of their own (their run ids and values are in the spread).
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
    """The primary metric over the repetitions of one experiment (stream orders × view seeds)."""

    metric: str
    order_seeds: tuple[int | None, ...]
    run_ids: tuple[int, ...]
    values: tuple[float, ...]
    view_seeds: tuple[int | None, ...] = ()

    @property
    def what(self) -> str:
        """``3 stream orders``, ``2 view seeds`` or ``6 runs (3 stream orders × 2 view seeds)``."""
        orders = len(set(self.order_seeds))
        seeds = len(set(self.view_seeds)) if self.view_seeds else 1
        if orders > 1 and seeds > 1:
            return f"{self.n} runs ({orders} stream orders × {seeds} view seeds)"
        return f"{self.n} view seeds" if seeds > 1 else f"{self.n} stream orders"

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
        return {"metric": self.metric, "n_orders": self.n, "n_runs": self.n, "order_seeds": list(self.order_seeds),
                "view_seeds": list(self.view_seeds), "over": self.what,
                "run_ids": list(self.run_ids), "values": list(self.values), "mean": self.mean, "sd": self.sd,
                "min": min(self.values), "max": max(self.values)}

    def text(self) -> str:
        return (f"{self.what}: {self.metric} {self.mean:.2f} ± {self.sd:.2f} (sd; "
                f"min {min(self.values):.2f}, max {max(self.values):.2f})")


def _family(run: Run) -> str:
    protocol = dict(run.protocol or {})
    params = {k: v for k, v in dict(protocol.get("params") or {}).items() if k != ORDER_SEED}
    protocol["params"] = params
    protocol.pop("seed", None)
    return stable_hash([run.task, run.task_version, run.dataset, run.dataset_version, run.dataset_params, run.method,
                        run.method_version, run.config_hash, run.model, run.model_version, run.reward_model,
                        run.reward_model_version, run.bench_version, protocol])


def order_spreads(runs: Sequence[Run], rows: Sequence[Any]) -> set[int]:
    """Attach an :class:`OrderSpread` to the representative row of every family of repetitions
    (stream orders and/or view seeds); return the run ids of the others (not listed on their own)."""
    by_id = {r.run_id: r for r in rows}
    families: dict[str, list[tuple[int, int, Run]]] = defaultdict(list)
    for run in runs:
        if run.id not in by_id:
            continue
        protocol = run.protocol or {}
        order = order_seed_of(protocol.get("params") or {})
        seed = protocol.get("seed")
        families[_family(run)].append((-1 if order is None else order, -1 if seed is None else int(seed), run))
    hidden: set[int] = set()
    for members in families.values():
        if len({(order, seed) for order, seed, _ in members}) < 2:
            continue
        members.sort(key=lambda m: (m[1], m[0], m[2].id))  # the lowest view seed, then the lowest order
        head = by_id[members[0][2].id]
        metric = next((m for m in head.meta.primary if m in head.metrics), None)
        scored = [(order, seed, run.id, by_id[run.id].metrics[metric].value) for order, seed, run in members
                  if metric and metric in by_id[run.id].metrics]
        if metric is None or len(scored) < 2:
            continue
        head.orders = OrderSpread(metric, tuple(None if o < 0 else o for o, _, _, _ in scored),
                                  tuple(i for _, _, i, _ in scored), tuple(float(v) for _, _, _, v in scored),
                                  tuple(None if s < 0 else s for _, s, _, _ in scored))
        hidden.update(run.id for _, _, run in members[1:])
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


def stream_plots(report: Any) -> str:
    """HTML: per dataset, the running accuracy along the stream of the online runs of its main group
    (:func:`rlcf_bench.report.figures.stream_figures`)."""
    import html

    from . import charts
    from .figures import stream_figures

    out = [f'<figure class="plot">{charts.to_svg(f.build())}<p class="caption">{html.escape(f.caption)}</p></figure>'
           for f in stream_figures(report)]
    if not out:
        return ""
    return '<h3>Online methods along the stream</h3>\n<div class="plots">' + "\n".join(out) + "</div>"
