"""Classification under distribution shift (ImageNet variants, fine-grained sets, the micro suite).

Protocol (TPT/RLCF, ``docs/original-code.md#views``): 64 views per sample (view 0 = centre crop, 63
random-resized
crops + flips, AugMix on the fine-grained sets), 10 % confident-view selection, prediction on
view 0 unless a method decides otherwise. Metrics: top-1 and top-5 accuracy with 95 % Wilson
intervals, and expected calibration error (15 equal-width bins) with a bootstrap interval.

A sample whose probabilities are not all finite (a method that diverged on it, e.g. an inf
gradient under ``fp32``/``amp-bf16``, which have no overflow check) is a failed prediction: stored
as ``prediction`` −1 (wrong, not in the top 5), confidence 0 and ``extra.nonfinite`` true, so
top-1/top-5/ECE stay defined (it counts as a wrong answer given with no confidence) and
``nonfinite`` (their number) appears among the metrics when there is any (docs/statistics.md).
``--protocol-param probability=softmax|sigmoid``: which probability methods use where they need
one, and so the confidence the ECE reads (``rlcf_bench.tta.logits``, ``docs/siglip.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlcf_bench import (
    Batch,
    MetricSpec,
    MetricValue,
    Predictions,
    RunProtocol,
    SampleRecord,
    SampleScore,
    TaskMetrics,
    TaskSpec,
    hookimpl,
)
from rlcf_bench.task import TaskRuntime
from rlcf_bench.tta.logits import PROBABILITIES, PROBABILITY_PARAM
from rlcf_bench.types import ParamRule

ECE_BINS = 15
#: Bootstrap resamples of the ECE's 95% interval (percentile; docs/statistics.md): enough for stable
#: 2.5% and 97.5% quantiles.
ECE_RESAMPLES = 2000
#: The stored prediction of a sample whose probabilities are not finite (no class: always wrong).
NONFINITE_PREDICTION = -1


class ClassificationTask(TaskRuntime):
    kind = "classification"
    #: Whether the task reads an open-set mix (a dataset with ``is_ood``); plain classification
    #: refuses one, whose OOD samples have no label (``docs/open-set.md``).
    open_set = False

    def __init__(self, dataset: Any, protocol: RunProtocol) -> None:
        if not self.open_set and callable(getattr(dataset, "is_ood", None)):
            name = getattr(dataset, "name", type(dataset).__name__)
            raise ValueError(f"dataset {name!r} is an open-set mix: run it with --task open-set")
        super().__init__(dataset, protocol)

    def all_samples(self) -> list[tuple[int, str]]:
        return [(i, self.dataset.sample_id(i)) for i in range(len(self.dataset))]

    def context_fields(self, model: Any, device: Any) -> dict[str, Any]:
        ensemble = getattr(self.dataset, "ensemble_templates", None)
        return {"classnames": tuple(self.dataset.classnames), "templates": tuple(self.dataset.templates),
                "ensemble_templates": tuple(ensemble) if ensemble else None}

    def make_batch(self, items: Sequence[tuple[int, str]], model: Any, device: Any) -> Batch:
        import torch

        from rlcf_bench.tta.views import BatchViews, normalize, resize_center_crop, sample_seed, upload_images

        raw = upload_images([self.dataset.load_image(i) for i, _ in items], device)  # one copy per batch
        size, mean, std = model.image_size, model.mean, model.std
        images = normalize(torch.stack([resize_center_crop(img, size) for img in raw]), mean, std)
        proto = self.protocol
        ids = tuple(sid for _, sid in items)
        # each sample's views seeded by its id alone; parameters drawn lazily (inside the timed adapt)
        views = BatchViews(raw, [sample_seed(proto.seed, sid) for sid in ids], n_views=proto.n_views, size=size,
                           mean=mean, std=std, augmix=proto.augmix)

        targets = torch.tensor([self.dataset.label(i) for i, _ in items], dtype=torch.long)
        return Batch(sample_ids=ids, indices=tuple(i for i, _ in items), images=images, targets=targets,
                     row_view_fn=views, row_subset_view_fn=views)

    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        if predictions.probs is not None:
            probs = predictions.probs.float()
        elif predictions.logits is not None:
            probs = predictions.logits.float().softmax(-1)
        else:
            raise ValueError("a classification method must return logits or probs")
        probs = probs.cpu()
        k = min(5, probs.shape[-1])
        top = probs.topk(k, dim=-1)
        finite = probs.isfinite().all(-1).tolist()
        records = []
        for row, (sid, idx) in enumerate(zip(batch.sample_ids, batch.indices)):
            target = int(batch.targets[row])
            pred = int(top.indices[row, 0]) if finite[row] else NONFINITE_PREDICTION
            extra: dict[str, Any] = {
                "confidence": float(top.values[row, 0]) if finite[row] else 0.0,
                "top5": bool((top.indices[row] == target).any()) and finite[row],
            }
            if not finite[row]:
                extra["nonfinite"] = True
            if predictions.extras is not None:
                extra.update(predictions.extras[row])
            records.append(SampleRecord(sid, idx, pred, target, float(pred == target), extra))
        return records

    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        import numpy as np

        from rlcf_bench.stats import wilson_interval

        n = len(records)
        correct = np.array([r.score for r in records], dtype=float)
        top5 = np.array([bool(r.extra.get("top5")) for r in records], dtype=float)
        conf = np.array([float(r.extra.get("confidence", 0.0)) for r in records])
        conf[~np.isfinite(conf)] = 0.0  # stores written before the rule above: the same rule
        nonfinite = sum(bool(r.extra.get("nonfinite")) for r in records)
        metrics: dict[str, MetricValue] = {}
        for name, hits in (("top1", correct), ("top5", top5)):
            lo, hi = wilson_interval(int(hits.sum()), n)
            metrics[name] = MetricValue(100.0 * hits.mean() if n else float("nan"), 100 * lo, 100 * hi, n)
        if n and all(r.prediction is not None and r.target is not None for r in records):
            metrics.update(prediction_spread([int(r.prediction) for r in records],
                                             [int(r.target) for r in records]))
        ece = expected_calibration_error(conf, correct)
        lo, hi = ece_bootstrap_ci(conf, correct) if n else (float("nan"), float("nan"))
        metrics["ece"] = MetricValue(100.0 * ece, 100.0 * lo, 100.0 * hi, n)
        if nonfinite:
            metrics["nonfinite"] = MetricValue(float(nonfinite), None, None, n)
        return metrics


def prediction_spread(predictions: Sequence[int], targets: Sequence[int]) -> dict[str, MetricValue]:
    """Two checks for a near-chance domain: ``balanced_top1``, the mean over the classes present of
    each class's accuracy (a method that predicts one class everywhere scores 100/C, whatever the
    class frequencies), and ``top_class_share``, the share of samples given the most frequent
    predicted class (a prediction collapse shows as a share near 100 %). Exact values, no interval."""
    from collections import Counter

    n = len(predictions)
    per_class: dict[int, list[bool]] = {}
    for p, t in zip(predictions, targets):
        per_class.setdefault(t, []).append(p == t)
    balanced = 100.0 * sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)
    share = 100.0 * Counter(predictions).most_common(1)[0][1] / n
    return {"balanced_top1": MetricValue(balanced, None, None, n), "top_class_share": MetricValue(share, share, share, n)}


def resampled_eces(confidence: Any, correct: Any, idx: Any, bins: int = ECE_BINS) -> Any:
    """The ECE of each resample (row of ``idx``, sample indices) at once: per (resample, bin) the
    sums of hits and confidences, and ``ECE = sum_b |hits_b - confidence_b| / n`` (the same
    quantity as :func:`expected_calibration_error`, whose ``|B_b|/N * |acc - conf|`` it expands)."""
    import numpy as np

    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    which = np.clip(np.ceil(conf * bins) - 1, 0, bins - 1).astype(np.int64)
    rows, n = idx.shape
    cells = (which[idx] + bins * np.arange(rows)[:, None]).ravel()
    hits = np.bincount(cells, weights=hit[idx].ravel(), minlength=rows * bins).reshape(rows, bins)
    confs = np.bincount(cells, weights=conf[idx].ravel(), minlength=rows * bins).reshape(rows, bins)
    return np.abs(hits - confs).sum(axis=1) / n


def ece_bootstrap_ci(confidence: Any, correct: Any, n_resamples: int = ECE_RESAMPLES, seed: int = 0,
                     max_cells: int = 4_000_000) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the ECE over samples (``n_resamples`` resamples,
    fixed seed; drawn in chunks of at most ``max_cells`` indices)."""
    import numpy as np

    n = len(confidence)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, max_cells // max(1, n))
    values = np.concatenate([resampled_eces(confidence, correct,
                                            rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n)))
                             for start in range(0, n_resamples, per_chunk)])
    lo, hi = np.quantile(values, [0.025, 0.975])
    return (float(lo), float(hi))


