"""CSV: one line per run, full precision, for a spreadsheet.

Columns are fixed identity/cost columns followed by ``<metric>``, ``<metric>_ci_low`` and
``<metric>_ci_high`` for every metric present (``method_options`` holds the non-default method options as
``key=value, ...``), then ``reported_<metric>`` and
``reported_<metric>_diff`` (measured minus the first paper value) where a paper number exists.
``row_kind`` is ``run`` for a run and ``average`` for an average over a declared dataset group
(``average`` names it, ``averaged_datasets``/``averaged_runs`` list what it averages, separated by
``;``; its ``vs_*`` columns are the stratified tests of the equal-weight difference, ``run_id``
is empty). Each comparison ``vs_best``, ``vs_reference`` (the suites' declared reference method),
``vs_baseline`` (the method's family baseline, ``*_method`` names it) and ``vs_reward_model`` has
``*_delta``, ``*_ci_low``/``*_ci_high`` (95% interval of the tested difference), ``*_p`` (raw),
``*_p_adjusted`` (over its family, ``adjustment`` says how), ``*_significant_5pct`` (of the
adjusted p) and ``*_mdd`` (minimum detectable difference, 5% two-sided, about 80% power; ``inf``
when none is detectable, empty when not estimable). Average rows add ``*_datasets_up``/``_down``
and ``*_i2`` (heterogeneity). ``vs_reference_score_*`` (with ``vs_reference_score_metric``) is the
comparison with the reference on the per-sample score's own column where the primary metric was
tested on its own terms (captioning: CLIPScore beside CIDEr; docs/statistics.md#captioning).
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

_COMPARISON_FIELDS = ("method", "run", "delta", "ci_low", "ci_high", "p", "p_adjusted", "significant_5pct", "mdd")
_COMPARISONS = ("vs_best", "vs_reference", "vs_baseline", "vs_reward_model", "vs_reference_score")

BASE_COLUMNS: tuple[str, ...] = (
    "run_id", "task", "task_kind", "dataset", "method", "method_options", "model", "reward_model", "group", "rank",
    "ranked_with_main_group", "apart_reason", "primary_metric", "n_samples", "primary_n",
    "ms_per_sample_mean", "ms_per_sample_p50", "ms_per_sample_p95", "adapt_ms_mean", "predict_ms_mean",
    "reward_ms_mean", "reward_share", "peak_memory_mb", "memory_kind", "device", "device_name",
    *(f"{c}_{f}" for c in _COMPARISONS for f in _COMPARISON_FIELDS),
    "adjustment", "reward_model_zero_shot_value", "below_reward_model", "tested_on",
    "protocol_hash", "config_hash", "method_version", "task_version", "dataset_version", "model_version", "bench_version",
    "official", "orders_n", "orders_mean", "orders_sd", "orders_min", "orders_max",
    "row_kind", "average", "averaged_datasets", "averaged_runs",
    "vs_reference_datasets_up", "vs_reference_datasets_down", "vs_reference_i2",
    "vs_baseline_datasets_up", "vs_baseline_datasets_down", "vs_baseline_i2", "vs_reference_score_metric",
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


def _comparison_values(prefix: str, comp: Comparison | PooledComparison | None) -> dict[str, str]:
    if comp is None:
        return {}
    run = comp.against_run if isinstance(comp, Comparison) else ";".join(map(str, comp.against_runs))
    low_high = (comp.ci_low, comp.ci_high)
    out = {f"{prefix}_method": _text(comp.against_method), f"{prefix}_run": _n(run), f"{prefix}_delta": _n(comp.delta),
           f"{prefix}_ci_low": _n(low_high[0]), f"{prefix}_ci_high": _n(low_high[1]), f"{prefix}_p": _n(comp.p_value),
           f"{prefix}_p_adjusted": _n(comp.p_adjusted), f"{prefix}_significant_5pct": _n(comp.significant),
           f"{prefix}_mdd": _n(comp.mdd), "adjustment": _text(comp.adjustment)}
    if isinstance(comp, PooledComparison):
        out.update({f"{prefix}_datasets_up": _n(comp.up), f"{prefix}_datasets_down": _n(comp.down),
                    f"{prefix}_i2": _n(comp.i2)})
    return out


def _row_cells(row: LeaderboardRow, header: Sequence[str]) -> list[str]:
    rm = row.reward_model_zero_shot
    values: dict[str, str] = {
        "run_id": _n(row.run_id), "task": _text(row.task), "task_kind": _text(row.task_kind),
        "dataset": _text(row.dataset), "method": _text(row.method), "method_options": _text(row.options_text),
        "model": _text(row.model), "reward_model": _text(row.reward_model), "group": row.group, "rank": _n(row.rank),
        "ranked_with_main_group": _n(row.ranked_with_main), "apart_reason": _text(row.apart_reason),
        "primary_metric": _text(row.primary_metric), "n_samples": _n(row.n_samples), "primary_n": _n(row.primary_n),
        "ms_per_sample_mean": _n(row.ms_per_sample_mean), "ms_per_sample_p50": _n(row.ms_per_sample_p50),
        "ms_per_sample_p95": _n(row.ms_per_sample_p95), "adapt_ms_mean": _n(row.adapt_ms_mean),
        "predict_ms_mean": _n(row.predict_ms_mean), "reward_ms_mean": _n(row.reward_ms_mean),
        "reward_share": _n(row.reward_share), "peak_memory_mb": _n(row.peak_memory_mb),
        "memory_kind": _text(row.memory_kind), "device": _text(row.device), "device_name": _text(row.device_name),
        "protocol_hash": _text(row.protocol_hash), "config_hash": _text(row.config_hash),
        "method_version": _text(row.method_version), "task_version": _text(row.task_version), "dataset_version": _text(row.dataset_version),
        "model_version": _text(row.model_version), "bench_version": _text(row.bench_version),
        "official": _n(row.official), "row_kind": "run",
    }
    for prefix, comp in (("vs_best", row.vs_best), ("vs_reference", row.vs_reference),
                         ("vs_baseline", row.vs_baseline), ("vs_reference_score", row.vs_reference_score)):
        values.update(_comparison_values(prefix, comp))
    if row.vs_reference_score is not None:
        values["vs_reference_score_metric"] = _text(row.vs_reference_score.metric)
    if row.vs_reference is not None:
        values["tested_on"] = "primary metric" if row.vs_reference.on_primary else row.vs_reference.score_label
    if rm is not None:
        values.update(_comparison_values("vs_reward_model", rm.comparison))
        values.update({"vs_reward_model_run": _n(rm.run_id), "vs_reward_model_delta": _n(rm.delta),
                       "reward_model_zero_shot_value": _n(rm.value), "below_reward_model": _n(rm.below)})
    if row.orders is not None:
        spread = row.orders.as_dict()
        values.update({f"orders_{k}": _n(spread[key]) for k, key in
                       (("n", "n_orders"), ("mean", "mean"), ("sd", "sd"), ("min", "min"), ("max", "max"))})
    for name in row.metrics:
        mv = row.metrics[name]
        values.update({name: _n(mv.value), f"{name}_ci_low": _n(mv.ci_low), f"{name}_ci_high": _n(mv.ci_high)})
    for rep in reversed(row.reported):  # the first paper value wins
        values.update({f"reported_{rep.metric}": _n(rep.reported), f"reported_{rep.metric}_diff": _n(rep.diff)})
    return [values.get(column, "") for column in header]


def _average_cells(row: AverageRow, header: Sequence[str]) -> list[str]:
    values: dict[str, str] = {
        "task": _text(row.task), "task_kind": _text(row.task_kind), "method": _text(row.method),
        "method_options": _text(row.options_text), "model": _text(row.model), "reward_model": _text(row.reward_model),
        "primary_metric": _text(row.metric), "primary_n": _n(row.n), "row_kind": "average",
        "average": _text(row.name), "averaged_datasets": _text(";".join(row.datasets)),
        "averaged_runs": ";".join(map(str, row.run_ids)),
        row.metric: _n(row.value), f"{row.metric}_ci_low": _n(row.ci_low), f"{row.metric}_ci_high": _n(row.ci_high),
    }
    for prefix, comp in (("vs_reference", row.vs_reference), ("vs_baseline", row.vs_baseline)):
        values.update(_comparison_values(prefix, comp))
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
        writer.writerow(_row_cells(row, header))
    for average in report.averages:
        writer.writerow(_average_cells(average, header))
    return buf.getvalue()
