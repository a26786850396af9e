"""Views: PIL's crops, randomness from the sample's generator alone, device code without
randomness or host synchronisation (so CPU and CUDA views are the same), one upload per batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from rlcf_bench.tta import augmix as am
from rlcf_bench.tta import views as views_mod
from rlcf_bench.tta.views import BatchViews, crop_boxes, draw_view_params, make_views, resize_center_crop

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _photo_like(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random uint8 image with sharp edges (a coarse field upsampled, plus a bright bar)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 16 + 2, w // 16 + 2, generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1) * 255
    img[:, h // 3: h // 3 + 5, :] = 255.0
    return img.round().to(torch.uint8)


def _pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())


def _tensor(pil: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float()


@pytest.mark.parametrize("shape", [(300, 451), (451, 300), (64, 64)])
def test_crops_and_view0_equal_the_originals_pil_path(shape: tuple[int, int]) -> None:
    """Same crop boxes, PIL's bilinear crop-resize (RandomResizedCrop) and bicubic resize + centre
    crop (view 0): at most two 8-bit levels apart (one per resize pass), on few pixels."""
    img = _photo_like(*shape)
    size = 64 if shape == (64, 64) else 96
    params = draw_view_params(3, 24, *shape)
    ours = views_mod._cut(img, size, params.boxes, [False] * 24)
    theirs = torch.stack([_tensor(_pil(img).crop(tuple(b)).resize((size, size), Image.BILINEAR)) for b in params.boxes])
    view0 = resize_center_crop(img, size) * 255
    ref0 = _tensor(TF.center_crop(TF.resize(_pil(img), size, interpolation=InterpolationMode.BICUBIC), size))
    for a, b in ((ours, theirs), (view0, ref0)):
        diff = (a - b).abs()
        assert float(diff.max()) <= 2.0 and float((diff > 0).float().mean()) < 0.05


def test_crop_boxes_take_the_first_fitting_attempt_else_the_centre() -> None:
    u = torch.full((2, 40), 0.5, dtype=torch.float64)
    u[0, 0::4] = 1 - 1e-9  # area ≈ 1 in every attempt...
    u[0, 1::4] = 1 - 1e-9  # ... at ratio 4/3: never fits a square image → centre crop
    u[1, 0:4] = torch.tensor([1 - 1e-9, 1 - 1e-9, 0.5, 0.5])  # first attempt does not fit, the second does
    boxes = crop_boxes(100, 100, u)
    assert boxes[0].tolist() == [0, 0, 100, 100]
    area = 100 * 100 * (0.08 + 0.92 * 0.5)
    w = h = round(area ** 0.5)
    top = int(0.5 * (100 - h + 1))
    assert boxes[1].tolist() == [top, top, top + w, top + h]


@pytest.mark.parametrize("augmix", [False, True])
def test_views_use_no_global_generator(augmix: bool) -> None:
    """The sample's own generator only: the global CPU generator is neither read (views are the
    same whatever its state) nor advanced, and nothing reseeds a global generator."""
    img = _photo_like(40, 56)
    torch.manual_seed(1)
    np.random.seed(1)
    a = make_views(img, n_views=8, size=32, mean=MEAN, std=STD, augmix=augmix, seed=5)
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    torch.manual_seed(2)
    state2 = torch.get_rng_state()
    b = make_views(img, n_views=8, size=32, mean=MEAN, std=STD, augmix=augmix, seed=5)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state2)
    assert not torch.equal(state, state2) and np.array_equal(np.random.get_state()[1], np_state)


def test_no_view_code_touches_a_global_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a global generator was used")

    for name in ("manual_seed", "seed", "set_rng_state", "get_rng_state"):
        monkeypatch.setattr(torch, name, refuse)
        monkeypatch.setattr(torch.random, name, refuse)
    monkeypatch.setattr(torch.random, "fork_rng", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)
    make_views(_photo_like(40, 56), n_views=8, size=32, mean=MEAN, std=STD, augmix=True, seed=5)


def test_device_code_has_no_randomness_and_no_host_sync() -> None:
    """The device part runs on ``meta`` tensors (no data: any read of a value on the host, any
    shape that depends on data, any draw from a device generator would fail or differ), with the
    same shapes: so what CUDA computes is fixed by the CPU-drawn parameters alone."""
    img = _photo_like(40, 56)
    views = BatchViews([img.to("meta")], [5], n_views=8, size=32, mean=MEAN, std=STD, augmix=True)
    assert views(0).shape == (8, 3, 32, 32) and views(0).device.type == "meta"
    assert views(0, [3, 0]).shape == (2, 3, 32, 32)


def test_one_upload_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    uploads: list[tuple[int, ...]] = []
    real = am.upload

    def counting(t: torch.Tensor, device: torch.device) -> torch.Tensor:
        uploads.append(tuple(t.shape))
        return real(t, device)

    monkeypatch.setattr(am, "upload", counting)
    imgs = views_mod.upload_images([_photo_like(40, 56, k) for k in range(3)], "meta")
    assert len(uploads) == 1 and all(i.device.type == "meta" for i in imgs)
    views = BatchViews(imgs, [1, 2, 3], n_views=8, size=32, mean=MEAN, std=STD, augmix=True)
    for row in range(3):
        views(row)
    assert len(uploads) == 2  # the AugMix plans of the three samples: one copy


@pytest.mark.parametrize("augmix", [False, True])
def test_a_samples_views_do_not_depend_on_the_batch(augmix: bool) -> None:
    imgs = [_photo_like(40, 56, k) for k in range(3)]
    together = BatchViews(imgs, [7, 8, 9], n_views=8, size=32, mean=MEAN, std=STD, augmix=augmix)
    alone = make_views(imgs[1], n_views=8, size=32, mean=MEAN, std=STD, augmix=augmix, seed=8)
    assert torch.equal(together(1), alone)
    assert torch.equal(together(1, [5, 2]), alone[[5, 2]])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augmix", [False, True])
def test_cuda_views_equal_cpu_views(augmix: bool) -> None:
    """Same seed, same parameters: CUDA and CPU views differ by float rounding only (a pixel can
    round to the neighbouring 8-bit level)."""
    img = _photo_like(300, 451)
    cpu = make_views(img, n_views=64, size=224, mean=MEAN, std=STD, augmix=augmix, seed=3)
    gpu = make_views(img.cuda(), n_views=64, size=224, mean=MEAN, std=STD, augmix=augmix, seed=3).cpu()
    diff = (cpu - gpu).abs() * STD[0]
    assert float(diff.max()) <= 1 / 255 + 1e-5 and float((diff > 1e-5).float().mean()) < 1e-3
