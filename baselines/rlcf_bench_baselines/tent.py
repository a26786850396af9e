"""Tent: test-time entropy minimisation of the normalisation layers (Wang et al., ICLR 2021), on
CLIP's image encoder, adapting per batch of the stream (``--protocol-param online_batch=B``).

Episode (``docs/protocols.md#tent``): online, never reset inside a run. For each batch of B
centre crops: forward the image encoder, logits ``logit_scale · cos(image, class text)``, loss the
mean Shannon entropy of their softmax, one backward and one optimiser step on the affine
parameters (scale and shift) of the encoder's normalisation layers; the batch is predicted with
the logits of that same forward (the official ``forward_and_adapt`` returns the outputs it
adapted on, so a batch's own update reaches only the batches after it). Official defaults
(DequanWang/tent ``conf.py``): Adam, lr 1e-3, betas (0.9, 0.999), weight decay 0, 1 step.

Choices:

* **Which layers.** The official code adapts ``BatchNorm2d`` only (its models are ResNets). On a
  CLIP image encoder every ``BatchNorm2d``, ``LayerNorm`` and ``GroupNorm`` affine parameter is
  adapted, as CLIPTTA's Tent port does (``ttavlm/methods/abstract_model.py``,
  ``collect_params``: the same three kinds): a ViT has LayerNorms only, the micro suite's
  ResNet CLIP BatchNorms. BatchNorm layers use the batch's statistics and keep none (the official
  ``configure_model``); LayerNorm has no statistics.
* **Class texts.** The dataset's single template (``-m templates=ensemble``: its ensemble), text
  encoder frozen (as CLIPTTA).
* **Steps.** ``-m steps=N`` repeats forward-and-update on the batch (the official ``steps``);
  the prediction is the last forward's, as the official loop. CLIPTTA's scripts use 10 steps and
  re-forward after the last one: not the default here.

Departures: none from the official algorithm on the layers it adapts (parity:
``tests/parity/test_parity_tent.py``). The other modules of the encoder stay in eval mode (the
official calls ``model.train()``; a CLIP encoder has no dropout, and its BatchNorms are switched
to batch statistics explicitly). Forward and update run in fp32 whatever the protocol's precision
(an fp16 batch loss would need a loss scaler the official code does not have). The shared model
is restored when the run ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodSpec, hookimpl
from rlcf_bench.lazy import LazyModule
from rlcf_bench.types import bounded

from ._norm_tuning import NormState, NormTuningMethod, configure_norms, softmax_entropy

__all__ = ["NormState", "Tent", "TentConfig", "configure_norms", "forward_and_adapt", "tent_optimizer"]

torch: Any = LazyModule("torch")


@dataclass(frozen=True)
class TentConfig:
    lr: float = bounded(1e-3, gt=0)
    beta: float = bounded(0.9, ge=0, lt=1)
    weight_decay: float = bounded(0.0, ge=0)
    steps: int = bounded(1, ge=1)
    templates: str = "single"


def tent_optimizer(params: list[Any], config: TentConfig) -> Any:
    return torch.optim.Adam(params, lr=config.lr, betas=(config.beta, 0.999), weight_decay=config.weight_decay)


def forward_and_adapt(forward: Callable[[], Any], optimizer: Any) -> Any:
    """One Tent step: forward, mean entropy, backward, optimiser step; returns the (detached)
    logits of that forward."""
    with torch.enable_grad():
        outputs = forward()
        loss = softmax_entropy(outputs).mean(0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return outputs.detach()


class Tent(NormTuningMethod):
    """Tent (entropy minimisation of the image encoder's norm layers), online per batch."""

    name = "tent"
    version = "1"
    config_cls = TentConfig
    paper = "Wang et al., Tent: Fully Test-Time Adaptation by Entropy Minimization (ICLR 2021)"

    def make_optimizer(self, params: list[Any]) -> Any:
        return tent_optimizer(params, self.config)

    def step(self, forward: Callable[[], Any]) -> Any:
        return forward_and_adapt(forward, self.optimizer)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(Tent)]
