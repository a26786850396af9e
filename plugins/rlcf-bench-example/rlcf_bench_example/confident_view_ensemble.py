"""``confident-view-ensemble``: average the class probabilities of the protocol's most
confident views (lowest entropy), no learning. A training-free TTA baseline and the smallest
complete example of a method plugin: config, setup, predict, registration."""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import Batch, Method, MethodContext, MethodSpec, Predictions, hookimpl
from rlcf_bench.prompts import class_text_features


@dataclass(frozen=True)
class EnsembleConfig:
    include_view0: bool = True


class ConfidentViewEnsemble(Method[EnsembleConfig]):
    """Mean probability over the most confident augmented views (no adaptation)."""

    name = "confident-view-ensemble"
    version = "1"
    config_cls = EnsembleConfig
    tasks = frozenset({"classification"})
    max_batch = 64

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.text = class_text_features(ctx)

    def predict(self, batch: Batch) -> Predictions:
        import torch
        import torch.nn.functional as F

        views = batch.views  # [B, V, 3, S, S], seeded per sample by the task
        b, v = views.shape[:2]
        with torch.no_grad(), self.ctx.amp.autocast():
            feats = F.normalize(self.ctx.model.encode_image(views.flatten(0, 1)).float(), dim=-1)
        probs = (self.ctx.model.logit_scale * feats @ self.text.t()).softmax(-1).view(b, v, -1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        keep = entropy.topk(self.ctx.protocol.n_selected, dim=1, largest=False).indices
        chosen = probs.gather(1, keep.unsqueeze(-1).expand(-1, -1, probs.shape[-1]))
        if self.config.include_view0:
            chosen = torch.cat([probs[:, :1], chosen], dim=1)
        return Predictions(probs=chosen.mean(1))


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(ConfidentViewEnsemble)]
