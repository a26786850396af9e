"""The committed reference report (``leaderboard/reference-micro/leaderboard.json``) read back as a
:class:`Report`, for tests of the layouts built from it.

The reference commits its report, not its store (140 runs with their per-sample rows). The JSON
holds everything the paper layout reads: each run's metrics with intervals, its group, rank and
paired tests (against the best, the reference method and the family baseline, already adjusted),
the reward-model reference rows and the declared average rows with their pooled tests. Reading it
back gives the tables the committed code would print, number for number (a test checks this
against the committed ``paper.md``'s cells).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rlcf_bench.plugins import PluginHost
from rlcf_bench.report import ComparableGroup, Comparison, DatasetSection, LeaderboardRow, Report
from rlcf_bench.report.averages import AverageRow, PooledComparison, declared_averages, declared_comparisons
from rlcf_bench.report.tasks import catalog_from
from rlcf_bench.types import MetricValue

REFERENCE = Path(__file__).resolve().parents[2] / "leaderboard" / "reference-micro"


def _f(x: Any) -> float:
    return math.nan if x is None else float(x)


def _comparison(d: dict[str, Any] | None) -> Comparison | None:
    if d is None:
        return None
    return Comparison(d["against_run"], d["against_method"], d["metric"], _f(d["delta"]), d["test"], _f(d["p_value"]),
                      d["significant_5pct"], d["n_shared"], d["only_this_run"], d["only_other_run"],
                      on_primary=d["tested_on"] == "primary metric", ci_low=_f(d["diff_ci_low"]),
                      ci_high=_f(d["diff_ci_high"]), p_adjusted=_f(d["p_adjusted"]), adjustment=d["adjustment"] or "",
                      family=d["family"] or "", family_size=d["family_size"], repetitions=d.get("repetitions", 1))


def _pooled(d: dict[str, Any] | None) -> PooledComparison | None:
    if d is None:
        return None
    return PooledComparison(d["against_method"], tuple(d["against_runs"]), d["metric"], _f(d["delta"]), d["test"],
                            _f(d["p_value"]), d["significant_5pct"], d["n_shared"], d["only_this_row"],
                            d["only_other_row"], math.nan, tested_delta=_f(d["tested_delta"]),
                            ci_low=_f(d["diff_ci_low"]), ci_high=_f(d["diff_ci_high"]), p_adjusted=_f(d["p_adjusted"]),
                            adjustment=d["adjustment"] or "", family=d["family"] or "", family_size=d["family_size"])


def _row(d: dict[str, Any], host: PluginHost) -> LeaderboardRow:
    lat = d["latency"]
    return LeaderboardRow(
        d["run_id"], d["task"], d["task_kind"], d["task_version"], d["dataset"], d["dataset_version"], d["method"],
        d["method_version"], d["model"], d["model_version"], d["reward_model"], d["reward_model_version"],
        d["protocol_hash"], d["config_hash"], d["bench_version"], d["seed"], d["official"],
        {k: MetricValue(_f(m["value"]), m["ci_low"], m["ci_high"], m["n"]) for k, m in d["metrics"].items()},
        {k: m["ci_source"] for k, m in d["metrics"].items()}, d["n_samples"], lat["ms_per_sample_mean"],
        lat["ms_per_sample_p50"], lat["ms_per_sample_p95"], lat["adapt_ms_mean"], lat["predict_ms_mean"],
        lat["reward_ms_mean"], d["peak_memory_mb"], d["memory_kind"], d["device"], d["device_name"], d["finished_at"],
        group=d["group"], group_label=d["group_label"], rank=d["rank"], ranked_with_main=d["ranked_with_main_group"],
        apart_reason=d["apart_reason"], primary_metric=d["primary_metric"], vs_best=_comparison(d["vs_best"]),
        vs_reference=_comparison(d["vs_reference"]), vs_baseline=_comparison(d["vs_baseline"]),
        reference_for=list(d["reward_model_reference_for_groups"]), method_config=d["method_config"],
        options=d["method_options"], protocol=d["protocol"], meta=catalog_from(None, host).of(d["task"]))


def reference_report(host: PluginHost) -> Report:
    """The committed reference's report; the declared averages and comparisons are the installed suites'."""
    items = json.loads((REFERENCE / "leaderboard.json").read_text(encoding="utf-8"))
    rows = [_row(d, host) for d in items if d["row_kind"] == "run"]
    sections: dict[tuple[str, str], DatasetSection] = {}
    for row in rows:
        section = sections.setdefault((row.task, row.dataset), DatasetSection(row.task, row.task_kind, row.dataset, []))
        group = next((g for g in section.groups if g.id == row.group), None)
        if group is None:
            group = ComparableGroup(row.group, (), row.group_label, row.ranked_with_main, row.apart_reason,
                                    row.primary_metric, [])
            section.groups.append(group)
        group.rows.append(row)
    for row in rows:
        for gid in row.reference_for:
            for section in sections.values():
                for g in section.groups:
                    if g.id == gid:
                        g.reward_model_refs.append(row)
    averages = [AverageRow(d["average"], d["task"], d["task_kind"], tuple(d["datasets"]), d["method"],
                           d["method_label"], d["method_options"], d["model"], d["reward_model"], d["setting"],
                           d["primary_metric"], _f(d["value"]), d["ci_low"], d["ci_high"], d["n"],
                           tuple(d["run_ids"]), _pooled(d["vs_reference"]), _pooled(d["vs_baseline"]),
                           vs_best=_pooled(d["vs_best"]))
                for d in items if d["row_kind"] == "average"]
    return Report(list(sections.values()), averages=averages, average_groups=declared_averages(host),
                  tasks=catalog_from(None, host), comparisons=declared_comparisons(host))
