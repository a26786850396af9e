"""AugMix as the original TPT/RLCF code does it, applied to a batch of views on their device.

The original (``docs/original-code.md#views``) mixes, per view, the crop ``x₀`` with three
chains of 1–3 operations drawn uniformly from nine (autocontrast, equalize, posterize, rotate,
solarize, shear x/y, translate x/y): ``m · x₀ + (1 − m) · Σ wᵢ · chainᵢ`` with
``w ~ Dirichlet(1, 1, 1)``, ``m ~ Beta(1, 1)``, mixed in float. Each use of an operation draws
its own strength ``level ~ U[0.1, severity)`` and, for the geometric ones, a sign (negative when
a uniform exceeds ½), then maps it as the original's ``int_parameter``/``float_parameter``
(``int(level · max / 10)``): at severity 1, rotations of 0–2°, shears of 0.003–0.03, translations
of 0–7 pixels (a third of the size over ten: 224/30), posterize to 4 bits, solarize at a threshold
in [231, 254]. The operations are PIL's on the 8-bit image, reproduced exactly: the chains run on
the 0–255 grid, the geometric ones interpolate bilinearly in float64 and truncate as PIL does.

Parameters come from uniforms the caller draws (:data:`N_UNIFORMS` per view, from the sample's
own CPU generator): :func:`draw_params` maps them, :func:`plan` lays out on the CPU what the device
needs (which chains each operation touches at each step, with their parameters) as one tensor to
upload, and :func:`apply` runs it: a few batched operations per chain step, whatever the number of
views, with no random draw and no host synchronisation on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from .resample import to_grid

#: The original's operation list (``augmix_ops.augmentations``), in its order.
OPS = ("autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y", "translate_x",
       "translate_y")
WIDTH = 3       # chains per view
MAX_DEPTH = 3   # operations per chain: 1..3
#: Uniforms per view: Dirichlet weights (3), Beta (1), chain depths (3), then per chain step the
#: operation, its level and its sign.
N_UNIFORMS = WIDTH + 1 + WIDTH + WIDTH * MAX_DEPTH * 3
#: Operations applied together on the device. A shear or translation along x moves each row by
#: its own amount (PIL's bilinear reads one row: a 1-D interpolation), along y each column; a
#: rotation is the full 2-D bilinear warp.
GROUPS: dict[str, frozenset[str]] = {
    "rotate": frozenset({"rotate"}), "rows": frozenset({"shear_x"}), "columns": frozenset({"shear_y"}),
    "shift_rows": frozenset({"translate_x"}), "shift_columns": frozenset({"translate_y"}),
    "autocontrast": frozenset({"autocontrast"}),
    "equalize": frozenset({"equalize"}), "posterize": frozenset({"posterize"}), "solarize": frozenset({"solarize"}),
}
#: Parameters per chain step that each group reads.
_GROUP_WIDTH = {"rotate": 6, "rows": 2, "columns": 2, "shift_rows": 2, "shift_columns": 2, "autocontrast": 0, "equalize": 0, "posterize": 1, "solarize": 1}


@dataclass(frozen=True)
class AugMixParams:
    """The random draws of ``n`` views (CPU): mixing weights ``[n, 3]`` and ``m`` ``[n]``
    (float32, as the original casts them), chain depths ``[n, 3]``, and per chain step
    ``[n, 3, 3]`` the operation index into :data:`OPS`, the level and the sign."""

    weights: torch.Tensor
    m: torch.Tensor
    depth: torch.Tensor
    ops: torch.Tensor
    level: torch.Tensor
    negative: torch.Tensor

    def select(self, views: Sequence[int]) -> AugMixParams:
        idx = torch.tensor(list(views), dtype=torch.long)
        return AugMixParams(*(t[idx] for t in (self.weights, self.m, self.depth, self.ops, self.level, self.negative)))


def draw_params(u: torch.Tensor, severity: float = 1.0) -> AugMixParams:
    """Map uniforms ``[n, N_UNIFORMS]`` (float64, in [0, 1)) to AugMix draws: Dirichlet(1, 1, 1)
    as normalised exponentials, Beta(1, 1) as a uniform, depth ``1 + ⌊3u⌋``, operation ``⌊9u⌋``,
    level ``0.1 + (severity − 0.1) u`` (numpy's ``uniform(0.1, severity)``)."""
    n = u.shape[0]
    exp = -torch.log1p(-u[:, :WIDTH])
    weights = (exp / exp.sum(1, keepdim=True)).float()
    m = u[:, WIDTH].float()
    depth = 1 + (u[:, WIDTH + 1: 2 * WIDTH + 1] * MAX_DEPTH).long()
    steps = u[:, 2 * WIDTH + 1:].reshape(n, WIDTH, MAX_DEPTH, 3)
    ops = (steps[..., 0] * len(OPS)).long().clamp_(max=len(OPS) - 1)
    level = 0.1 + (severity - 0.1) * steps[..., 1]
    return AugMixParams(weights, m, depth, ops, level, steps[..., 2] > 0.5)


def operation_values(params: AugMixParams, size: int) -> dict[str, torch.Tensor]:
    """Each operation's magnitude at every chain step ``[n, 3, 3]``, as the original maps a level
    (whether or not that step uses the operation): ``rotate`` degrees, ``shear`` factor,
    ``translate`` pixels (signed), ``posterize`` bits kept, ``solarize`` threshold."""
    lv = params.level
    sign = torch.where(params.negative, -1.0, 1.0).to(torch.float64)
    return {
        "rotate": sign * _int_parameter(lv, 30),
        "shear": sign * (lv * 0.3 / torch.full_like(lv, 10.0)),
        "translate": sign * _int_parameter(lv, size / 3),
        "posterize": 4 - _int_parameter(lv, 4),
        "solarize": 256 - _int_parameter(lv, 256),
    }


def _int_parameter(level: torch.Tensor, maxval: float) -> torch.Tensor:
    """``int(level * maxval / 10)``, with true divisions as Python's (torch turns ``x / 10`` into a
    multiplication by 0.1)."""
    return (level * maxval / torch.full_like(level, 10.0)).trunc()


@dataclass(frozen=True)
class Plan:
    """What the device needs to apply AugMix to ``n`` views: ``data`` (float64, one tensor to
    upload) holds the mixing weights, then per chain step and operation group the indices of the
    chains it touches and their parameters; ``steps`` gives, per step, ``(group, count, offset)``
    into ``data`` (Python ints: slicing needs no synchronisation)."""

    n: int
    steps: tuple[tuple[tuple[str, int, int], ...], ...]
    data: torch.Tensor

    def to(self, device: torch.device | str) -> Plan:
        return replace(self, data=upload(self.data, torch.device(device)))


def plan(params: AugMixParams, size: int) -> Plan:
    """Lay out ``params`` (CPU) for :func:`apply`: chain ``3v + c`` is chain ``c`` of view ``v``."""
    n = params.ops.shape[0]
    values = operation_values(params, size)
    shear, shift = values["shear"], values["translate"]
    is_op = {name: params.ops == OPS.index(name) for name in OPS}
    # (shear, shift) of a row or column move: the one the step's operation sets, the other zero
    moves = torch.stack([torch.where(is_op["shear_x"] | is_op["shear_y"], shear, 0.0),
                         torch.where(is_op["translate_x"] | is_op["translate_y"], shift, 0.0)], dim=-1)
    per_group: dict[str, torch.Tensor] = {
        "rotate": _rotations(values["rotate"], size), "rows": moves, "columns": moves, "shift_rows": moves,
        "shift_columns": moves,
        "autocontrast": moves[..., :0], "equalize": moves[..., :0],
        "posterize": (2.0 ** (8 - values["posterize"])).unsqueeze(-1),
        "solarize": values["solarize"].unsqueeze(-1),
    }
    # rotating by 0° and translating by 0 pixels are exact copies in PIL: skipped
    identity = (is_op["rotate"] & (values["rotate"] == 0)) | (
        (is_op["translate_x"] | is_op["translate_y"]) & (shift == 0))
    chain_ids = torch.arange(n * WIDTH, dtype=torch.float64).view(n, WIDTH)
    parts = [params.weights.double().flatten(), params.m.double()]
    offset = n * (WIDTH + 1)
    steps = []
    for step in range(MAX_DEPTH):
        active = (params.depth > step) & ~identity[:, :, step]
        op_names = params.ops[:, :, step]
        entries = []
        for group, members in GROUPS.items():
            mask = active & torch.isin(op_names, torch.tensor([OPS.index(o) for o in members]))
            count = int(mask.sum())
            if count == 0:
                continue
            parts += [chain_ids[mask], per_group[group][:, :, step][mask].flatten()]
            entries.append((group, count, offset))
            offset += count * (1 + _GROUP_WIDTH[group])
        steps.append(tuple(entries))
    return Plan(n=n, steps=tuple(steps), data=torch.cat(parts))


def upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One host-to-device copy that does not block the host (pinned memory on CUDA)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def apply(crops: torch.Tensor, plan: Plan) -> torch.Tensor:
    """AugMix of ``crops`` ``[n, 3, S, S]`` (0–255 scale, rounded to the 8-bit grid first as the
    original's PIL crops are) with ``plan`` (on the crops' device): ``[n, 3, S, S]`` in [0, 1]."""
    n = crops.shape[0]
    assert plan.n == n, f"plan for {plan.n} views, {n} crops given"
    x0 = to_grid(crops.float())
    chains = x0.to(torch.uint8).repeat_interleave(WIDTH, dim=0)  # the chains are 8-bit images, as in PIL
    data = plan.data
    for entries in plan.steps:
        for group, count, at in entries:
            idx = data[at: at + count].long()
            width = _GROUP_WIDTH[group]
            p = data[at + count: at + count * (1 + width)].view(count, width)
            chains.index_copy_(0, idx, _APPLY[group](chains.index_select(0, idx), p))
    w = data[: n * WIDTH].view(n, WIDTH, 1, 1, 1).float()
    m = data[n * WIDTH: n * (WIDTH + 1)].view(n, 1, 1, 1).float()
    c = chains.view(n, WIDTH, *chains.shape[1:]).float() / 255.0
    mix = w[:, 0] * c[:, 0]
    for i in range(1, WIDTH):
        mix = mix + w[:, i] * c[:, i]
    return m * (x0 / 255.0) + (1 - m) * mix


# ------------------------------------------------------------------------------ the operations
# Each takes k 8-bit images [k, 3, S, S] (uint8) and their parameters [k, width] (float64).


def _posterize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Keep the high bits: ``x & ~(d − 1)`` with ``d = 2^(8 − bits)``."""
    return x & (256 - p).to(torch.uint8).view(-1, 1, 1, 1)


def _solarize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Invert the pixels at or above the threshold (PIL: ``i < threshold`` keeps ``i``)."""
    return torch.where(x.to(torch.int16) >= p.to(torch.int16).view(-1, 1, 1, 1), 255 - x, x)


def _by_table(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map each channel's values through its table ``lut`` ``[k, 3, 256]`` (PIL's ``point``)."""
    return lut.to(torch.uint8).gather(2, x.flatten(2).long()).view_as(x)


def _autocontrast(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """PIL's ``autocontrast`` (no cutoff): per channel, value ``i`` → ``int(i · 255/(hi − lo) −
    lo · 255/(hi − lo))`` clipped to 0..255, in float64; a channel with a single value is left alone."""
    v = x.flatten(2)
    lo, hi = v.amin(-1, keepdim=True).double(), v.amax(-1, keepdim=True).double()
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp(min=1.0)  # a true division, as Python's (not × 1/x)
    levels = torch.arange(256, dtype=torch.float64, device=x.device)
    lut = (levels * scale + (-lo * scale)).trunc_().clamp_(0.0, 255.0)
    return _by_table(x, torch.where(hi > lo, lut, levels))


def _equalize(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """PIL's ``equalize``: per channel, with histogram ``h`` and ``step = (N − h[max]) // 255``,
    value ``i`` → ``(step // 2 + Σ_{j<i} h[j]) // step`` (clipped to 255); a channel with one value
    or ``step = 0`` is left alone."""
    v = x.flatten(2).long()
    k, c, n = v.shape
    hist = torch.zeros(k, c, 256, dtype=torch.long, device=x.device).scatter_add_(2, v, torch.ones_like(v))
    top = hist.gather(2, v.amax(-1, keepdim=True)).squeeze(-1)
    step = (n - top) // 255
    lut = ((step // 2).unsqueeze(-1) + hist.cumsum(2) - hist) // step.clamp(min=1).unsqueeze(-1)
    keep = ((hist > 0).sum(-1) <= 1) | (step == 0)
    return _by_table(x, torch.where(keep.unsqueeze(-1), torch.arange(256, device=x.device), lut.clamp_(max=255)))


def _pixel_centres(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64, device=device) + 0.5


def _taps(coord: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PIL's bilinear set-up for input coordinates ``coord`` (float64) along a side of ``n``
    pixels: inside ``[0, n)``, the two neighbours ``⌊coord − ½⌋`` and the next (clamped to the
    image) and the fraction, in float64 as PIL's ``double``."""
    inside = (coord >= 0) & (coord < n)
    coord = coord - 0.5
    first = coord.floor()
    frac = coord - first
    lo = first.long()
    return inside, lo.clamp(0, n - 1), (lo + 1).clamp_(0, n - 1), frac


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``a + (b − a) · t`` of 8-bit values, PIL's ``BILINEAR`` macro (not ``torch.lerp``, which
    rounds differently for ``t > ½``), in float32 where PIL computes in double: a value within
    ~1e-5 of an integer may truncate to the level below or above (measured: a few values per
    224×224 image)."""
    a = a.float()
    return a + (b.float() - a) * t.float()


def _move_rows(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """PIL's ``transform(AFFINE, (1, s, t, 0, 1, 0), BILINEAR)`` (shear x ``s``, translate x
    ``t``): row ``y`` reads ``x' = (x + ½) + s·(y + ½) + t``; rows are exact (no vertical
    interpolation), so this is PIL's bilinear along each row, black outside, truncated."""
    k, c, height, width = x.shape
    shear, shift = p[:, 0].view(k, 1, 1), p[:, 1].view(k, 1, 1)
    xin = (_pixel_centres(width, x.device).view(1, 1, width)
           + shear * _pixel_centres(height, x.device).view(1, height, 1)) + shift
    inside, c0, c1, frac = _taps(xin, width)
    a = x.gather(3, c0.unsqueeze(1).expand(k, c, height, width))
    b = x.gather(3, c1.unsqueeze(1).expand(k, c, height, width))
    out = _lerp(a, b, frac.unsqueeze(1)).trunc_()
    return torch.where(inside.unsqueeze(1), out, 0.0).to(x.dtype)


