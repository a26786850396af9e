"""Test-time views, generated on the device, equal to the original code's (``docs/original-code.md#views``).

The TPT recipe: view 0 is the plain preprocessing (bicubic resize of the shorter side, centre
crop); views 1..V-1 are random-resized crops (scale 0.08–1, ratio 3/4–4/3, bilinear) with
horizontal flips of the *original* image, plus, when the protocol asks for it, the original's
AugMix (:mod:`rlcf_bench.tta.augmix`). Resizing is PIL's, pass by pass on the 8-bit grid
(:mod:`rlcf_bench.tta.resample`), so a view equals the original's for the same crop box (measured:
at most one level of 255 apart, on few pixels).

Randomness: every random parameter of a sample's views — crop boxes (torchvision's ten attempts,
then the centre fallback), flips and AugMix draws — comes from ONE vectorised draw of uniforms
from a CPU generator seeded by ``(protocol seed, sample id)``, so a sample gets the same views
whatever the batch size, order, method or device (tests check this). Nothing draws from a global
generator, and the device code has no randomness: CPU and CUDA views differ by float rounding at
most. A view depends on its own parameters alone, so any subset of views can be cut without the
others (``only``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..types import stable_hash
from . import augmix as am
from .resample import pil_resize

CROP_ATTEMPTS = 10
#: Uniforms per augmented view: crop attempts (area, ratio, top, left each), the flip, AugMix.
CROP_UNIFORMS = CROP_ATTEMPTS * 4
N_UNIFORMS = CROP_UNIFORMS + 1 + am.N_UNIFORMS


def sample_seed(seed: int, sample_id: str) -> int:
    return int(stable_hash([seed, sample_id], length=15), 16)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)`` output shape: the shorter side ``size``, the longer one
    ``int(size · long / short)`` (truncated)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8/float ``[3, H, W]`` → float ``[3, size, size]`` in [0, 1]: CLIP's preprocessing as the
    original runs it in PIL — bicubic resize of the shorter side to ``size`` (antialiased, on the
    8-bit grid for a uint8 image), then torchvision's centre crop (offsets ``round((n − size)/2)``)."""
    quantize = image.dtype == torch.uint8
    x = image.float().unsqueeze(0)
    if not quantize:
        x = x * 255.0
    nh, nw = resized_shape(x.shape[-2], x.shape[-1], size)
    x = pil_resize(x, (nh, nw), "bicubic", quantize=quantize)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return x[0, :, top: top + size, left: left + size] / 255.0


