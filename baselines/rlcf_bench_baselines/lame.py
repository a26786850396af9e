"""LAME: Laplacian-regularised maximum-likelihood estimation of a batch's labels (Boudiaf et al.,
CVPR 2022), on CLIP's zero-shot predictions, per batch of the stream
(``--protocol-param online_batch=B``).

Episode (``docs/protocols.md#lame``): nothing of the model changes. For each batch of B centre
crops: the frozen model's class probabilities ``softmax(logit_scale · cos(image, class text))``
and L2-normalised image features; an affinity between the batch's features; then the official
bound optimisation ``Y ← softmax(log p + λ·W·Y)`` from ``Y = p`` until the energy changes by at
most 1e-8 relatively (at most 100 iterations). The batch's prediction is Y. Official defaults
(fiveai/LAME ``src/config/defaults.py``): RBF affinity with σ the mean distance to the 5th
nearest neighbour (its ``LAME_SIGMA`` is not read by the RBF kernel), λ = 1, no symmetrisation.

Choices: the features are the CLIP image embeddings (the official code takes its backbone's
penultimate features; CLIPTTA's LAME port uses the CLIP image features as here); the unary term
is ``-log(p + 1e-10)`` as the official. ``-m affinity=knn|rbf|linear`` and ``-m knn=K`` as the
official options. Stored output: ``probs`` = Y (``logits`` = log Y, for top-k and calibration).
Departures: none (parity: ``tests/parity/test_parity_lame.py``). Batches are independent: the
method keeps no state, but the batches depend on the stream's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import Batch, MethodSpec, Predictions, hookimpl
from rlcf_bench.lazy import LazyModule
from rlcf_bench.tta.online import BatchOnlineMethod
from rlcf_bench.types import bounded

torch: Any = LazyModule("torch")
F: Any = LazyModule("torch.nn.functional")

AFFINITIES = ("rbf", "knn", "linear")


@dataclass(frozen=True)
class LameConfig:
    affinity: str = "rbf"
    knn: int = bounded(5, ge=1)
    bound_lambda: float = bounded(1.0, ge=0)
    max_steps: int = bounded(100, ge=1)
    force_symmetry: bool = False
    templates: str = "single"

    def __post_init__(self) -> None:
        if self.affinity not in AFFINITIES:
            raise ValueError(f"affinity={self.affinity!r}: expected one of {', '.join(AFFINITIES)}")


def affinity_matrix(feats: Any, kind: str, knn: int) -> Any:
    """``[N, N]`` affinity of normalised features: kNN (1 for each of the ``knn`` nearest others),
    RBF (σ = mean distance to the ``knn``-th nearest, the point itself counted) or linear."""
    n = feats.shape[0]
    if kind == "linear":
        return feats @ feats.t()
    dist = torch.norm(feats.unsqueeze(0) - feats.unsqueeze(1), dim=-1, p=2)  # the official distance
    if kind == "knn":
        index = dist.topk(min(knn + 1, n), -1, largest=False).indices[:, 1:]
        return torch.zeros(n, n, dtype=feats.dtype, device=feats.device).scatter_(-1, index, 1.0)
    sigma = dist.topk(min(knn, n), -1, largest=False).values[:, -1].mean()
    return torch.exp(-dist ** 2 / (2 * sigma ** 2))


def entropy_energy(y: Any, unary: Any, pairwise: Any, bound_lambda: float) -> Any:
    return (unary * y - bound_lambda * pairwise * y + y * torch.log(y.clip(1e-20))).sum()


def laplacian_optimization(unary: Any, kernel: Any, bound_lambda: float = 1.0, max_steps: int = 100) -> Any:
    """The bound optimisation of LAME: ``Y ← softmax(−unary + λ·K·Y)`` until the energy's relative
    change is at most 1e-8 (checked from the third iteration, as the official loop)."""
    old = float("inf")
    y = (-unary).softmax(-1)
    for i in range(max_steps):
        pairwise = bound_lambda * kernel.matmul(y)
        y = (-unary + pairwise).softmax(-1)
        energy = float(entropy_energy(y, unary, pairwise, bound_lambda))
        if i > 1 and abs(energy - old) <= 1e-8 * abs(old):
            break
        old = energy
    return y


def lame(probs: Any, feats: Any, config: LameConfig) -> Any:
    """LAME's labels ``[N, C]`` of a batch from its probabilities and (normalised) features."""
    unary = -torch.log(probs + 1e-10)
    kernel = affinity_matrix(F.normalize(feats, p=2, dim=-1), config.affinity, config.knn)
    if config.force_symmetry:
        kernel = (kernel + kernel.t()) / 2
    return laplacian_optimization(unary.float(), kernel.float(), config.bound_lambda, config.max_steps)


class Lame(BatchOnlineMethod):
    """LAME (Laplacian-regularised batch labels on a frozen CLIP), online per batch."""

    name = "lame"
    version = "1"
    config_cls = LameConfig
    paper = "Boudiaf et al., Parameter-free Online Test-time Adaptation (CVPR 2022)"

    def predict(self, batch: Batch) -> Predictions:
        with torch.no_grad(), self.ctx.amp.autocast():
            feats = self.features(batch.images)
        y = lame(self.logits(feats).float().softmax(-1), feats.float(), self.config)
        return Predictions(logits=torch.log(y.clip(1e-20)), probs=y)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(Lame)]
