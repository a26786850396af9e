"""The AdamW every test-time tuner uses, with the implementation chosen for the device.

torch picks AdamW's implementation from the device: the multi-tensor ("foreach") kernels on CUDA
(what the original code ran), and on the CPU a Python loop that makes about ten elementwise
passes per tuned tensor per step. A tuner that updates a whole tower at every step of every
test sample (image-tower TPT/RLCF, the distillation baselines, retrieval RLCF) spends most of
its CPU time in that loop (``docs/performance.md#adamw-on-the-cpu``). On the CPU this module
asks for torch's fused kernel instead: one pass over each tensor, the same update up to float
rounding (``tests/methods/test_tta_optim.py`` bounds the difference). Elsewhere torch's own
choice is kept, so the GPU path runs what the original code ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..lazy import LazyModule

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)


def fused_on(params: list[Any]) -> bool:
    """Whether AdamW runs fused for ``params``: on the CPU, for floating-point tensors only."""
    return bool(params) and all(p.device.type == "cpu" and p.is_floating_point() for p in params)


def adamw(params: Iterable[Any], *, lr: float, weight_decay: float, eps: float = 1e-8) -> Any:
    """``torch.optim.AdamW`` over ``params`` (betas 0.9/0.999, torch's defaults), fused on the CPU."""
    params = list(params)
    options: dict[str, Any] = {"fused": True} if fused_on(params) else {}
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps, **options)