def crop_boxes(height: int, width: int, u: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """``[n, 4]`` integer boxes (x1, y1, x2, y2) from uniforms ``u`` ``[n, 40]``, as torchvision's
    ``RandomResizedCrop.get_params``: ten attempts (area fraction, log aspect ratio, top, left),
    the first that fits wins, else the centre crop clamped to the ratio range."""
    n = u.shape[0]
    u = u.reshape(n, CROP_ATTEMPTS, 4).double()
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.sqrt(area * aspect).round().long()
    h = torch.sqrt(area / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    top = (u[..., 2] * (height - h + 1)).long()
    left = (u[..., 3] * (width - w + 1)).long()
    first = fits.long().argmax(1, keepdim=True)  # the first attempt that fits (0 when none does)
    w, h, top, left = (t.gather(1, first).squeeze(1) for t in (w, h, top, left))
    fw, fh = _fallback(height, width, ratio)
    none = ~fits.any(1)
    w, h = torch.where(none, fw, w), torch.where(none, fh, h)
    top = torch.where(none, (height - fh) // 2, top)
    left = torch.where(none, (width - fw) // 2, left)
    return torch.stack([left, top, left + w, top + h], dim=1)


def _fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return width, int(round(width / min(ratio)))
    if in_ratio > max(ratio):
        return int(round(height * max(ratio))), height
    return width, height


@dataclass(frozen=True)
class ViewParams:
    """One sample's random view parameters (CPU): crop boxes ``[n, 4]`` (x1, y1, x2, y2), flips
    ``[n]`` and AugMix draws of its ``n`` augmented views."""

    boxes: list[list[int]]
    flips: list[bool]
    augmix: am.AugMixParams


def draw_view_params(seed: int, n_aug: int, height: int, width: int) -> ViewParams:
    """All random parameters of ``n_aug`` augmented views of a ``height × width`` image, from one
    draw of ``[n_aug, N_UNIFORMS]`` uniforms of the generator seeded with ``seed``."""
    u = torch.rand(n_aug, N_UNIFORMS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    boxes = crop_boxes(height, width, u[:, :CROP_UNIFORMS])
    return ViewParams(boxes=boxes.tolist(), flips=(u[:, CROP_UNIFORMS] < 0.5).tolist(),
                      augmix=am.draw_params(u[:, CROP_UNIFORMS + 1:]))


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s


def upload_images(images: Sequence[torch.Tensor], device: torch.device | str) -> list[torch.Tensor]:
    """The images on ``device`` in one host-to-device copy (concatenated, then split into views)."""
    device = torch.device(device)
    if all(img.device == device for img in images) or not images:
        return list(images)
    flat = am.upload(torch.cat([img.reshape(-1) for img in images]), device)
    out, at = [], 0
    for img in images:
        out.append(flat[at: at + img.numel()].view(img.shape))
        at += img.numel()
    return out


class BatchViews:
    """The views of a batch of samples, generated per sample on the images' device.

    Parameters are drawn per sample (:func:`draw_view_params`); with AugMix, the plans of every
    sample's full view set are uploaded in one copy the first time a full set is asked for. A
    request for some views only (``only``) cuts just those (and uploads their AugMix plan)."""

    def __init__(self, images: Sequence[torch.Tensor], seeds: Sequence[int], *, n_views: int, size: int,
                 mean: Sequence[float], std: Sequence[float], augmix: bool) -> None:
        self.images, self.seeds = list(images), list(seeds)
        self.n_views, self.size, self.mean, self.std, self.augmix = n_views, size, mean, std, augmix
        self._params: dict[int, ViewParams] = {}
        self._plans: dict[int, am.Plan] | None = None

    def params(self, row: int) -> ViewParams:
        if row not in self._params:
            img = self.images[row]
            self._params[row] = draw_view_params(self.seeds[row], self.n_views - 1, img.shape[-2], img.shape[-1])
        return self._params[row]

    def __call__(self, row: int, only: Sequence[int] | None = None) -> torch.Tensor:
        """``[n_views, 3, size, size]`` normalised views of sample ``row`` (view 0 the centre crop),
        or just the views ``only`` in that order — the same bits as those rows of the full set."""
        if only is not None and not all(0 <= k < self.n_views for k in only):
            raise IndexError(f"views {list(only)} out of range for {self.n_views} views")
        image = self.images[row]
        wanted = list(range(self.n_views - 1)) if only is None else sorted({k - 1 for k in only if k > 0})
        cut: dict[int, torch.Tensor] = {}
        if wanted:
            p = self.params(row)
            crops = _cut(image, self.size, [p.boxes[k] for k in wanted], [p.flips[k] for k in wanted])
            crops = am.apply(crops, self._plan(row, wanted)) if self.augmix else crops / 255.0
            cut = dict(zip(wanted, crops.unbind(0)))
        if only is None or 0 in only:
            cut[-1] = resize_center_crop(image, self.size)
        order = range(self.n_views) if only is None else only
        return normalize(torch.stack([cut[k - 1] for k in order]), self.mean, self.std)

    def _plan(self, row: int, wanted: list[int]) -> am.Plan:
        device = self.images[row].device
        if len(wanted) < self.n_views - 1:
            return am.plan(self.params(row).augmix.select(wanted), self.size).to(device)
        if self._plans is None:  # every sample's full set at once: one upload per batch
            plans = [am.plan(self.params(r).augmix, self.size) for r in range(len(self.images))]
            data = am.upload(torch.cat([p.data for p in plans]), device)
            self._plans, at = {}, 0
            for r, p in enumerate(plans):
                self._plans[r] = am.Plan(n=p.n, steps=p.steps, data=data[at: at + p.data.numel()])
                at += p.data.numel()
        return self._plans[row]


def make_views(image: torch.Tensor, *, n_views: int, size: int, mean: Sequence[float], std: Sequence[float],
               augmix: bool, seed: int, only: Sequence[int] | None = None) -> torch.Tensor:
    """``[n_views, 3, size, size]`` normalised views of one ``[3, H, W]`` image (uint8 or [0, 1]
    float), on the image's device; view 0 is the centre crop. ``only``: just these views, in this
    order, the same bits as the full set's rows (see :class:`BatchViews`)."""
    return BatchViews([image], [seed], n_views=n_views, size=size, mean=mean, std=std, augmix=augmix)(0, only)


def _cut(image: torch.Tensor, size: int, boxes: Sequence[Sequence[int]], flips: Sequence[bool]) -> torch.Tensor:
    """The crops ``boxes`` of ``image`` resized to ``size × size`` as PIL's bilinear resize of the
    cropped 8-bit image (the original's ``RandomResizedCrop``), flipped where ``flips``: ``[n, 3,
    size, size]`` on the 0–255 scale. One resize per crop (crops differ in size); the boxes are
    Python ints, so nothing waits on the device."""
    quantize = image.dtype == torch.uint8
    x = image.float() if quantize else image.float() * 255.0
    out = []
    for (x1, y1, x2, y2), flip in zip(boxes, flips):
        crop = pil_resize(x[None, :, y1:y2, x1:x2], (size, size), "bilinear", quantize=quantize)[0]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


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