def _move_columns(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """PIL's ``transform(AFFINE, (1, 0, 0, s, 1, t), BILINEAR)`` (shear y, translate y): column
    ``x`` reads ``y' = s·(x + ½) + (y + ½) + t`` — the row move of the transposed image (the two
    sums commute exactly)."""
    return _move_rows(x.transpose(-1, -2), p).transpose(-1, -2)


def _shift_rows(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """:func:`_move_rows` for a translation alone (``s = 0``, integer ``t``): every read falls on a
    pixel centre, so PIL's bilinear is a copy — ``x + t`` inside the image, black outside."""
    k, c, height, width = x.shape
    src = torch.arange(width, device=x.device).view(1, width) + p[:, 1].long().view(k, 1)
    inside = (src >= 0) & (src < width)
    moved = x.gather(3, src.clamp(0, width - 1).view(k, 1, 1, width).expand(k, c, height, width))
    return torch.where(inside.view(k, 1, 1, width), moved, 0)


def _shift_columns(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return _shift_rows(x.transpose(-1, -2), p).transpose(-1, -2)


def _rotate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.transform(AFFINE, (a, b, c, d, e, f), BILINEAR)`` as ``rotate`` calls it:
    output pixel centre ``(x + ½, y + ½)`` reads input ``(a·x' + b·y' + c, d·x' + e·y' + f)``;
    outside ``[0, W) × [0, H)`` black, else bilinear with edge pixels repeated, truncated."""
    k, c, height, width = x.shape
    xs = _pixel_centres(width, x.device).view(1, 1, width)
    ys = _pixel_centres(height, x.device).view(1, height, 1)
    a, b, off_x, d, e, off_y = (p[:, i].view(k, 1, 1) for i in range(6))
    in_x, c0, c1, fx = _taps(a * xs + b * ys + off_x, width)
    in_y, r0, r1, fy = _taps(d * xs + e * ys + off_y, height)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, c)  # channels last: one row per pixel
    base = (torch.arange(k, device=x.device) * (height * width)).view(k, 1, 1)

    def at(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return pixels.index_select(0, (base + row * width + col).flatten()).view(k, height, width, c)

    fx, fy = fx.unsqueeze(-1), fy.unsqueeze(-1)
    top = _lerp(at(r0, c0), at(r0, c1), fx)
    bottom = _lerp(at(r1, c0), at(r1, c1), fx)
    out = (top + (bottom - top) * fy).trunc_()
    out = torch.where((in_x & in_y).unsqueeze(-1), out, 0.0).to(x.dtype)
    return out.permute(0, 3, 1, 2).contiguous()


_APPLY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "rotate": _rotate, "rows": _move_rows, "columns": _move_columns, "shift_rows": _shift_rows,
    "shift_columns": _shift_columns, "autocontrast": _autocontrast,
    "equalize": _equalize, "posterize": _posterize, "solarize": _solarize,
}


def _rotations(degrees: torch.Tensor, size: int) -> torch.Tensor:
    """``[..., 6]`` PIL affine coefficients of ``Image.rotate`` by each of ``degrees``."""
    table = {d: _rotation(d, size) for d in set(degrees.flatten().tolist())}
    return torch.tensor([table[d] for d in degrees.flatten().tolist()], dtype=torch.float64).view(*degrees.shape, 6)


@lru_cache(maxsize=256)
def _rotation(degrees: float, size: int) -> tuple[float, ...]:
    """``Image.rotate(degrees)``'s coefficients for a ``size × size`` image (centre ``size/2``,
    cosines and sines rounded to 15 decimals as PIL does; 0° is an exact copy there and here)."""
    angle = -math.radians(degrees % 360.0)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = round(-math.sin(angle), 15), round(math.cos(angle), 15)
    centre = size / 2
    c = a * -centre + b * -centre + 0.0 + centre
    f = d * -centre + e * -centre + 0.0 + centre
    return (a, b, c, d, e, f)
