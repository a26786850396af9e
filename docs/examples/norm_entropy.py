"""An example of a method that tunes: the image tower's normalisation layers, by marginal entropy.

For every test image (one episode), the confident views are chosen by a no-grad forward of all
the task's views, then the scales and shifts of the image tower's normalisation layers
(BatchNorm in the micro suite's ResNets, LayerNorm in ViTs) take ``steps`` AdamW steps that
lower the entropy of the averaged prediction of those views; view 0 is then predicted with the
adapted tower, and ``reset`` puts the original values back before the next image.

It is written out by hand to show the lifecycle; the same method in three lines is
``ImageTuningMethod`` with ``tune_norm=True`` (``rlcf_bench/tta/episode/methods.py``; ``tpt-image -m
tune_norm=true``). Try it: ``rlcf-bench run --plugins-dir docs/examples --method
example-norm-entropy --limit 20``. docs/writing-a-method.md#write-a-method-that-tunes explains each part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import Batch, Method, MethodContext, MethodSpec, Predictions, hookimpl
from rlcf_bench.tta.episode import ParamSnapshot, trainable
from rlcf_bench.tta.objectives import gather_views, marginal_entropy, select_confident
from rlcf_bench.tta.prompts import class_text_features


@dataclass(frozen=True)
class NormEntropyConfig:
    steps: int = 1  # AdamW steps per image (0: zero-shot)
    lr: float = 1e-3


class NormEntropy(Method[NormEntropyConfig]):
    """Marginal entropy of the confident views, tuning the image tower's normalisation layers."""

    name = "example-norm-entropy"
    version = "1"
    config_cls = NormEntropyConfig
    tasks = frozenset({"classification"})
    max_batch = 1  # the tower's weights are shared by the samples: one image per episode

    def setup(self, ctx: MethodContext) -> None:
        import torch

        self.ctx = ctx
        self.text = class_text_features(ctx)  # [C, E] class prompts, computed once per run
        norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
        self.params = [p for m in ctx.model.visual.modules() if isinstance(m, norms)
                       for p in m.parameters(recurse=False)]
        self.snapshot = ParamSnapshot(self.params)  # the values reset() writes back, in place
        self.optimizer = torch.optim.AdamW(self.params, lr=self.config.lr, weight_decay=0.0)

    def logits(self, images: Any) -> Any:
        """Class logits ``[N, C]`` of images ``[N, 3, S, S]`` under the current tower."""
        import torch.nn.functional as F

        feats = F.normalize(self.ctx.model.encode_image(images).float(), dim=-1)
        return self.ctx.model.logit_scale * feats @ self.text.t()

    def reset(self) -> None:
        if getattr(self, "snapshot", None) is None:  # setup() did not get that far: nothing to restore
            return
        self.snapshot.restore()
        self.optimizer.state.clear()  # each episode starts from empty AdamW moments

    def adapt(self, batch: Batch) -> None:
        import torch

        if self.config.steps <= 0:
            return
        views = batch.views  # [1, V, 3, S, S], the task's seeded views (view 0: the plain image)
        with torch.no_grad(), self.ctx.amp.autocast():
            all_logits = self.logits(views.flatten(0, 1)).view(*views.shape[:2], -1)
        selected = gather_views(views, select_confident(all_logits, self.ctx.protocol.n_selected))
        with trainable(self.params):  # gradients for the tuned tensors only, for this episode only
            for _ in range(self.config.steps):
                self.optimizer.zero_grad(set_to_none=True)
                with self.ctx.amp.autocast():
                    logits = self.logits(selected.flatten(0, 1)).view(*selected.shape[:2], -1)
                    loss = marginal_entropy(logits).sum()
                self.ctx.amp.backward_step(loss, self.optimizer)  # (scaled) backward + step

    def predict(self, batch: Batch) -> Predictions:
        import torch

        with torch.no_grad(), self.ctx.amp.autocast():
            return Predictions(logits=self.logits(batch.images).float())


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(NormEntropy)]
