"""Classification under distribution shift (ImageNet variants, fine-grained sets, the micro suite).

Protocol (TPT/RLCF, ``docs/original-code.md#views``): 64 views per sample (view 0 = centre crop, 63
random-resized
crops + flips, AugMix on the fine-grained sets), 10 % confident-view selection, prediction on
view 0 unless a method decides otherwise. Metrics: top-1 and top-5 accuracy with 95 % Wilson
intervals, and expected calibration error (15 equal-width bins) with a bootstrap interval.
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

ECE_BINS = 15


class ClassificationTask(TaskRuntime):
    kind = "classification"

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
        records = []
        for row, (sid, idx) in enumerate(zip(batch.sample_ids, batch.indices)):
            target = int(batch.targets[row])
            pred = int(top.indices[row, 0])
            extra: dict[str, Any] = {
                "confidence": float(top.values[row, 0]),
                "top5": bool((top.indices[row] == target).any()),
            }
            if predictions.extras is not None:
                extra.update(predictions.extras[row])
            records.append(SampleRecord(sid, idx, pred, target, float(pred == target), extra))
        return records

    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        import numpy as np

        from rlcf_bench.stats import bootstrap_ci, wilson_interval

        n = len(records)
        correct = np.array([r.score for r in records], dtype=float)
        top5 = np.array([bool(r.extra.get("top5")) for r in records], dtype=float)
        conf = np.array([float(r.extra.get("confidence", 0.0)) for r in records])
        metrics: dict[str, MetricValue] = {}
        for name, hits in (("top1", correct), ("top5", top5)):
            lo, hi = wilson_interval(int(hits.sum()), n)
            metrics[name] = MetricValue(100.0 * hits.mean() if n else float("nan"), 100 * lo, 100 * hi, n)
        pairs = np.stack([conf, correct], axis=1) if n else np.zeros((0, 2))
        ece = expected_calibration_error(conf, correct)
        lo, hi = bootstrap_ci(np.arange(n), statistic=lambda idx: expected_calibration_error(*pairs[idx.astype(int)].T),
                              n_resamples=200) if n else (float("nan"), float("nan"))
        metrics["ece"] = MetricValue(100.0 * ece, 100.0 * lo, 100.0 * hi, n)
        return metrics


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


#: How reports read the task's results: per-sample 0/1 correctness, compared by exact McNemar.
METRICS = TaskMetrics(
    metrics=(MetricSpec("top1", interval="wilson"), MetricSpec("top5", interval="wilson"),
             MetricSpec("ece", label="ECE (expected calibration error)", higher_is_better=False, interval="bootstrap")),
    primary=("top1",),
    score=SampleScore(label="accuracy", percent=True, paired_test="mcnemar-exact"),
    order=0,
)


@hookimpl
def rlcfb_register_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="classification", version="1", kind="classification", build=ClassificationTask,
            protocol=RunProtocol(seed=0, n_views=64, selection_ratio=0.1, order="fixed", precision="auto"),
            metrics=METRICS,
            description="top-1 under distribution shift; 64 seeded views, 10% confident-view selection",
        )
    ]
