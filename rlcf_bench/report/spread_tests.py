"""Paired tests that take the spread over view seeds and stream orders into account (an option:
``rlcf-bench report --spread-tests``).

By default a comparison tests the first seed and order of each method (the row's runs). With this
option, a comparison whose row folds several repetitions (``--seeds N``, ``--orders N``;
:mod:`rlcf_bench.report.online`) is replaced by a hierarchical paired bootstrap over those
repetitions and their samples (:func:`rlcf_bench.stats.hierarchical_paired_bootstrap`): each of
the row's runs is paired with the other method's run of the same view seed and stream order (or of
the same view seed, where the other method is episodic and has one order), on their shared
samples. Its Δ is then the mean difference over the repetitions, so the Δ and its test stay one
quantity (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..stats import hierarchical_paired_bootstrap
from .rows import Comparison, DatasetSection, LeaderboardRow, column_scale
from .scores import ALPHA, ScoreCache

HIERARCHICAL = "hierarchical-bootstrap"


def _repetitions(row: LeaderboardRow) -> dict[tuple[int | None, int | None], int]:
    """``(order seed, view seed) -> run id`` of the row's repetitions (its own run alone if none)."""
    spread = row.orders
    if spread is None:
        return {(None, None): row.run_id}
    seeds = spread.view_seeds or (None,) * len(spread.run_ids)
    return {(o, s): rid for o, s, rid in zip(spread.order_seeds, seeds, spread.run_ids)}


def _partner(key: tuple[int | None, int | None], other: dict[tuple[int | None, int | None], int]) -> int | None:
    if key in other:
        return other[key]
    same_seed = [rid for (o, s), rid in other.items() if s == key[1]]
    return same_seed[0] if len(same_seed) == 1 else None


def _spread_comparison(row: LeaderboardRow, other: LeaderboardRow, comp: Comparison,
                       cache: ScoreCache) -> Comparison:
    mine, theirs = _repetitions(row), _repetitions(other)
    if len(mine) < 2 or not comp.on_primary or comp.metric is None:
        return comp
    pairs = []
    for key, run_id in sorted(mine.items(), key=lambda kv: str(kv[0])):
        partner = _partner(key, theirs)
        if partner is None:
            return comp  # unmatched repetitions: keep the first seed's test rather than a partial one
        sa = cache.for_metric(run_id, row.meta, comp.metric)
        sb = cache.for_metric(partner, other.meta, comp.metric)
        shared = sorted(set(sa) & set(sb))
        pairs.append((np.array([sa[k] for k in shared]), np.array([sb[k] for k in shared])))
    test = hierarchical_paired_bootstrap(pairs)
    scale = column_scale(row, cache.for_metric(row.run_id, row.meta, comp.metric), comp.metric)
    return replace(comp, delta=test.mean_diff * scale, test=HIERARCHICAL, p_value=test.p_value,
                   significant=bool(test.p_value < ALPHA), ci_low=test.ci_low * scale, ci_high=test.ci_high * scale,
                   mdd=math.nan, repetitions=len(pairs))


def apply_spread_tests(sections: Sequence[DatasetSection], cache: ScoreCache) -> None:
    """Replace, in place, the reference and family-baseline comparisons of every row with
    repetitions by the hierarchical test over them."""
    for section in sections:
        for group in section.groups:
            by_run = {r.run_id: r for r in group.rows}
            for row in group.rows:
                for name in ("vs_reference", "vs_baseline"):
                    comp = getattr(row, name)
                    other = by_run.get(comp.against_run) if comp is not None else None
                    if comp is not None and other is not None:
                        setattr(row, name, _spread_comparison(row, other, comp, cache))
