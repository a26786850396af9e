"""Multiplicity control: every paired comparison of a report gets a p-value adjusted over its family.

A *family* is one table's tests: the methods of one task and one setting (model, protocol,
versions) against one other method (the declared reference, a family baseline or a pair's other
method), over the datasets of the table and its average rows; the comparisons with a group's best
run form one family per dataset group, and those with the reward models' own reference runs one
per task and setting. Holm's step-down adjustment is the default (it controls the family-wise
error rate whatever the dependence between the tests); Benjamini-Hochberg (false discovery rate)
is the option ``bh``. The adjusted p-value then drives every mark and sentence: ``significant``,
``BELOW`` (a method significantly below its own reward model's reference run) and the paper
layout's best marks. :func:`claim_counts` states how many comparisons are significant before and
after the adjustment (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..stats import adjust_p
from .averages import AverageRow, PooledComparison, setting_label
from .rows import Comparison, LeaderboardRow, Report
from .scores import ALPHA

#: The adjustment a report uses unless told otherwise.
DEFAULT_ADJUSTMENT = "holm"

Tested = Comparison | PooledComparison


@dataclass(frozen=True)
class _Slot:
    """Where one comparison lives, so the adjusted copy can be put back."""

    family: tuple[str, ...]
    key: tuple[Any, ...]  # (what is compared, against what, on which metric): a comparison met twice counts once
    get: Callable[[], Tested | None]
    put: Callable[[Tested], None]


def _run_key(row: LeaderboardRow, c: Comparison) -> tuple[Any, ...]:
    return ("run", row.run_id, c.against_run, c.metric)


def _attr_slot(family: tuple[str, ...], row: LeaderboardRow, name: str) -> _Slot:
    c = getattr(row, name)
    return _Slot(family, _run_key(row, c), lambda: getattr(row, name), lambda new: setattr(row, name, new))


def _list_slot(family: tuple[str, ...], row: LeaderboardRow, i: int) -> _Slot:
    def put(c: Tested) -> None:
        assert isinstance(c, Comparison)
        row.vs_pairs[i] = c

    return _Slot(family, _run_key(row, row.vs_pairs[i]), lambda: row.vs_pairs[i], put)


def _row_slots(row: LeaderboardRow) -> Iterator[_Slot]:
    setting = setting_label(row)
    if row.vs_best is not None:
        yield _attr_slot((row.task, row.dataset, row.group, "best run"), row, "vs_best")
    for name in ("vs_reference", "vs_baseline"):
        c = getattr(row, name)
        if c is not None:
            yield _attr_slot((row.task, setting, f"vs {c.against_method}"), row, name)
    if row.vs_reference_score is not None:  # another metric: its own family (one table column)
        c = row.vs_reference_score
        yield _attr_slot((row.task, setting, f"vs {c.against_method}", c.metric), row, "vs_reference_score")
    for i, c in enumerate(row.vs_pairs):
        yield _list_slot((row.task, setting, f"vs {c.against_method}"), row, i)
    rm = row.reward_model_zero_shot
    if rm is not None and rm.comparison is not None:
        def put(c: Tested, holder: LeaderboardRow = row) -> None:
            ref = holder.reward_model_zero_shot
            assert ref is not None and isinstance(c, Comparison)
            holder.reward_model_zero_shot = replace(ref, comparison=c, below=ref.delta < 0 and c.significant)

        def get(holder: LeaderboardRow = row) -> Tested | None:
            ref = holder.reward_model_zero_shot
            return None if ref is None else ref.comparison

        yield _Slot((row.task, setting, "vs the reward model's own reference run"), _run_key(row, rm.comparison),
                    get, put)


class _AverageHolder:
    """A mutable box around a frozen average row, so its comparisons can be replaced in place."""

    def __init__(self, rows: list[AverageRow], i: int) -> None:
        self.rows, self.i = rows, i

    def slot(self, name: str) -> _Slot | None:
        row = self.rows[self.i]
        c = getattr(row, name)
        if c is None:
            return None

        def put(new: Tested) -> None:
            assert isinstance(new, PooledComparison)
            current = self.rows[self.i]
            self.rows[self.i] = (replace(current, vs_reference=new) if name == "vs_reference"
                                 else replace(current, vs_baseline=new) if name == "vs_baseline"
                                 else replace(current, vs_best=new))

        family = (row.task, row.setting, row.name, "best run") if name == "vs_best" else (
            row.task, row.setting, f"vs {c.against_method}")
        return _Slot(family, ("average", row.name, row.run_ids, c.against_runs, c.metric),
                     lambda: getattr(self.rows[self.i], name), put)


def _slots(report: Report) -> list[_Slot]:
    out: list[_Slot] = []
    for row in report.rows:
        out += list(_row_slots(row))
    for i in range(len(report.averages)):
        holder = _AverageHolder(report.averages, i)
        out += [s for s in (holder.slot("vs_reference"), holder.slot("vs_baseline"), holder.slot("vs_best"))
                if s is not None]
    return out


def adjust_report(report: Report, method: str = DEFAULT_ADJUSTMENT) -> None:
    """Adjust every comparison of ``report`` over its family, in place (see the module's text).
    A comparison met twice (a declared pair that is also a family baseline) counts once."""
    families: dict[tuple[str, ...], list[_Slot]] = {}
    for slot in _slots(report):
        families.setdefault(slot.family, []).append(slot)
    for family, slots in families.items():
        tests = [s.get() for s in slots]
        p_of = {s.key: t.p_value for s, t in zip(slots, tests) if t is not None}
        unique = [k for k, p in p_of.items() if not math.isnan(p)]
        adjusted = dict(zip(unique, adjust_p([p_of[k] for k in unique], method)))
        name = " · ".join(family)
        for slot, test in zip(slots, tests):
            if test is None:
                continue
            p_adj = adjusted.get(slot.key, math.nan)
            slot.put(replace(test, p_adjusted=p_adj, adjustment=method, family=name, family_size=len(unique),
                             significant=bool(not math.isnan(p_adj) and p_adj < ALPHA)))
    report.adjustment = method


@dataclass(frozen=True)
class ClaimCounts:
    """How many paired comparisons a report makes, and how many are significant at 5 % before
    and after the multiplicity adjustment (each comparison counted once)."""

    adjustment: str
    comparisons: int
    significant_raw: int
    significant_adjusted: int
    families: int

    def text(self) -> str:
        return (f"{self.comparisons} paired comparisons in {self.families} families: {self.significant_raw} "
                f"significant at 5% before adjustment, {self.significant_adjusted} after {ADJUSTMENT_WORDS[self.adjustment]}")

    def as_dict(self) -> dict[str, Any]:
        return {"adjustment": self.adjustment, "comparisons": self.comparisons, "families": self.families,
                "significant_raw": self.significant_raw, "significant_adjusted": self.significant_adjusted}


ADJUSTMENT_WORDS = {"holm": "Holm's adjustment", "bh": "the Benjamini-Hochberg adjustment", "": "no adjustment"}


def claim_counts(report: Report) -> ClaimCounts:
    """Count the report's comparisons (once each, excluding those against the group's best run,
    which are a ranking aid rather than a claim) and their significance before and after."""
    seen: dict[tuple[Any, ...], Tested] = {}
    families: set[tuple[str, ...]] = set()
    for slot in _slots(report):
        if slot.family[-1] == "best run":
            continue
        test = slot.get()
        if test is None or math.isnan(test.p_value):
            continue
        seen.setdefault((slot.family, slot.key), test)
        families.add(slot.family)
    tests = list(seen.values())
    return ClaimCounts(report.adjustment, len(tests), sum(t.p_value < ALPHA for t in tests),
                       sum(t.p_mark < ALPHA for t in tests), len(families))
