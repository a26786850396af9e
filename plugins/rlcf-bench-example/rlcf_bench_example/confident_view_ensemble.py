"""``confident-view-ensemble``: average the class probabilities of the protocol's most
confident views (lowest entropy), no learning. A training-free TTA baseline and the smallest
complete example of a method plugin: config, setup, predict, registration."""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import Batch, Method, MethodContext, MethodSpec, Predictions, hookimpl
from rlcf_bench.tta.episode import view_features
from rlcf_bench.tta.logits import class_logits_for
from rlcf_bench.tta.prompts import class_text_features


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

        # [B, V, E]: normalised features of the task's seeded views under the frozen image tower,
        # computed once per invocation and shared with every other method (rlcf_bench.view_cache)
        feats = view_features(self.ctx, batch)
        with torch.no_grad():  # the model's s · cos + b, under the protocol's probability (softmax by default)
            probs = class_logits_for(self.ctx).product(feats, self.text.t()).softmax(-1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        keep = entropy.topk(self.ctx.protocol.n_selected, dim=1, largest=False).indices
        chosen = probs.gather(1, keep.unsqueeze(-1).expand(-1, -1, probs.shape[-1]))
        if self.config.include_view0:
            chosen = torch.cat([probs[:, :1], chosen], dim=1)
        return Predictions(probs=chosen.mean(1))


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(ConfidentViewEnsemble)]
