"""DMN-ZS — Dual Memory Networks, zero-shot variant (Zhang et al., CVPR 2024): a per-class memory
of past test features read out as query-adaptive class prototypes, fused with zero-shot CLIP.

Per sample, in the protocol's seeded stream order (state starts empty, never reset in a run):

1. encode the views once; ``p̄`` = the mean probabilities of the 10 % most confident views,
   ``ŷ = argmax p̄``, ``h = H(p̄)``;
2. **write before predict**: offer the centre view's feature with score ``h`` to the memory of
   ``ŷ`` (50 entries per class, lowest entropy kept; the rule of ``rlcf_bench.tta.cache``);
3. for every class, weigh its memory entries and its text embedding by
   ``exp(−β (1 − ⟨f₀, m⟩))`` (β = 5.5), sum and normalise: the class prototype ``π_c``;
4. predict ``(p₀ + a · softmax(s · f₀ πᵀ)) / (1 + a)``, ``p₀`` = zero-shot probabilities of the
   centre view (dividing by ``1 + a`` keeps a distribution for calibration; the argmax is the
   official one).

Departures from the official code (``YBZh/DMN``): the fusion weight ``a`` is fixed (default 1.0,
``-m fusion_weight=…``); the official reported numbers pick it *after the run by searching the
test labels* over {0.001 … 1000} (the reference rows carry that note), which a benchmark cannot
do. The prompts are Tip's 7 templates on real ImageNet-family data and the dataset's template
elsewhere, without the CuPL sentences (not shipped here), so the text side is weaker than the
paper's. Views are the protocol's (the official uses 32); the unused ``C × 50 × C`` probability
buffer of the official code is not allocated. The official entropies add 1e-6 (view selection) and
1e-8 (memory scores) inside the logarithm; ours are exact — no entry or prediction changes on the
parity stream, scores differ by less than 1e-4. Per sample, the fused probabilities and the memory
equal the official ``direct_inference``'s to float rounding for a given ``a`` (docs/parity.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rlcf_bench import Batch, MethodSpec, Predictions, ReferenceResult, ViewPolicy, hookimpl
from rlcf_bench.tta.cache import ClassCache, affinity_weights
from rlcf_bench.tta.logits import class_logits_for
from rlcf_bench.tta.online import OnlineMethod, check_options, paper_references, summarise_views


@dataclass(frozen=True)
class DMNConfig:
    """``memory_size`` entries per class, ``beta`` read-out sharpness, ``fusion_weight`` ``a``."""

    memory_size: int = 50
    beta: float = 5.5
    fusion_weight: float = 1.0
    prompts: str = "auto"

    def __post_init__(self) -> None:
        check_options(prompts=self.prompts, memory_size=self.memory_size)
        if self.fusion_weight < 0:
            raise ValueError(f"fusion_weight={self.fusion_weight}: expected ≥ 0")


class DMNZeroShot(OnlineMethod):
    """DMN-ZS: a dynamic per-class memory of test features, read out per query (online)."""

    name = "dmn-zs"
    version = "1"
    config_cls = DMNConfig
    tasks = frozenset({"classification"})
    paper = "Zhang et al., Dual Memory Networks: A Versatile Adaptation Approach for Vision-Language Models (CVPR 2024)"
    #: The official views (``--protocol-param view_policy=method``): 32, AugMix where the dataset has it.
    view_policy: ClassVar[ViewPolicy | None] = ViewPolicy(n_views=32)

    def build_state(self) -> None:
        self.memory = ClassCache(self.n_classes, self.config.memory_size, int(self.text.shape[1]),
                                 device=self.ctx.device)

    def caches(self) -> dict[str, Any]:
        return {"memory": self.memory}

    def adapt(self, batch: Batch) -> None:
        s = summarise_views(self.ctx, batch, self.text, multi_view=True)
        self.memory.insert(s.probs.argmax(), s.feats[0], s.entropy)
        self.summary = s

    def predict(self, batch: Batch) -> Predictions:
        import torch
        import torch.nn.functional as F

        s, a, beta = self.summary, self.config.fusion_weight, self.config.beta
        f0 = s.feats[0].unsqueeze(0)
        # Memory keys and text embeddings are unit vectors (empty slots weigh 0), so the
        # normalised slots of the official read-out are the stored vectors themselves.
        w_memory = affinity_weights(f0, self.memory.keys, beta)[0] * self.memory.valid  # [C, M]
        w_text = affinity_weights(f0, self.text, beta)[0]  # [C]
        prototypes = F.normalize(torch.einsum("cm,cmd->cd", w_memory, self.memory.keys)
                                 + w_text.unsqueeze(-1) * self.text, dim=-1)
        p_mem = class_logits_for(self.ctx).product(f0, prototypes.t()).softmax(-1)
        p0 = s.logits[0:1].softmax(-1)
        return Predictions(probs=(p0 + a * p_mem) / (1.0 + a))


SOURCE = "DMN (CVPR 2024) Table 3 zero-shot, ViT-B/16; OOD sets as reprinted in DPE (NeurIPS 2024) Table 1"
REPORTED = {
    "imagenet": 72.25, "imagenet-a": 58.28, "imagenet-v2": 65.17, "imagenet-r": 78.55, "imagenet-sketch": 53.20,
    "flower102": 74.49, "dtd": 55.85, "pets": 92.04, "cars": 67.96, "ucf101": 72.51, "caltech101": 95.38,
    "food101": 85.08, "sun397": 70.18, "aircraft": 30.03, "eurosat": 59.43,
}


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(DMNZeroShot)]


@hookimpl
def rlcfb_register_references() -> list[ReferenceResult]:
    return paper_references("dmn-zs", SOURCE, REPORTED,
                            note="oracle-tuned: fusion weight searched on the test labels; CuPL prompts")
