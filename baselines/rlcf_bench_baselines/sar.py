"""SAR: sharpness-aware and reliable entropy minimisation (Niu et al., ICLR 2023), on CLIP's image
encoder, per batch of the stream (``--protocol-param online_batch=B``).

Episode (``docs/protocols.md#sar``): online. For each batch: forward; the samples whose entropy is
below E₀ (reliable); a SAM step — the gradient of their mean entropy moves the parameters to the
worst point within ρ (first step), a second forward there, the samples still below E₀ among the
first selection give the loss whose gradient, back at the original parameters, makes the SGD
update (second step). A moving average (0.9) of that second loss below 0.2 resets the adapted
parameters and the optimiser to their initial state (model recovery). The batch is predicted with
the first forward's logits (the official ``forward_and_adapt_sar``). Official defaults
(mr-eggplant/SAR ``main.py``, its ViT-B/16 setting — CLIP's default backbone): SGD with momentum
0.9 and lr = 0.001 · B / 64, SAM ρ = 0.05, E₀ = 0.4 · ln 1000, reset below 0.2, 1 step.

Choices:

* **E₀** = 0.4 · ln C for C classes (``-m e_margin=X``), as ETA (``eta.py``): ``ln 1000`` in the
  official code is ImageNet's C.
* **Layers**: the norm layers of the image encoder (``_norm_tuning.py``), except the top ones, as
  the official ``collect_params`` (ViT: blocks 9–11 and the final norm; ResNet: ``layer4``): on a
  CLIP encoder the last quarter of its residual blocks (``resblocks.K``), ``ln_post`` and
  ``layer4`` — for a 12-block ViT the official blocks 9–11, as CLIPTTA's ``skip_top_layers``.
* **lr**: the ViT rule 0.001 · B / 64 with B the protocol's ``online_batch`` (``-m lr_at_64=X``
  sets the lr at B = 64).
* **Recovery** clears the moving average, as the official ``SAR.reset`` means to; its ``forward``
  then overwrites the cleared average with the last value, so the official average carries on
  through a reset and can trigger the next one at once: ``-m keep_ema_on_reset=true`` reproduces
  that (tested against the official run, which resets after batches 14 and 18 of the parity stream).
* **Recovery** resets the adapted parameters only: the official ``reset`` reloads the SAM
  wrapper's state, which does not hold the base SGD's momentum, so the momentum carries on; kept.

Departures: none on the layers the official code adapts (parity:
``tests/parity/test_parity_sar_eta.py``). fp32 forward and update. The shared model is restored when
the run ends.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodContext, MethodSpec, hookimpl
from rlcf_bench.lazy import LazyModule
from rlcf_bench.streams import online_batch_of
from rlcf_bench.types import bounded

from ._norm_tuning import NormTuningMethod, softmax_entropy

torch: Any = LazyModule("torch")

MARGIN_SHARE = 0.4
RESET_BELOW = 0.2
EMA = 0.9
_BLOCK = re.compile(r"resblocks\.(\d+)\b")


@dataclass(frozen=True)
class SarConfig:
    lr_at_64: float = bounded(0.001, gt=0)  # the lr is lr_at_64 · B / 64
    momentum: float = bounded(0.9, ge=0, lt=1)
    rho: float = bounded(0.05, ge=0)
    e_margin: float = bounded(0.0, ge=0)  # 0: 0.4 · ln C
    reset_below: float = bounded(RESET_BELOW, ge=0)
    keep_ema_on_reset: bool = False
    steps: int = bounded(1, ge=1)
    templates: str = "single"


class SAM:
    """Sharpness-aware minimisation around a base optimiser: :meth:`first_step` moves every
    parameter with a gradient by ``ρ · g / ‖g‖`` (the global norm, + 1e-12), :meth:`second_step`
    puts them back and lets the base optimiser step with the gradient taken there."""

    def __init__(self, params: list[Any], base: Callable[..., Any], rho: float = 0.05, **kwargs: Any) -> None:
        self.params, self.rho = list(params), rho
        self.base = base(self.params, **kwargs)
        self.saved: dict[int, Any] = {}

    def zero_grad(self) -> None:
        self.base.zero_grad()

    def first_step(self) -> None:
        with torch.no_grad():
            with_grad = [p for p in self.params if p.grad is not None]
            if with_grad:
                norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in with_grad]), p=2)
                for p in with_grad:
                    self.saved[id(p)] = p.data.clone()
                    p.add_(p.grad * (self.rho / (norm + 1e-12)).to(p))
        self.zero_grad()

    def second_step(self) -> None:
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None and id(p) in self.saved:
                    p.data = self.saved[id(p)]
            self.base.step()
        self.zero_grad()



def sar_step(forward: Callable[[], Any], optimizer: SAM, e_margin: float, ema: float | None,
             reset_below: float = RESET_BELOW) -> tuple[Any, float | None, bool]:
    """One SAR step: returns (the detached logits of the first forward, the new moving average of
    the second loss, whether the model must be reset)."""
    with torch.enable_grad():
        optimizer.zero_grad()
        outputs = forward()
        entropy = softmax_entropy(outputs)
        reliable = torch.where(entropy < e_margin)
        entropy[reliable].mean(0).backward()
        optimizer.first_step()
        second = softmax_entropy(forward())[reliable]
        loss = second[torch.where(second < e_margin)].mean(0)
        value = float(loss.item())
        if not math.isnan(value):
            ema = value if ema is None else EMA * ema + (1 - EMA) * value
        loss.backward()
        optimizer.second_step()
    return outputs.detach(), ema, ema is not None and ema < reset_below


class Sar(NormTuningMethod):
    """SAR (sharpness-aware reliable entropy minimisation of the image encoder's norm layers,
    with model recovery), online per batch."""

    name = "sar"
    version = "1"
    config_cls = SarConfig
    paper = "Niu et al., Towards Stable Test-Time Adaptation in Dynamic Wild World (ICLR 2023)"

    def skip(self, name: str) -> bool:
        if "layer4" in name or "ln_post" in name:
            return True
        block = _BLOCK.search(name)
        return block is not None and int(block.group(1)) >= self.top_from

    def setup(self, ctx: MethodContext) -> None:
        blocks = {int(m.group(1)) for name, _ in ctx.vlm.visual.named_modules() for m in [_BLOCK.search(name)] if m}
        self.top_from = len(blocks) - len(blocks) // 4 if blocks else 0  # 12 blocks: 9, 10, 11 stay frozen
        super().setup(ctx)
        self.e_margin = self.config.e_margin or MARGIN_SHARE * math.log(int(self.text.shape[0]))
        self.ema: float | None = None
        self.resets = 0
        self.initial = [p.detach().clone() for p in self.params]

    def make_optimizer(self, params: list[Any]) -> Any:
        lr = self.config.lr_at_64 * (online_batch_of(self.ctx.protocol.params) or 1) / 64
        return SAM(params, torch.optim.SGD, rho=self.config.rho, lr=lr, momentum=self.config.momentum)

    def step(self, forward: Callable[[], Any]) -> Any:
        outputs, self.ema, reset = sar_step(forward, self.optimizer, self.e_margin, self.ema, self.config.reset_below)
        if reset:  # model recovery: the adapted parameters back to their start (the momentum stays, as the official)
            with torch.no_grad():
                for p, p0 in zip(self.params, self.initial):
                    p.copy_(p0)
            self.ema = self.ema if self.config.keep_ema_on_reset else None
            self.resets += 1
        return outputs

    def state_size(self) -> dict[str, int]:
        return {"state_resets": self.resets}


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(Sar)]
