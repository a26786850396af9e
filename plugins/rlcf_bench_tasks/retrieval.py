"""Zero-shot image–text retrieval, both directions in one run (``docs/original-code.md#retrieval``;
RETRIEVAL.md beside this file).

Queries: every image (``i2t``, ranked against all captions; sample id ``i2t:<image id>``) then
every caption (``t2i``, ranked against all images; ``t2i:<caption index>``). The protocol param
``direction`` (``both`` by default, ``i2t`` or ``t2i``) restricts a run to one direction; ``limit``
caps the number of queries **of each direction** (the gallery stays complete), and ``shuffled``
order permutes the queries within each direction. Stored per query: ``prediction`` = 0-based rank
of the ground truth (pessimistic tie rule, :mod:`rlcf_bench_tasks.retrieval_common`), ``target`` = ground-truth
ids, ``score`` = hit@1, ``extra`` = direction, rank and top-1 candidate. Metrics, recomputed from
the stored rows: ``{i2t,t2i}_r{1,5,10}`` (%, Wilson 95 % intervals), ``{i2t,t2i}_mean`` (mean of
the three recalls), ``r_mean`` (mean over the evaluated directions) and ``rsum`` (sum of the six,
both directions only), with exact multinomial-bootstrap intervals.
"""

from __future__ import annotations

import random
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
from rlcf_bench.types import ParamRule

from .retrieval_common import (
    DIRECTION_NAMES,
    DIRECTIONS,
    RECALL_KS,
    RetrievalBatch,
    RetrievalGallery,
    direction_of,
    ground_truth_rank,
    parse_directions,
    query_id,
)

BOOTSTRAP_RESAMPLES = 2000


class RetrievalTask(TaskRuntime):
    kind = "retrieval"

    def __init__(self, dataset: Any, protocol: RunProtocol) -> None:
        super().__init__(dataset, protocol)
        self.directions = parse_directions(protocol.param("direction", "both"))
        self._gallery: RetrievalGallery | None = None

    @property
    def gallery(self) -> RetrievalGallery:
        if self._gallery is None:
            self._gallery = RetrievalGallery(self.dataset, self.directions)
        return self._gallery

    # ---------------------------------------------------------------- samples
    def direction_samples(self, direction: str) -> list[tuple[int, str]]:
        if direction == "i2t":
            return [(i, query_id("i2t", self.dataset.image_id(i))) for i in range(len(self.dataset))]
        return [(t, query_id("t2i", t)) for t in range(len(self.dataset.captions))]

    def all_samples(self) -> list[tuple[int, str]]:
        return [item for d in self.directions for item in self.direction_samples(d)]

    def samples(self) -> list[tuple[int, str]]:
        """Direction blocks (i2t first); order and ``limit`` apply within each direction."""
        out: list[tuple[int, str]] = []
        for d in self.directions:
            items = self.direction_samples(d)
            if self.protocol.order == "shuffled":
                random.Random(f"{self.protocol.seed}/{d}").shuffle(items)
            if self.protocol.limit is not None:
                items = items[: self.protocol.limit]
            out += items
        return out

    # ---------------------------------------------------------------- execution
    def context_fields(self, model: Any, device: Any) -> dict[str, Any]:
        self.gallery.device = device
        return {"gallery": self.gallery}

    def _single(self, direction: str, items: Sequence[tuple[int, str]], model: Any, device: Any) -> RetrievalBatch:
        from .retrieval_common import load_images

        ids = tuple(sid for _, sid in items)
        indices = tuple(i for i, _ in items)
        targets = [self.gallery.ground_truth(direction, i) for i in indices]
        if direction == "i2t":
            images = load_images(self.dataset, indices, size=model.image_size, mean=model.mean, std=model.std,
                                 device=device)
            return RetrievalBatch(ids, indices, images=images, targets=targets, direction="i2t")
        texts = tuple(self.gallery.captions[i] for i in indices)
        return RetrievalBatch(ids, indices, texts=texts, targets=targets, direction="t2i")

    def batches(self, items: Sequence[tuple[int, str]]) -> list[list[tuple[int, str]]]:
        """One batch per direction (stream order kept): a method never sees a mixed batch."""
        groups: dict[str, list[tuple[int, str]]] = {}
        for item in items:
            groups.setdefault(direction_of(item[1]), []).append(item)
        return list(groups.values())

    def make_batch(self, items: Sequence[tuple[int, str]], model: Any, device: Any) -> Batch:
        directions = {direction_of(sid) for _, sid in items}
        if len(directions) != 1:
            raise ValueError(f"a retrieval batch holds queries of one direction, got {sorted(directions)} "
                             "(RetrievalTask.batches splits them)")
        return self._single(directions.pop(), items, model, device)

    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        if predictions.scores is None:
            raise ValueError("a retrieval method must return scores [B, N] over the gallery")
        scores = predictions.scores.detach().float().cpu()
        records = []
        for row, (sid, idx) in enumerate(zip(batch.sample_ids, batch.indices)):
            d = direction_of(sid)
            n = self.gallery.n_candidates(d)
            if scores.shape[-1] < n:
                raise ValueError(f"{sid}: scores have {scores.shape[-1]} columns, the {d} gallery has {n} candidates")
            s = scores[row, :n]
            target = self.gallery.ground_truth(d, idx)
            gt = list(target) if isinstance(target, tuple) else [target]
            rank = ground_truth_rank(s, gt)
            extra: dict[str, Any] = {"direction": d, "rank": rank, "top1": int(s.argmax())}
            if predictions.extras is not None:
                extra.update(predictions.extras[row])
            records.append(SampleRecord(sid, idx, rank, gt if d == "i2t" else gt[0], float(rank < 1), extra))
        return records

    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        return recall_metrics(records)


