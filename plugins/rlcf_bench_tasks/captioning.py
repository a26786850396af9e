"""Cross-domain image captioning (``docs/original-code.md#captioning-episode``): COCO-trained
ClipCap/CapDec on Flickr30k/NoCaps,
and the micro suite's captioner on its shifted domains.

Protocol: one centre crop per image, preprocessed for the captioner's CLIP (its ``image_size``,
``mean``, ``std``); episodic methods reset after every batch. Per sample the stored record holds
the generated caption (``prediction``), the references (``target``) and, as ``score``, the
sample's CLIPScore (so two runs can be compared pairwise); ``extra`` holds the RefCLIPScore, the
name of the model that computed both, and ``cider``: the image's CIDEr-D term with the document
frequencies of the *whole* test set's references (PTB-tokenised once per run), so that on a run
over the whole set the corpus CIDEr is exactly the mean of these terms and reports compare two
runs' CIDEr by a paired bootstrap over images (``docs/statistics.md#captioning``; on a narrowed
run the corpus CIDEr's idf is the evaluated subset's and the terms are tested, labelled, instead).

Metrics (``aggregate``, from the stored records of a run, so a resumed run reports exactly what
a straight one would), ×100: ``bleu1``..``bleu4``, ``meteor``, ``rougeL``, ``cider`` (primary),
``spice`` only when its jars are installed (otherwise absent; see CAPTIONING.md), ``clipscore``
and ``refclipscore`` with bootstrap 95 % intervals.

Which model scores CLIPScore: the task has no access to the run's reward model (interface), so
it uses the captioner's own CLIP (``model.clip``) unless the captioner carries a ``judge``
attribute (an ``OpenClipVLM``). Protocol parameter ``meteor`` (default true) can switch METEOR off
(it starts a JVM, a few seconds per run).
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
from rlcf_bench.types import ParamRule

REFERENCE_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rougeL", "cider")


class CaptioningTask(TaskRuntime):
    kind = "captioning"

    def __init__(self, dataset: Any, protocol: RunProtocol) -> None:
        super().__init__(dataset, protocol)
        self._model: Any = None
        self._cider: tuple[Any, dict[int, list[str]]] | None = None

    def _cider_references(self) -> tuple[Any, dict[int, list[str]]]:
        """The whole test set's CIDEr idf and every image's tokenised references (built once)."""
        if self._cider is None:
            from .caption_metrics import CiderIdf, ptb_tokenize

            refs = ptb_tokenize({i: list(self.dataset.references(i)) for i in range(len(self.dataset))})
            self._cider = CiderIdf.from_references(refs.values()), refs
        return self._cider

    def _cider_terms(self, indices: Sequence[int], captions: Sequence[str]) -> list[float]:
        from .caption_metrics import cider_terms, ptb_tokenize

        idf, refs = self._cider_references()
        tokens = ptb_tokenize({row: [c] for row, c in enumerate(captions)})
        terms = cider_terms({row: tokens[row][0] for row in range(len(captions))},
                            {row: refs[i] for row, i in enumerate(indices)}, idf)
        return [terms[row] for row in range(len(captions))]

    def all_samples(self) -> list[tuple[int, str]]:
        return [(i, self.dataset.sample_id(i)) for i in range(len(self.dataset))]

    def context_fields(self, model: Any, device: Any) -> dict[str, Any]:
        self._model = model
        return {}

    def make_batch(self, items: Sequence[tuple[int, str]], model: Any, device: Any) -> Batch:
        import torch

        from rlcf_bench.tta.views import normalize, resize_center_crop

        self._model = model
        size, mean, std = model.image_size, model.mean, model.std
        images = torch.stack([resize_center_crop(self.dataset.load_image(i).to(device), size) for i, _ in items])
        refs = [list(self.dataset.references(i)) for i, _ in items]
        return Batch(sample_ids=tuple(sid for _, sid in items), indices=tuple(i for i, _ in items),
                     images=normalize(images, mean, std), targets=refs)

    def _judge(self) -> Any:
        model = self._model
        return getattr(model, "judge", None) or getattr(model, "clip", None)

    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        import torch

        from .caption_metrics import clip_scores

        if predictions.captions is None or len(predictions.captions) != len(batch):
            raise ValueError("a captioning method must return one caption per sample (Predictions.captions)")
        captions = [str(c) for c in predictions.captions]
        judge = self._judge()
        clip_s = ref_s = None
        if judge is not None and hasattr(judge, "text_features"):
            with torch.no_grad():
                assert batch.images is not None, "a captioning batch carries images"
                feats = judge.image_features(batch.images.to(judge.device))
                clip_s, ref_s = clip_scores(judge, feats, captions, batch.targets)
        cider = self._cider_terms(batch.indices, captions)
        records = []
        for row, (sid, idx) in enumerate(zip(batch.sample_ids, batch.indices)):
            extra: dict[str, Any] = {"cider": cider[row]}
            if clip_s is not None:
                if ref_s is not None:  # None only without references
                    extra["refclipscore"] = float(ref_s[row])
                extra["clipscore_model"] = str(getattr(judge, "name", "?"))
            if predictions.extras is not None:
                extra.update(predictions.extras[row])
            score = float(clip_s[row]) if clip_s is not None else None
            records.append(SampleRecord(sid, idx, captions[row], list(batch.targets[row]), score, extra))
        return records

    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        import numpy as np

        from rlcf_bench.stats import bootstrap_mean_ci

        from .caption_metrics import reference_metrics

        n = len(records)
        if n == 0:
            return {}
        cands = {r.sample_id: str(r.prediction) for r in records}
        refs = {r.sample_id: list(r.target) for r in records}
        meteor = str(self.protocol.param("meteor", True)).lower() not in {"0", "false", "no", "off"}
        values, _notes = reference_metrics(cands, refs, meteor=meteor)
        metrics = {name: MetricValue(100.0 * v, n=n) for name, v in values.items()}
        for name, vals in (("clipscore", [r.score for r in records]),
                           ("refclipscore", [r.extra.get("refclipscore") for r in records])):
            arr = np.array([v for v in vals if v is not None], dtype=float)
            if arr.size:
                lo, hi = bootstrap_mean_ci(arr)
                metrics[name] = MetricValue(100.0 * arr.mean(), 100.0 * lo, 100.0 * hi, int(arr.size))
        return metrics


#: How reports read the task's results: corpus-level reference metrics (no interval) except CIDEr,
#: whose per-image terms (fixed idf) are stored and give its interval and paired bootstrap; then
#: the per-sample CLIPScore (the stored score, compared by a paired bootstrap) and RefCLIPScore.
METRICS = TaskMetrics(
    metrics=(*(MetricSpec(name) for name in REFERENCE_METRICS if name != "cider"),
             MetricSpec("cider", interval="bootstrap", sample_terms=True), MetricSpec("spice"),
             MetricSpec("clipscore", interval="bootstrap"), MetricSpec("refclipscore", interval="bootstrap")),
    primary=("cider", "clipscore", "bleu4"),
    score=SampleScore(label="CLIPScore"),
    order=2,
)


def check_data(data: Any) -> list[str]:
    """The dataset contract of captioning (``TaskSpec.check_data``): a :class:`CaptioningData` whose
    every sample has non-empty reference captions; its sample ids."""
    from rlcf_bench.datasets import CaptioningData

    if not isinstance(data, CaptioningData):
        raise ValueError(f"a captioning dataset is a CaptioningData, not a {type(data).__name__}")
    for i in range(len(data)):
        refs = data.references(i)
        if not refs or not all(isinstance(r, str) and r.strip() for r in refs):
            raise ValueError(f"sample {i}: references must be non-empty strings, got {refs!r}")
    return [data.sample_id(i) for i in range(len(data))]


@hookimpl
def rlcfb_register_tasks() -> list[TaskSpec]:
    return [
        TaskSpec(
            name="captioning", version="1", kind="captioning", build=CaptioningTask,
            protocol=RunProtocol(seed=0, n_views=1, selection_ratio=1.0, order="fixed", precision="auto"),
            metrics=METRICS, params={"meteor": ParamRule(bool)}, check_data=check_data,
            description="image captioning under domain shift; BLEU/METEOR/ROUGE-L/CIDEr (×100), CLIPScore, RefCLIPScore",
        )
    ]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The task and its metrics as a paper's caption names them."""
    return {"captioning": "Captioning", "cider": "CIDEr", "bleu4": "BLEU-4", "clipscore": "CLIPScore"}
