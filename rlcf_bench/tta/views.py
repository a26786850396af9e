"""Test-time views, generated as a batch on the device from one uploaded image.

The TPT recipe (``docs/original-code.md#views``): view 0 is the plain preprocessing (resize the
shorter side, centre
crop); views 1..V-1 are random-resized crops (scale 0.08–1, ratio 3/4–4/3) with horizontal flips
of the *original* image, plus AugMix (torchvision's, severity 1, width 3, depth 1–3, without the
ops that overlap the corruptions) when the protocol asks for it. All crops are cut and resized in
one ``roi_align`` call (adaptive sampling averages each output bin, so downscaling is
anti-aliased) instead of 63 PIL round-trips.

Randomness comes from a generator seeded by ``(protocol seed, sample id)``: a sample gets the same
views whatever the batch size, order or method (tests check this).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..types import stable_hash


def sample_seed(seed: int, sample_id: str) -> int:
    return int(stable_hash([seed, sample_id], length=15), 16)


def resize_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8/float ``[3, H, W]`` → float ``[3, size, size]`` in [0, 1]: bicubic resize of the shorter
    side to ``size`` (antialiased), then a centre crop — CLIP's preprocessing."""
    x = image.float().unsqueeze(0)
    if image.dtype == torch.uint8:
        x = x / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[0, :, top : top + size, left : left + size].clamp_(0.0, 1.0)


def random_resized_crop_boxes(height: int, width: int, n: int, generator: torch.Generator,
                              scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """``[n, 4]`` boxes (x1, y1, x2, y2) following torchvision's RandomResizedCrop sampling
    (10 attempts, then a centre crop clamped to the ratio range)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    boxes = torch.empty(n, 4)
    for k in range(n):
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item())
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
                j = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
                break
        else:
            in_ratio = width / height
            if in_ratio < min(ratio):
                w, h = width, int(round(width / min(ratio)))
            elif in_ratio > max(ratio):
                h, w = height, int(round(height * max(ratio)))
            else:
                w, h = width, height
            i, j = (height - h) // 2, (width - w) // 2
        boxes[k] = torch.tensor([j, i, j + w, i + h], dtype=torch.float32)
    return boxes


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s


def make_views(image: torch.Tensor, *, n_views: int, size: int, mean: Sequence[float], std: Sequence[float],
               augmix: bool, seed: int, only: Sequence[int] | None = None) -> torch.Tensor:
    """``[n_views, 3, size, size]`` normalised views of one ``[3, H, W]`` image (uint8 or [0,1]
    float), on the image's device; view 0 is the centre crop.

    ``only``: just these views, in this order (``[len(only), 3, size, size]``), the same bits as
    the full set's rows: every view's random draws are still made, in order, but only the
    requested crops are cut (each crop depends on its own box alone). With AugMix, whose random
    state runs through the views one after another, the full set is made and indexed."""
    generator = torch.Generator().manual_seed(seed)
    base = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    if only is not None and not all(0 <= k < n_views for k in only):
        raise IndexError(f"views {list(only)} out of range for {n_views} views")
    n_aug = n_views - 1
    boxes = random_resized_crop_boxes(base.shape[-2], base.shape[-1], n_aug, generator) if n_aug > 0 else None
    if only is None or augmix or boxes is None:  # the full set (AugMix's random state runs through the views)
        views = [resize_center_crop(image, size).unsqueeze(0)]
        if boxes is not None:
            views.append(_crops(base, size, boxes, generator, augmix))
        out = torch.cat(views)
        return normalize(out if only is None else out[list(only)], mean, std)
    flips = torch.rand(n_aug, generator=generator) < 0.5  # drawn for every view, as for the full set
    wanted = sorted({k - 1 for k in only if k > 0})
    cut = dict(zip(wanted, _cut(base, size, boxes[wanted], flips[wanted]))) if wanted else {}
    if 0 in only:
        cut[-1] = resize_center_crop(image, size)  # view 0, the centre crop
    return normalize(torch.stack([cut[k - 1] for k in only]), mean, std)


def _cut(base: torch.Tensor, size: int, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The crops of ``boxes`` ``[n, 4]`` resized to ``size`` (one ``roi_align`` call), flipped
    where ``flips``, clamped to [0, 1]."""
    boxes, flips = boxes.to(base.device), flips.to(base.device)
    rois = torch.cat([torch.zeros(len(boxes), 1, device=base.device), boxes], dim=1)
    crops = roi_align(base.unsqueeze(0), rois, output_size=(size, size), spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)
    return torch.where(flips.view(-1, 1, 1, 1), crops.flip(-1), crops).clamp_(0.0, 1.0)


def _crops(base: torch.Tensor, size: int, boxes: torch.Tensor, generator: torch.Generator,
           augmix: bool) -> torch.Tensor:
    """All augmented views 1..V-1: crops, flips drawn from ``generator``, then AugMix if asked."""
    crops = _cut(base, size, boxes, torch.rand(len(boxes), generator=generator) < 0.5)
    return _augmix(crops, generator) if augmix else crops


def _augmix(crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """torchvision AugMix per view (severity 1, width 3, depth 1–3, no corruption-overlapping ops),
    its global RNG forked and seeded from ``generator`` so the result is reproducible."""
    from torchvision.transforms import v2

    augmix = v2.AugMix(severity=1, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=False)
    as_uint8 = (crops * 255.0).round().to(torch.uint8)
    out = torch.empty_like(crops)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator).item()))
        for k in range(as_uint8.shape[0]):
            out[k] = augmix(as_uint8[k]).float() / 255.0
    return out


def adapt_normalisation(x: torch.Tensor, *, src_mean: Sequence[float], src_std: Sequence[float],
                        dst_mean: Sequence[float], dst_std: Sequence[float], size: int) -> torch.Tensor:
    """Re-express normalised images for another model: bicubic resize (align_corners=True, as the
    original reward code does, ``docs/original-code.md#reward-image-resolution``) and
    re-normalisation when the statistics differ."""
    if tuple(src_mean) != tuple(dst_mean) or tuple(src_std) != tuple(dst_std):
        sm = torch.tensor(src_mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        ss = torch.tensor(src_std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        dm = torch.tensor(dst_mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        ds = torch.tensor(dst_std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        x = ((x * ss + sm) - dm) / ds
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=True)
    return x
