"""CSV: one line per run, full precision, for a spreadsheet.

Columns are fixed identity/cost columns followed by ``<metric>``, ``<metric>_ci_low`` and
``<metric>_ci_high`` for every metric present (``method_options`` holds the non-default method options as
``key=value, ...``), then ``reported_<metric>`` and
``reported_<metric>_diff`` (measured minus the first paper value) where a paper number exists.
``row_kind`` is ``run`` for a run and ``average`` for an average over a declared dataset group
(``average`` names it, ``averaged_datasets``/``averaged_runs`` list what it averages, separated by
``;``; its ``vs_*`` columns are the pooled paired tests, ``run_id`` is empty). ``*_mdd``: the
minimum detectable difference of that paired test (5% two-sided, 80% power).
Text cells that a spreadsheet would run as a formula (starting with ``= + - @`` or a tab) get a
leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from .averages import AverageRow, PooledComparison
from .rows import Comparison, LeaderboardRow, Report

BASE_COLUMNS: tuple[str, ...] = (
    "run_id", "task", "task_kind", "dataset", "method", "method_options", "model", "reward_model", "group", "rank",
    "ranked_with_main_group", "apart_reason", "primary_metric", "n_samples", "primary_n",
    "ms_per_sample_mean", "ms_per_sample_p50", "ms_per_sample_p95", "adapt_ms_mean", "predict_ms_mean",
    "reward_ms_mean", "reward_share", "peak_memory_mb", "memory_kind", "device", "device_name",
    "vs_best_run", "vs_best_delta", "vs_best_p", "vs_best_significant_5pct",
    "vs_zero_shot_run", "vs_zero_shot_delta", "vs_zero_shot_p", "vs_zero_shot_significant_5pct",
    "reward_model_zero_shot_run", "reward_model_zero_shot_value", "vs_reward_model_delta",
    "vs_reward_model_p", "below_reward_model",
    "protocol_hash", "config_hash", "task_version", "dataset_version", "model_version", "bench_version",
    "official", "orders_n", "orders_mean", "orders_sd", "orders_min", "orders_max",
    "row_kind", "average", "averaged_datasets", "averaged_runs", "vs_best_mdd", "vs_zero_shot_mdd",
    "vs_tpt_run", "vs_tpt_delta", "vs_tpt_p", "vs_tpt_significant_5pct", "vs_tpt_mdd",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str | None) -> str:
    if value is None:
        return ""
    value = str(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def _n(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if value != value else repr(value)
    return str(value)


def _row_cells(row: LeaderboardRow, metric_names: Sequence[str], reported_names: Sequence[str]) -> list[str]:
    rm = row.reward_model_zero_shot
    rm_test = rm.comparison if rm is not None else None
    cells = [
        _n(row.run_id), _text(row.task), _text(row.task_kind), _text(row.dataset), _text(row.method),
        _text(row.options_text), _text(row.model), _text(row.reward_model), row.group, _n(row.rank), _n(row.ranked_with_main),
        _text(row.apart_reason), _text(row.primary_metric), _n(row.n_samples), _n(row.primary_n),
        _n(row.ms_per_sample_mean), _n(row.ms_per_sample_p50), _n(row.ms_per_sample_p95),
        _n(row.adapt_ms_mean), _n(row.predict_ms_mean), _n(row.reward_ms_mean), _n(row.reward_share),
        _n(row.peak_memory_mb), _text(row.memory_kind), _text(row.device), _text(row.device_name),
    ]
    for comp in (row.vs_best, row.vs_zero_shot):
        cells += ([_n(comp.against_run), _n(comp.delta), _n(comp.p_value), _n(comp.significant)]
                  if comp is not None else ["", "", "", ""])
    cells += ([_n(rm.run_id), _n(rm.value), _n(rm.delta), _n(rm_test.p_value if rm_test else None), _n(rm.below)]
              if rm is not None else ["", "", "", "", ""])
    cells += [_text(row.protocol_hash), _text(row.config_hash), _text(row.task_version), _text(row.dataset_version),
              _text(row.model_version), _text(row.bench_version), _n(row.official)]
    spread = row.orders.as_dict() if row.orders is not None else None
    cells += [_n(spread[k]) for k in ("n_orders", "mean", "sd", "min", "max")] if spread else ["", "", "", "", ""]
    cells += ["run", "", "", "", _mdd(row.vs_best), _mdd(row.vs_zero_shot)]
    tpt = row.vs_tpt
    cells += ([_n(tpt.against_run), _n(tpt.delta), _n(tpt.p_value), _n(tpt.significant), _mdd(tpt)]
              if tpt is not None else ["", "", "", "", ""])
    for name in metric_names:
        mv = row.metrics.get(name)
        cells += [_n(mv.value), _n(mv.ci_low), _n(mv.ci_high)] if mv is not None else ["", "", ""]
    for name in reported_names:
        rep = next((r for r in row.reported if r.metric == name), None)
        cells += [_n(rep.reported), _n(rep.diff)] if rep is not None else ["", ""]
    return cells


def _mdd(c: Comparison | PooledComparison | None) -> str:
    return "" if c is None else _n(c.mdd)


def _average_cells(row: AverageRow, header: Sequence[str]) -> list[str]:
    values: dict[str, str] = {
        "task": _text(row.task), "task_kind": _text(row.task_kind), "method": _text(row.method),
        "method_options": _text(row.options_text), "model": _text(row.model), "reward_model": _text(row.reward_model),
        "primary_metric": _text(row.metric), "primary_n": _n(row.n), "row_kind": "average",
        "average": _text(row.name), "averaged_datasets": _text(";".join(row.datasets)),
        "averaged_runs": ";".join(map(str, row.run_ids)),
        row.metric: _n(row.value), f"{row.metric}_ci_low": _n(row.ci_low), f"{row.metric}_ci_high": _n(row.ci_high),
    }
    for prefix, comp in (("vs_zero_shot", row.vs_zero_shot), ("vs_tpt", row.vs_tpt)):
        if comp is not None:
            values.update({f"{prefix}_delta": _n(comp.delta), f"{prefix}_p": _n(comp.p_value),
                           f"{prefix}_significant_5pct": _n(comp.significant), f"{prefix}_mdd": _n(comp.mdd)})
    return [values.get(column, "") for column in header]


def render_csv(report: Report) -> str:
    metric_names = report.metric_names
    reported_names = report.tasks.sort_metrics({r.metric for row in report.rows for r in row.reported})
    header = list(BASE_COLUMNS)
    for name in metric_names:
        header += [name, f"{name}_ci_low", f"{name}_ci_high"]
    for name in reported_names:
        header += [f"reported_{name}", f"reported_{name}_diff"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in report.rows:
        writer.writerow(_row_cells(row, metric_names, reported_names))
    for average in report.averages:
        writer.writerow(_average_cells(average, header))
    return buf.getvalue()
