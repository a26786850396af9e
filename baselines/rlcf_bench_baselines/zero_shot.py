"""Zero-shot CLIP: cosine similarity of the centre crop to cached class-prompt features.

``templates=single`` uses the dataset's single template ("a photo of a {}."); ``ensemble``
averages the normalised features of the dataset's template ensemble (CLIP's 80 ImageNet
templates where the dataset provides them), then re-normalises, as CLIP does.
``underscore_prompt`` reproduces the original RLCF zero-shot/backbone quirk of the literal prompt
"a_photo_of_a {}." (``docs/original-code.md#underscored-prompts``); off by default.

Retrieval (same method, ``--task retrieval``, its own class): the gallery's candidate features (all captions for
image→text, all images for text→image) are computed once per run in ``setup``; a query's scores
are ``logit_scale · cos(query, candidate)`` (``docs/original-code.md#retrieval`` with no adaptation;
a single model, not
the original script's B/16+L/14 ensemble, ``docs/original-code.md#retrieval-zero-shot-ensemble``).
``templates``/``underscore_prompt`` do
not apply to retrieval.

Captioning (same method, ``--task captioning``): the captioner without test-time adaptation, beam
search with ``beams`` beams (``baselines/rlcf_bench_baselines/_zero_shot_caption.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlcf_bench import Batch, Method, MethodContext, MethodSpec, Predictions, hookimpl
from rlcf_bench.tta.logits import class_logits_for
from rlcf_bench.tta.prompts import class_text_features
from rlcf_bench_tasks.retrieval_common import encode_queries, predict_by_direction, ranked_scores

from ._zero_shot_caption import ZeroShotCaption

if TYPE_CHECKING:  # pragma: no cover
    import torch

PAPER = "Radford et al., Learning Transferable Visual Models From Natural Language Supervision (ICML 2021)"


@dataclass(frozen=True)
class ZeroShotConfig:
    templates: str = "single"
    underscore_prompt: bool = False


class ZeroShotClassification(Method[ZeroShotConfig]):
    """Zero-shot CLIP classification (no adaptation)."""

    name = "zero-shot"
    version = "1"
    config_cls = ZeroShotConfig
    tasks = frozenset({"classification"})
    max_batch = 256
    paper = PAPER

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.text = class_text_features(ctx, templates=self.config.templates,
                                        underscore_prompt=self.config.underscore_prompt)

    def predict(self, batch: Batch) -> Predictions:
        import torch
        import torch.nn.functional as F

        model = self.ctx.vlm
        assert batch.images is not None, "a classification batch carries images"
        with torch.no_grad(), self.ctx.amp.autocast():
            feats = F.normalize(model.encode_image(batch.images).float(), dim=-1)
        return Predictions(logits=class_logits_for(self.ctx).product(feats, self.text.t()))


class ZeroShotRetrieval(Method[ZeroShotConfig]):
    """Zero-shot CLIP retrieval (no adaptation)."""

    name = "zero-shot"
    version = "1"
    config_cls = ZeroShotConfig  # the same options (and run keys) as classification; they do not apply here
    tasks = frozenset({"retrieval"})
    max_batch = 256
    paper = PAPER

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.candidates = {d: ctx.gallery.candidate_features(d, ctx.vlm, ctx.amp) for d in ctx.gallery.directions}

    def predict(self, batch: Batch) -> Predictions:
        return predict_by_direction(batch, self._scores)

    def _scores(self, direction: str, batch: Batch) -> torch.Tensor:
        import torch

        model = self.ctx.vlm
        with torch.no_grad(), self.ctx.amp.autocast():
            queries = encode_queries(model, direction, batch)
        return ranked_scores(queries, self.candidates[direction], model.logit_scale)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    """One public name, one implementation per task (the registry keys methods by name and task)."""
    return [MethodSpec.from_method(cls) for cls in (ZeroShotClassification, ZeroShotRetrieval, ZeroShotCaption)]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The name a paper's table prints (``report --label zero-shot=...`` overrides it)."""
    return {ZeroShotClassification.name: "Zero-shot"}
