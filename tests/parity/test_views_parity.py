"""Views: the original TPT/RLCF AugMix, reproduced (golden: ``tools/parity/record_views.py``).

* with the official code's own random draws, our batched AugMix gives the official views;
* the operations are PIL's, pixel for pixel, on the recorded photographs;
* with our draws, the operations' parameters take exactly the official values and the mean
  pixel change of the views equals the official one within sampling error.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageOps

from rlcf_bench.tta import augmix as am
from rlcf_bench.tta.views import normalize

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIZE = 224


def _images(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The recorded crops plus the recorder's low-contrast copy of the first, ``[3, H, W, 3]`` uint8."""
    imgs = tensors["images"]
    return torch.cat([imgs, imgs[:1] // 4 + 100])


def _chw(img: torch.Tensor) -> torch.Tensor:
    return img.permute(2, 0, 1).float()


def test_official_draws_give_the_official_views(golden) -> None:
    t, meta = golden("views_augmix")
    assert meta["repository"].endswith("mzhaoshuai/RLCF")
    imgs = _images(t)
    worst, off_values, total = 0.0, 0, 0
    for i, img in enumerate(imgs):
        params = am.AugMixParams(*(t[f"params_{k}"][i] for k in ("weights", "m", "depth", "ops", "level", "negative")))
        n = params.ops.shape[0]
        views = normalize(am.apply(_chw(img).expand(n, -1, -1, -1), am.plan(params, SIZE)), CLIP_MEAN, CLIP_STD)
        diff = (views[:, :, 3::8, 3::8] - t["official_subsample"][i]).abs()
        worst = max(worst, float(diff.max()))
        off_values += int((diff > 1e-4).sum())
        total += diff.numel()
        row_sums = views.double().sum(-1)
        assert torch.allclose(row_sums, t["official_row_sums"][i], atol=0.05), float((row_sums - t["official_row_sums"][i]).abs().max())
        change = (views * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
                  - _chw(img) / 255.0).abs().mean((1, 2, 3))
        assert torch.allclose(change.double(), t["official_view_change"][i], atol=2e-6)
    # one 8-bit level (PIL's rotate arithmetic, a few pixels per rotation) mixed with weight < 1, normalised
    assert worst <= 1 / 255 / min(CLIP_STD) + 1e-5, worst
    assert off_values <= total * 1e-3, (off_values, total)


def test_operations_are_pils_pixel_for_pixel(golden) -> None:
    t, _ = golden("views_augmix")
    imgs = torch.cat([_images(t), torch.full((1, SIZE, SIZE, 3), 7, dtype=torch.uint8)])  # + a one-value image
    x = torch.stack([img.permute(2, 0, 1) for img in imgs])  # uint8, as the chains are
    pil = [Image.fromarray(img.numpy()) for img in imgs]

    def as_tensor(images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([_chw(torch.from_numpy(__import__("numpy").asarray(im).copy())) for im in images])

    k = len(imgs)
    none = torch.zeros(k, 0, dtype=torch.float64)
    exact = {
        "autocontrast": (am._autocontrast(x, none), [ImageOps.autocontrast(im) for im in pil]),
        "equalize": (am._equalize(x, none), [ImageOps.equalize(im) for im in pil]),
        "posterize": (am._posterize(x, torch.full((k, 1), 16.0, dtype=torch.float64)), [ImageOps.posterize(im, 4) for im in pil]),
        "solarize": (am._solarize(x, torch.full((k, 1), 231.0, dtype=torch.float64)), [ImageOps.solarize(im, 231) for im in pil]),
    }
    moves = (("rows", am._move_rows, (0.021, 0), (1, 0.021, 0, 0, 1, 0)), ("columns", am._move_columns, (-0.029, 0), (1, 0, 0, -0.029, 1, 0)),
             ("rows", am._move_rows, (0, -7), (1, 0, -7, 0, 1, 0)), ("columns", am._move_columns, (0, 5), (1, 0, 0, 0, 1, 5)),
             ("shift rows", am._shift_rows, (0, -7), (1, 0, -7, 0, 1, 0)), ("shift columns", am._shift_columns, (0, 5), (1, 0, 0, 0, 1, 5)),
             ("shift rows", am._shift_rows, (0, 6), (1, 0, 6, 0, 1, 0)))
    for name, move, shear_shift, data in moves:
        p = torch.tensor([shear_shift] * k, dtype=torch.float64)
        exact[f"{name} {data}"] = (move(x, p), [im.transform((SIZE, SIZE), Image.AFFINE, data, resample=Image.BILINEAR) for im in pil])
    for name, (ours8, theirs) in exact.items():
        assert ours8.dtype == torch.uint8, name
        ours = ours8.float()
        diff = (ours - as_tensor(theirs)).abs()
        if name in ("autocontrast", "equalize", "posterize", "solarize") or name.startswith("shift") or name.endswith("0, 1, 5)") or ", -7, " in name:
            assert torch.equal(ours, as_tensor(theirs)), name  # look-up tables and whole-pixel moves: exact
        else:  # PIL interpolates in double, we in float32: a value at an integer boundary may truncate apart
            assert diff.max() <= 1 and int((diff > 0).sum()) <= 5 * k, (name, int((diff > 0).sum()))
    for degrees in (-2, 1, 17):
        p = torch.tensor([am._rotation(float(degrees), SIZE)] * k, dtype=torch.float64)
        diff = (am._rotate(x, p).float() - as_tensor([im.rotate(degrees, resample=Image.BILINEAR) for im in pil])).abs()
        assert diff.max() <= 1 and int((diff > 0).sum()) <= 10 * k, (degrees, int((diff > 0).sum()))

def _our_draws(n: int, seed: int) -> am.AugMixParams:
    return am.draw_params(torch.rand(n, am.N_UNIFORMS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def test_operation_parameters_take_the_official_values(golden) -> None:
    t, _ = golden("views_augmix")
    params = _our_draws(20000, 0)
    values = am.operation_values(params, SIZE)
    used = params.depth.unsqueeze(-1) > torch.arange(3)

    def drawn(*ops: str) -> torch.Tensor:
        mask = used & torch.isin(params.ops, torch.tensor([am.OPS.index(o) for o in ops]))
        return mask

    for key, ops in (("rotate", ("rotate",)), ("translate", ("translate_x", "translate_y")), ("posterize", ("posterize",)),
                     ("solarize", ("solarize",))):
        ours = values[key][drawn(*ops)].unique()
        assert torch.equal(ours, t[f"range_{key}"]), (key, ours.tolist(), t[f"range_{key}"].tolist())
    shear = values["shear"][drawn("shear_x", "shear_y")]
    lo, hi = t["range_shear"].tolist()
    assert abs(float(shear.min()) - lo) < 2e-4 and abs(float(shear.max()) - hi) < 2e-4
    assert float(shear.abs().min()) >= float(t["range_shear_abs_min"]) - 2e-4
    # the structure: depth 1–3, each of the nine operations equally likely, weights on the simplex
    assert set(params.depth.unique().tolist()) == {1, 2, 3}
    freq = torch.bincount(params.ops[used], minlength=len(am.OPS)).double()
    assert (freq / freq.mean() - 1).abs().max() < 0.05
    assert torch.allclose(params.weights.sum(1), torch.ones(20000)) and (params.m >= 0).all() and (params.m < 1).all()


#: Views per image for the mean change (the default suite's budget; the recorded figure uses 200).
CHANGE_VIEWS = 32


def test_mean_pixel_change_equals_the_officials(golden) -> None:
    """Our AugMix, our draws, the recorded crops: the mean absolute change against the crop is the
    official one (0.04 on these photographs; torchvision's severity-1 AugMix, the views before,
    changes them much less) within 4 standard errors of the two means."""
    t, _ = golden("views_augmix")
    imgs = _images(t)
    ours = []
    for i, img in enumerate(imgs):
        x0 = _chw(img).expand(CHANGE_VIEWS, -1, -1, -1)
        views = am.apply(x0, am.plan(_our_draws(CHANGE_VIEWS, 100 + i), SIZE))
        ours.append((views - x0 / 255.0).abs().mean((1, 2, 3)).double())
    mine = torch.stack(ours)
    official, before = t["change_official"], t["change_torchvision"]
    se = (mine.var() / mine.numel() + official.var() / official.numel()).sqrt()
    assert abs(float(mine.mean() - official.mean())) < 4 * float(se), (float(mine.mean()), float(official.mean()), float(se))
    # the views before (torchvision's severity 1) changed the two photographs far less
    assert float(official[:2].mean()) > 1.5 * float(before[:2].mean())


@pytest.mark.slow
def test_mean_pixel_change_per_image_with_many_views(golden) -> None:
    t, _ = golden("views_augmix")
    for i, img in enumerate(_images(t)):
        x0 = _chw(img).expand(400, -1, -1, -1)
        change = (am.apply(x0, am.plan(_our_draws(400, 200 + i), SIZE)) - x0 / 255.0).abs().mean((1, 2, 3)).double()
        official = t["change_official"][i]
        se = (change.var() / change.numel() + official.var() / official.numel()).sqrt()
        assert abs(float(change.mean() - official.mean())) < 4 * float(se)
