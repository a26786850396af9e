"""PIL's resize, on tensors of any device (``docs/original-code.md#views``).

The original code resizes 8-bit PIL images: an antialiased separable filter (bilinear or bicubic
with PIL's support scaled by the downscaling factor), the horizontal pass first, each pass rounded
and clipped to 8 bits. torch's ``antialias=True`` interpolation uses the same filters; running the
two passes separately and rounding after each, as PIL does, gives PIL's pixels (measured on
photographs: at most one level of 255 apart, on a handful of pixels, where PIL's fixed-point
weights round the other way).

Values are on the 0–255 scale (floats): ``quantize`` keeps them on the 8-bit grid as PIL does
for an 8-bit source; without it (a float source) the passes are only clipped.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Mode = Literal["bilinear", "bicubic"]


def to_grid(x: torch.Tensor) -> torch.Tensor:
    """Round half up and clip to the 8-bit grid 0..255 (PIL's ``clip8``)."""
    return (x + 0.5).floor_().clamp_(0.0, 255.0)


def pil_resize(x: torch.Tensor, size: tuple[int, int], mode: Mode, *, quantize: bool) -> torch.Tensor:
    """``[N, C, h, w]`` → ``[N, C, size]``, float on the 0–255 scale, as PIL's ``resize`` of the
    same 8-bit image: horizontal pass, then vertical, each rounded to 8 bits when ``quantize``
    (a pass whose size does not change is skipped, as in PIL)."""
    height, width = size
    if x.shape[-1] != width:
        x = _finish(F.interpolate(x, size=(x.shape[-2], width), mode=mode, antialias=True, align_corners=False),
                    quantize)
    if x.shape[-2] != height:
        x = _finish(F.interpolate(x, size=(height, width), mode=mode, antialias=True, align_corners=False),
                    quantize)
    return x


def _finish(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    return to_grid(x) if quantize else x.clamp_(0.0, 255.0)