def expected_calibration_error(confidence: Any, correct: Any, bins: int = ECE_BINS) -> float:
    """ECE with equal-width confidence bins: sum_b |B_b|/N * |acc(B_b) - conf(B_b)|."""
    import numpy as np

    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.size == 0:
        return float("nan")
    which = np.clip(np.ceil(conf * bins) - 1, 0, bins - 1).astype(int)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(hit[mask].mean() - conf[mask].mean())
    return float(total)


#: The TPT/RLCF protocol (64 views, 10 % confident views, dataset order).
PROTOCOL = RunProtocol(seed=0, n_views=64, selection_ratio=0.1, order="fixed", precision="auto")

#: How reports read the task's results: per-sample 0/1 correctness, compared by exact McNemar.
METRICS = TaskMetrics(
    metrics=(MetricSpec("top1", interval="wilson"), MetricSpec("top5", interval="wilson"),
             MetricSpec("ece", label="ECE (expected calibration error)", higher_is_better=False, interval="bootstrap"),
             MetricSpec("balanced_top1", label="balanced accuracy (mean per-class top-1)", interval="none"),
             MetricSpec("top_class_share", label="share of the most frequent predicted class (collapse check)",
                        higher_is_better=False, interval="none"),
             MetricSpec("nonfinite", label="failed predictions (non-finite probabilities)", higher_is_better=False)),
    primary=("top1",),
    score=SampleScore(label="accuracy", percent=True, paired_test="mcnemar-exact"),
    order=0,
)