def recall_metrics(records: Sequence[SampleRecord], seed: int = 0) -> dict[str, MetricValue]:
    """Recall@{1,5,10} per direction with Wilson intervals; per-direction means, ``r_mean`` and
    ``rsum`` with percentile-bootstrap intervals (exact multinomial resampling of the queries,
    independently per direction)."""
    import numpy as np

    from rlcf_bench.stats import wilson_interval

    ranks: dict[str, list[int]] = {d: [] for d in DIRECTIONS}
    for r in records:
        ranks[str(r.extra.get("direction") or direction_of(r.sample_id))].append(int(r.prediction))
    rng = np.random.default_rng(seed)
    metrics: dict[str, MetricValue] = {}
    means: list[tuple[float, np.ndarray]] = []
    for d in DIRECTIONS:
        arr = np.asarray(ranks[d], dtype=np.int64)
        n = int(arr.size)
        if n == 0:
            continue
        for k in RECALL_KS:
            hits = int((arr < k).sum())
            lo, hi = wilson_interval(hits, n)
            metrics[f"{d}_r{k}"] = MetricValue(100.0 * hits / n, 100.0 * lo, 100.0 * hi, n)
        # per-query mean of the three hit indicators: its mean over queries is the mean recall;
        # it takes len(RECALL_KS)+1 values, so resampling n queries is a multinomial draw.
        levels = np.arange(len(RECALL_KS) + 1) / len(RECALL_KS)
        per_query = np.stack([arr < k for k in RECALL_KS]).sum(axis=0)
        freq = np.bincount(per_query, minlength=len(levels)) / n
        draws = rng.multinomial(n, freq, size=BOOTSTRAP_RESAMPLES) @ levels / n
        value = float(levels[per_query].mean())
        means.append((value, draws))
        lo, hi = np.quantile(draws, [0.025, 0.975])
        metrics[f"{d}_mean"] = MetricValue(100.0 * value, 100.0 * lo, 100.0 * hi, n)
    if means:
        value = float(np.mean([v for v, _ in means]))
        draws = np.mean([dr for _, dr in means], axis=0)
        lo, hi = np.quantile(draws, [0.025, 0.975])
        n_all = sum(len(v) for v in ranks.values())
        metrics["r_mean"] = MetricValue(100.0 * value, 100.0 * lo, 100.0 * hi, n_all)
        if len(means) == len(DIRECTIONS):
            scale = 100.0 * len(RECALL_KS) * len(DIRECTIONS)
            metrics["rsum"] = MetricValue(scale * value, scale * lo, scale * hi, n_all)
    return metrics


#: Display order: text-to-image first (its R@1 is the primary metric), then image-to-text.
_SHOWN = ("t2i", "i2t")

#: How reports read the task's results: per-query 0/1 hit@1, compared by exact McNemar (a 0/1 outcome, as in
#: classification), each per-direction metric tested on
#: that direction's queries only (sample ids ``i2t:...``/``t2i:...``).
METRICS = TaskMetrics(
    metrics=(*(MetricSpec(f"{d}_r{k}", interval="wilson", sample_group=d) for d in _SHOWN for k in RECALL_KS),
             *(MetricSpec(f"{d}_mean", interval="bootstrap", sample_group=d) for d in _SHOWN),
             MetricSpec("r_mean", interval="bootstrap"), MetricSpec("rsum", interval="bootstrap")),
    primary=tuple(f"{d}_r1" for d in _SHOWN),
    score=SampleScore(label="hit@1", percent=True, paired_test="mcnemar-exact", groups=DIRECTIONS),
    order=1,
    n_note="for retrieval's t2i R@1, the text queries; the paired tests of a per-direction metric use that "
           "direction's queries only",
)


def check_data(data: Any) -> list[str]:
    """The dataset contract of retrieval (``TaskSpec.check_data``): a :class:`RetrievalData` whose
    non-empty captions each point at an image, every image with at least one; its image ids."""
    from rlcf_bench.datasets import RetrievalData

    if not isinstance(data, RetrievalData):
        raise ValueError(f"a retrieval dataset is a RetrievalData, not a {type(data).__name__}")
    if not len(data.captions) == len(data.caption_image) > 0:
        raise ValueError(f"{len(data.captions)} captions but {len(data.caption_image)} caption_image entries")
    if not all(isinstance(c, str) and c.strip() for c in data.captions):
        raise ValueError("captions must be non-empty strings")
    if not all(0 <= i < len(data) for i in data.caption_image):
        raise ValueError(f"caption_image points past the {len(data)} images")
    if set(data.caption_image) != set(range(len(data))):
        raise ValueError("every image needs at least one caption")
    return [data.image_id(i) for i in range(len(data))]


@hookimpl
def rlcfb_register_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="retrieval", version="1", kind="retrieval", build=RetrievalTask,
            protocol=RunProtocol(seed=0, n_views=1, selection_ratio=1.0, order="fixed", precision="auto",
                                 params=(("direction", "both"),)),
            metrics=METRICS, params={"direction": ParamRule(str, choices=tuple(DIRECTION_NAMES))}, check_data=check_data,
            description="image-text retrieval, both directions (i2t: image vs all captions; t2i: caption vs "
                        "all images); Recall@1/5/10 from stored per-query ranks",
        )
    ]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The task and its metrics as a paper's caption names them."""
    return {"retrieval": "Retrieval", "t2i_r1": "Text-to-image R@1", "i2t_r1": "Image-to-text R@1"}
