"""A task's metric metadata: what each metric is, how its interval is computed, what the
per-sample score is and how two runs are compared on it (what reports read)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

IntervalMethod = Literal["wilson", "bootstrap", "none"]
PairedTestName = Literal["mcnemar-exact", "paired-bootstrap"]


@dataclass(frozen=True)
class MetricSpec:
    """How reports read one metric a task emits.

    ``label``: a reader's name for it where the name alone is cryptic (``"ECE (expected
    calibration error)"``). ``interval``: how the task computes the 95 % interval it stores
    (``wilson``, ``bootstrap``; ``none``: it stores none and the report must not invent one, e.g.
    a corpus-level score). ``sample_group``: the metric is computed on the samples whose id starts
    with ``"<group>:"`` only (retrieval's ``t2i_r1``: the text queries), so its paired tests and
    intervals use those samples' scores only (:attr:`SampleScore.groups`). ``sample_terms``: the
    task stores each sample's term of this metric in ``SampleRecord.extra[name]`` (the metric is
    their mean, ×1 or ×100), so its paired tests and interval use those terms instead of the
    sample's ``score`` (captioning's CIDEr with a fixed idf, ``docs/statistics.md#captioning``).
    """

    name: str
    label: str = ""
    higher_is_better: bool = True
    interval: IntervalMethod = "none"
    sample_group: str = ""
    sample_terms: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SampleScore:
    """What a task stores as the per-sample ``SampleRecord.score`` and how two runs are compared
    on it (reports match the samples of two runs by id and run ``paired_test`` on these scores).

    ``label``: what the score is, as a comparison names its mean (``"accuracy"``).
    ``percent``: the score is a 0/1 hit whose mean the metrics report ×100 (then differences are
    percentage points); otherwise the metrics are in the score's own unit.
    ``paired_test``: ``mcnemar-exact`` (exact McNemar, only used while every score is 0 or 1;
    else the paired bootstrap) or ``paired-bootstrap`` (of the mean difference).
    ``groups``: sample-id prefixes (``"i2t"`` for ids ``"i2t:..."``) naming sub-populations a
    metric may be computed on (:attr:`MetricSpec.sample_group`); a store whose ids carry none of
    them uses all scores.
    """

    label: str = "mean per-sample score"
    percent: bool = False
    paired_test: PairedTestName = "paired-bootstrap"
    groups: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["groups"] = list(self.groups)
        return d


@dataclass(frozen=True)
class TaskMetrics:
    """A task's metric metadata: everything a report needs to rank, test and label its runs.

    ``metrics``: in display order (undeclared metrics follow alphabetically). ``primary``: the
    ranking metric, then the ones that stand in for it where a run lacks it (a one-direction
    retrieval run has no ``t2i_r1``). ``order``: where the task's sections come in a report
    (lower first, then by name). ``n_note``: what a report's ``n`` counts where it is not every
    sample of the run (retrieval: the queries of the primary metric's direction).
    ``paper_metrics``: further metrics the paper layout gives a table of their own after the
    primary's (the open-set task's AUROC and FPR95), without paired-test marks or Δ columns.
    """

    metrics: tuple[MetricSpec, ...] = ()
    primary: tuple[str, ...] = ()
    score: SampleScore = SampleScore()
    order: int = 100
    n_note: str = ""
    paper_metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"task metrics: duplicate names in {names}")

    def metric(self, name: str) -> MetricSpec:
        """The declared metric ``name``, or an undeclared one's defaults (higher is better)."""
        return next((m for m in self.metrics if m.name == name), MetricSpec(name))

    def sort_key(self, name: str) -> tuple[int, str]:
        """Display order of a metric: its declared position, then undeclared ones by name."""
        names = [m.name for m in self.metrics]
        return (names.index(name), "") if name in names else (len(names), name)

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": [m.as_dict() for m in self.metrics], "primary": list(self.primary),
                "score": self.score.as_dict(), "order": self.order, "n_note": self.n_note,
                "paper_metrics": list(self.paper_metrics)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskMetrics:
        score = dict(d.get("score") or {})
        score["groups"] = tuple(score.get("groups") or ())
        return cls(metrics=tuple(MetricSpec(**m) for m in d.get("metrics") or ()),
                   primary=tuple(d.get("primary") or ()), score=SampleScore(**score), order=int(d.get("order", 100)),
                   n_note=str(d.get("n_note") or ""), paper_metrics=tuple(d.get("paper_metrics") or ()))