def check_data(data: Any) -> list[str]:
    """The dataset contract of classification (``TaskSpec.check_data``): a :class:`ClassificationData`
    with distinct, non-empty class names, templates holding ``{}`` and labels in range; its sample ids."""
    from rlcf_bench.datasets import ClassificationData

    if not isinstance(data, ClassificationData):
        raise ValueError(f"a classification dataset is a ClassificationData, not a {type(data).__name__}")
    names = tuple(data.classnames)
    if not names or not all(isinstance(c, str) and c.strip() for c in names) or len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct non-empty strings: {names[:5]!r}")
    if not data.templates or not all("{}" in t for t in data.templates):
        raise ValueError(f"every template must hold {{}}: {tuple(data.templates)[:3]!r}")
    labels = [data.label(i) for i in range(len(data))]
    # an open-set mix (docs/open-set.md): its OOD samples, and only those, have the label -1
    is_ood = getattr(data, "is_ood", None)
    is_ood = is_ood if callable(is_ood) else (lambda i: False)
    ood = [bool(is_ood(i)) for i in range(len(data))]
    if not all(isinstance(y, int) and (y == -1 if o else 0 <= y < len(names)) for y, o in zip(labels, ood)):
        raise ValueError(f"labels out of range 0..{len(names) - 1} (-1 for, and only for, an open-set mix's "
                         f"OOD samples): {labels[:10]}")
    return [data.sample_id(i) for i in range(len(data))]


@hookimpl
def rlcfb_register_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="classification", version="1", kind="classification", build=ClassificationTask,
            protocol=PROTOCOL, metrics=METRICS, check_data=check_data,
            params={PROBABILITY_PARAM: ParamRule(str, choices=PROBABILITIES)},
            description="top-1 under distribution shift; 64 seeded views, 10% confident-view selection",
        )
    ]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The task and its metrics as a paper's caption names them."""
    return {"classification": "Classification", "top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}
