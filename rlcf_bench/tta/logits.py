"""Class logits from cosine similarities: the model's scale and bias, and the protocol's probability.

A CLIP is trained with a softmax over ``s · cos`` (``s`` = ``exp(logit_scale)``, 100 for OpenAI's);
a SigLIP with a per-pair sigmoid of ``s · cos + b`` (a learned bias ``b``, about −10 at init).
Every method forms its class logits here, ``z = s · cos + b`` with the policy's own ``s`` and
``b`` (``b`` = 0 for a CLIP, so CLIP results are unchanged bit for bit), and the classification
protocol parameter ``probability`` (``--protocol-param probability=softmax|sigmoid``, part of the
protocol hash when given) says which probability a method uses where it needs one:

* ``softmax`` (the default, what TTA-VLM uses for SigLIP too): ``softmax_c(z)``; the logits are
  ``z`` itself.
* ``sigmoid``: SigLIP's own per-class probability ``σ(z_c)``, normalised over the classes where a
  method needs a distribution (entropy, KL, calibration): ``σ(z_c) / Σ_k σ(z_k)``. The logits a
  method works with are then ``log σ(z)``, whose softmax is exactly that distribution, so every
  entropy, selection, KL and the task's ECE follow without further change; the argmax (the
  prediction of an unadapted model) is the same as under ``softmax``.

``docs/siglip.md`` has the details and what each method does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lazy import LazyModule

torch: Any = LazyModule("torch")
F: Any = LazyModule("torch.nn.functional")

#: The ``--protocol-param`` key, its values and its default (absent = ``softmax``).
PROBABILITY_PARAM = "probability"
PROBABILITIES = ("softmax", "sigmoid")
DEFAULT_PROBABILITY = "softmax"


def probability_of(protocol: Any) -> str:
    """The protocol's probability (``softmax`` when not given); a ``ValueError`` for any other value."""
    choice = str(protocol.param(PROBABILITY_PARAM, DEFAULT_PROBABILITY))
    if choice not in PROBABILITIES:
        raise ValueError(f"{PROBABILITY_PARAM}={choice!r}: expected one of {', '.join(PROBABILITIES)}")
    return choice


def logit_bias_of(model: Any) -> float:
    """The model's logit bias (SigLIP's ``b``); 0 for a model without one (CLIP, a test double)."""
    return float(getattr(model, "logit_bias", 0.0) or 0.0)


@dataclass(frozen=True)
class ClassLogits:
    """``cos ↦ s · cos + b`` (then ``log σ`` under ``probability=sigmoid``), for any shape of ``cos``."""

    scale: float
    bias: float = 0.0
    probability: str = DEFAULT_PROBABILITY

    def __call__(self, cos: torch.Tensor) -> torch.Tensor:
        return self._finish(self.scale * cos)

    def product(self, features: torch.Tensor, text_t: torch.Tensor) -> torch.Tensor:
        """``s · features @ text_t + b`` (then ``log σ``), evaluated as ``(s · features) @ text_t``:
        the order the methods always used, so a CLIP's logits keep their exact bits."""
        return self._finish(self.scale * features @ text_t)

    def _finish(self, z: torch.Tensor) -> torch.Tensor:
        if self.bias:  # skipped at 0: a CLIP's logits are exactly what they were without a bias
            z = z + self.bias
        return F.logsigmoid(z) if self.probability == "sigmoid" else z

    @classmethod
    def of(cls, model: Any, protocol: Any = None) -> ClassLogits:
        """``model``'s scale and bias under ``protocol``'s probability (``softmax`` without one)."""
        probability = probability_of(protocol) if protocol is not None else DEFAULT_PROBABILITY
        return cls(float(model.logit_scale), logit_bias_of(model), probability)


def class_logits_for(ctx: Any) -> ClassLogits:
    """The run's class logits: the policy's scale and bias under the run's protocol."""
    return ClassLogits.of(ctx.vlm, ctx.protocol)
