"""Open-set TTA (``docs/open-set.md``): a classification stream that mixes in images of classes
outside the label set (CLIPTTA's protocol: NINCO, Places, iNaturalist, Textures as OOD sets for
ImageNet; the micro suite's novel shapes).

The task's kind is ``classification``: every classification method runs on it unchanged,
episodic and online, on a dataset built by :func:`rlcf_bench_tasks.openset_mix.open_set_spec`.
Metrics: top-1 and top-5 on the ID samples (Wilson intervals; paired test: exact McNemar on the
ID samples), and the AUROC and FPR@95%TPR of an OOD score over all samples (stratified bootstrap
intervals; paired DeLong tests of the AUROC in the report section below).

The OOD score (higher = more in-distribution): a method declares its own by returning
``Predictions.extras[i]["ood_score"]``; otherwise the protocol parameter ``ood_score`` picks it
from the method's output: ``msp`` (maximum softmax probability, the default) or ``energy`` (the
negative energy ``logsumexp(logits)``, which needs logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlcf_bench import (
    Batch,
    MetricSpec,
    MetricValue,
    Predictions,
    ReportSection,
    SampleRecord,
    SampleScore,
    TaskMetrics,
    TaskSpec,
    hookimpl,
)
from rlcf_bench.types import ParamRule

from .classification import PROTOCOL, ClassificationTask, check_data
from .openset_mix import ID_GROUP, OOD_GROUP

TASK = "open-set"
OOD_SCORES = ("msp", "energy")
#: The key of a method's own per-sample OOD score in ``Predictions.extras``.
OWN_SCORE = "ood_score"


def ood_scores(predictions: Predictions, kind: str) -> list[float]:
    """Each row's OOD score (higher = more in-distribution): the method's own where it returns one
    (``extras[i]["ood_score"]``), else ``kind`` (``msp`` or ``energy``) of its output."""
    own = [None if predictions.extras is None else predictions.extras[i].get(OWN_SCORE)
           for i in range(_rows(predictions))]
    if all(v is not None for v in own):
        return [float(v) for v in own]  # type: ignore[arg-type]
    if kind == "energy":
        if predictions.logits is None:
            raise ValueError("ood_score=energy needs logits, and this method returns probabilities only; "
                             "use ood_score=msp or let the method return extras['ood_score']")
        computed = predictions.logits.float().logsumexp(-1)
    elif kind == "msp":
        probs = predictions.probs if predictions.probs is not None else predictions.logits.float().softmax(-1)  # type: ignore[union-attr]
        computed = probs.float().max(-1).values
    else:
        raise ValueError(f"ood_score must be one of {', '.join(OOD_SCORES)}, got {kind!r}")
    values = computed.cpu().tolist()
    return [float(v) if v is not None else float(c) for v, c in zip(own, values)]


def _rows(predictions: Predictions) -> int:
    out = predictions.probs if predictions.probs is not None else predictions.logits
    if out is None:
        raise ValueError("a classification method must return logits or probs")
    return int(out.shape[0])


class OpenSetTask(ClassificationTask):
    """Classification records on the ID samples; OOD samples are stored with their score only."""

    open_set = True

    def __init__(self, dataset: Any, protocol: Any) -> None:
        if not callable(getattr(dataset, "is_ood", None)):
            name = getattr(dataset, "name", type(dataset).__name__)
            raise ValueError(f"task {TASK!r} needs an open-set mix (an ID set with OOD sets), and dataset {name!r} "
                             f"is not one; use micro-openset, imagenet-openset or another *-openset dataset")
        super().__init__(dataset, protocol)
        self.ood_kind = str(dict(protocol.params).get("ood_score", "msp"))

    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        scores = ood_scores(predictions, self.ood_kind)
        records = []
        for rec, value in zip(super().score(batch, predictions), scores):
            ood = bool(self.dataset.is_ood(rec.index))
            extra = {**rec.extra, OWN_SCORE: value, "ood": ood}
            records.append(SampleRecord(rec.sample_id, rec.index, rec.prediction, rec.target,
                                        None if ood else rec.score, extra))
        return records

    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        from ._openset_stats import auroc, bootstrap_intervals, fpr_at_tpr

        ids = [r for r in records if not r.extra.get("ood")]
        metrics = {k: v for k, v in super().aggregate(ids).items() if k in ("top1", "top5")}
        flags = [bool(r.extra.get("ood")) for r in records]
        values = [float(r.extra[OWN_SCORE]) for r in records]
        ci = bootstrap_intervals(values, flags)
        for name, value in (("auroc", auroc(values, flags)), ("fpr95", fpr_at_tpr(values, flags))):
            lo, hi = ci[name]
            metrics[name] = MetricValue(100.0 * value, 100.0 * lo, 100.0 * hi, len(records))
        n_ood = sum(flags)
        metrics["ood_share"] = MetricValue(100.0 * n_ood / len(records) if records else float("nan"),
                                           None, None, len(records))
        return metrics


METRICS = TaskMetrics(
    metrics=(MetricSpec("top1", label="top-1 on the ID samples", interval="wilson", sample_group=ID_GROUP),
             MetricSpec("auroc", label="AUROC of the OOD score (ID vs OOD)", interval="bootstrap"),
             MetricSpec("fpr95", label="FPR at 95% TPR of the OOD score", higher_is_better=False, interval="bootstrap"),
             MetricSpec("top5", label="top-5 on the ID samples", interval="wilson", sample_group=ID_GROUP),
             MetricSpec("ood_share", label="share of OOD samples in the mix", interval="none")),
    primary=("top1",),
    score=SampleScore(label="ID accuracy", percent=True, paired_test="mcnemar-exact", groups=(ID_GROUP, OOD_GROUP)),
    order=5,
    n_note="top-1/top-5: the ID samples; AUROC/FPR95: all samples",
    paper_metrics=("auroc", "fpr95"),
)


@hookimpl
def rlcfb_register_tasks() -> list[TaskSpec]:
    return [TaskSpec(
        name=TASK, version="1", kind="classification", build=OpenSetTask,
        protocol=PROTOCOL, metrics=METRICS, check_data=check_data,
        params={"ood_score": ParamRule(str, choices=OOD_SCORES)},
        description="open-set stream (ID + OOD images): ID top-1, AUROC and FPR@95%TPR of an OOD score",
    )]


@hookimpl
def rlcfb_report_sections(rows: Sequence[Any], store: Any) -> list[ReportSection]:
    from ._openset_report import delong_section

    section = delong_section([r for r in rows if r.task == TASK], store)
    return [section] if section is not None else []
