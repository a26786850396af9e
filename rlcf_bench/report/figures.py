"""The report's figures as data: what the HTML page inlines and ``report --figures DIR`` writes.

Per task: the primary metric per dataset and method (bars with intervals), the metric against
latency (a panel per dataset), peak memory where it differs meaningfully between runs; per dataset
with online runs: the running accuracy along the stream. Each figure is built on demand
(:attr:`ReportFigure.build`), so a caller draws only what it shows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from . import charts
from .rows import LeaderboardRow, Report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REFERENCE_COLOUR = "#9E9E9E"  # the reward model's own reference runs (not ranked)
STREAM_CAPTION = ("Running top-1 of the online runs (stream order 0) after each share of the stream: a rising "
                  "curve is a method learning from the stream; the end point is the run's top-1.")


@dataclass(frozen=True)
class ReportFigure:
    stem: str  # the file name without extension (``report --figures``)
    build: Callable[[], Figure]
    caption: str


@dataclass(frozen=True)
class TaskFigures:
    task: str
    figures: list[ReportFigure] = field(default_factory=list)
    note: str = ""  # said instead of a figure (e.g. why there is no memory chart)


def file_stem(*parts: str) -> str:
    """A file name from names that may hold anything (a dataset given as a path): letters, digits,
    dots, dashes and underscores kept, every other run of characters one dash."""
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "-", p).strip("-.") or "x" for p in parts)


def task_figures(report: Report) -> list[TaskFigures]:
    """Per task: metric per dataset and method (with intervals), metric vs ms/sample, and peak
    memory where it differs meaningfully between runs."""
    by_task: dict[str, list[tuple[LeaderboardRow, bool]]] = defaultdict(list)
    for section in report.sections:
        main = next((g for g in section.groups if g.is_main), None)
        if main is None:
            continue
        by_task[section.task] += [(r, False) for r in main.rows if r.rank is not None]
        by_task[section.task] += [(r, True) for r in main.reward_model_refs]
    out = []
    for task, entries in by_task.items():
        rows = [r for r, _ in entries]
        metric = next((r.primary_metric for r, ref in entries if not ref and r.primary_metric), None)
        if not entries or metric is None:
            continue
        unit = "%" if rows[0].meta.score.percent else ""
        labels = {id(r): (f"RM {r.method} ({r.model})" if ref else r.method_label) for r, ref in entries}
        styles = charts.style_map([labels[id(r)] for r, ref in entries if not ref])
        styles.update({labels[id(r)]: charts.Style(REFERENCE_COLOUR, "o") for r, ref in entries if ref})
        scored = [r for r, _ in entries if metric in r.metrics]
        bars = [charts.BarItem(r.dataset, labels[id(r)], r.metrics[metric].value, styles[labels[id(r)]].colour,
                               r.metrics[metric].ci_low, r.metrics[metric].ci_high) for r in scored]
        points = [charts.ScatterItem(r.ms_per_sample_p50, r.metrics[metric].value, labels[id(r)], r.dataset,
                                     styles[labels[id(r)]].colour, styles[labels[id(r)]].marker)
                  for r in scored if r.ms_per_sample_p50 is not None]
        devices = ", ".join(sorted({r.device_name or r.device for r in rows}))
        figures = [
            ReportFigure(file_stem(task, metric), partial(
                charts.bar_figure, f"{task}: {metric} per dataset and method", bars, f"{metric} {unit}",
                full_scale=100.0 if unit == "%" else None),
                "Main comparable group of each dataset; error bars: 95% intervals; grey: the reward model's own "
                "reference run (not ranked)."),
            ReportFigure(file_stem(task, metric, "latency"), partial(
                charts.scatter_figure, f"{task}: {metric} vs latency", points, "ms per sample (median)",
                f"{metric}{' (%)' if unit else ''}"),
                f"Up and to the left is better. Devices: {devices}."),
        ]
        memory = [r.peak_memory_mb for r in rows]
        note = ""
        if charts.memory_differs(memory):
            mem = [charts.BarItem(r.dataset, labels[id(r)], r.peak_memory_mb, styles[labels[id(r)]].colour)
                   for r, _ in entries if r.peak_memory_mb is not None]
            figures.append(ReportFigure(file_stem(task, "peak-memory"), partial(
                charts.bar_figure, f"{task}: peak memory", mem, "MB", digits=0),
                "Peak memory per run (CUDA peak on GPU, process RSS on CPU)."))
        else:
            known = [m for m in memory if m is not None]
            if known:
                note = (f"Peak memory {min(known):.0f}–{max(known):.0f} MB in every run "
                        f"(within {charts.MEMORY_SPREAD - 1:.0%}): no chart.")
        out.append(TaskFigures(task, figures, note))
    return out


def stream_figures(report: Report) -> list[ReportFigure]:
    """Per dataset: the running accuracy along the stream of the online runs of its main group."""
    out = []
    for section in report.sections:
        main = next((g for g in section.groups if g.is_main), None)
        rows = [r for r in (main.rows if main else []) if r.stream_curve]
        if not rows:
            continue
        styles = charts.style_map([r.method for r in rows])
        lines = [charts.LineItem(f"{r.method} (run {r.run_id})", styles[r.method].colour, r.stream_curve or [],
                                 styles[r.method].marker) for r in rows]
        out.append(ReportFigure(file_stem(section.task, section.dataset, "stream"),
                                partial(charts.line_figure, f"{section.task} · {section.dataset}: accuracy along "
                                        "the stream", lines, "samples seen (% of the stream)", "running top-1 (%)"),
                                STREAM_CAPTION))
    return out


def write_figures(report: Report, folder: str | Path) -> list[Path]:
    """Every figure of the report as ``<stem>.pdf`` and ``<stem>.svg`` in ``folder`` (created)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for fig in [f for t in task_figures(report) for f in t.figures] + stream_figures(report):
        paths += charts.save_figure(fig.build(), out / fig.stem)
    return paths
