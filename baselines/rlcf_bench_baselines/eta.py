"""ETA: efficient anti-forgetting test-time adaptation without its Fisher regulariser (EATA's
"ETA", Niu et al., ICML 2022), on CLIP's image encoder, per batch of the stream
(``--protocol-param online_batch=B``).

Episode (``docs/protocols.md#eta``): online, never reset. For each batch: forward, entropy of each
sample's softmax; samples with entropy below E₀ are *reliable*; of those, a sample whose softmax
has |cosine| below ε with the moving average of past selected softmaxes is *non-redundant* (all
reliable samples count as such while there is no average yet); the loss is the mean over the
selected samples of ``H · exp(E₀ − H)`` (the weight detached), one SGD step when any sample was
selected; the moving average becomes ``0.9 · avg + 0.1 · mean softmax`` of the selected samples.
The batch is predicted with the logits of that forward (the official ``forward_and_adapt_eata``).
Official defaults (mr-eggplant/EATA ``main.py --algorithm eta``): SGD lr 2.5e-4, momentum 0.9,
E₀ = 0.4 · ln 1000, ε = 0.05, 1 step.

Choices:

* **E₀** = 0.4 · ln C for C classes (``-m e_margin=X`` sets it): the paper defines it so; the
  official code writes ``ln 1000`` (ImageNet), the same value there. On a 10-class set
  0.4 · ln 1000 would exceed the largest possible entropy and select every sample.
* **Layers**: as Tent (``baselines/rlcf_bench_baselines/_norm_tuning.py``): every BatchNorm,
  LayerNorm and GroupNorm affine parameter of the image encoder (EATA's official code adapts
  ``BatchNorm2d`` only; CLIPTTA's port takes the three kinds).
* The redundancy test keeps |cos| < ε as the official code (probabilities: cos ≥ 0).

Departures: none on the layers the official code adapts (parity: ``tests/parity/test_parity_sar_eta.py``).
fp32 forward and update. The shared model is restored when the run ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodContext, MethodSpec, hookimpl
from rlcf_bench.lazy import LazyModule
from rlcf_bench.types import bounded

from ._norm_tuning import NormTuningMethod, softmax_entropy

torch: Any = LazyModule("torch")
F: Any = LazyModule("torch.nn.functional")

MARGIN_SHARE = 0.4  # E0 = 0.4 ln C


@dataclass(frozen=True)
class EtaConfig:
    lr: float = bounded(2.5e-4, gt=0)
    momentum: float = bounded(0.9, ge=0, lt=1)
    e_margin: float = bounded(0.0, ge=0)  # 0: 0.4 · ln C
    d_margin: float = bounded(0.05, ge=0)
    steps: int = bounded(1, ge=1)
    templates: str = "single"


def eta_optimizer(params: list[Any], config: EtaConfig) -> Any:
    return torch.optim.SGD(params, config.lr, momentum=config.momentum)


def update_average(average: Any, probs: Any) -> Any:
    """The moving average of the selected samples' softmax (unchanged when none was selected)."""
    if probs.shape[0] == 0:
        return average
    mean = probs.detach().mean(0)
    return mean if average is None else 0.9 * average + 0.1 * mean


def eta_step(forward: Callable[[], Any], optimizer: Any, e_margin: float, d_margin: float,
             average: Any) -> tuple[Any, Any, int]:
    """One ETA step: returns (the detached logits of the forward, the new moving average, the
    number of samples the update used)."""
    with torch.enable_grad():
        outputs = forward()
        entropy = softmax_entropy(outputs)
        reliable = entropy < e_margin
        kept, probs = entropy[reliable], outputs[reliable].softmax(1)
        if average is not None:
            fresh = F.cosine_similarity(average.unsqueeze(0), probs, dim=1).abs() < d_margin
            kept, probs = kept[fresh], probs[fresh]
        average = update_average(average, probs)
        loss = (kept * (1 / torch.exp(kept.detach() - e_margin))).mean(0)
        if kept.shape[0]:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad()
    return outputs.detach(), average, int(kept.shape[0])


class Eta(NormTuningMethod):
    """ETA (EATA without Fisher regulariser): reliable, non-redundant entropy minimisation of the
    image encoder's norm layers, online per batch."""

    name = "eta"
    version = "1"
    config_cls = EtaConfig
    paper = "Niu et al., Efficient Test-Time Model Adaptation without Forgetting (ICML 2022), ETA"

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        self.e_margin = self.config.e_margin or MARGIN_SHARE * math.log(int(self.text.shape[0]))
        self.average: Any = None
        self.selected = 0

    def make_optimizer(self, params: list[Any]) -> Any:
        return eta_optimizer(params, self.config)

    def step(self, forward: Callable[[], Any]) -> Any:
        outputs, self.average, n = eta_step(forward, self.optimizer, self.e_margin, self.config.d_margin,
                                            self.average)
        self.selected += n
        return outputs

    def state_size(self) -> dict[str, int]:
        return {"state_selected_samples": self.selected}


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(Eta)]
