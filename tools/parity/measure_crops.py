"""Measure the crop pipeline against the original's PIL path on photographs (docs/parity.md#views).

The original cuts views with torchvision on PIL images: ``RandomResizedCrop(224)`` (crop, then
PIL's antialiased bilinear resize) and, for view 0, ``Resize(224, BICUBIC)`` + ``CenterCrop(224)``.
This script cuts the same boxes (63 per photograph, drawn by ``rlcf_bench.tta.views``) both ways
and prints the mean and max absolute pixel difference (in [0, 1]) per photograph, as a markdown
table. No official code is needed: the original's path is torchvision's and PIL's::

    pip install --target /tmp/extra scikit-image
    PYTHONPATH=/tmp/extra .venv/bin/python tools/parity/measure_crops.py
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from rlcf_bench.tta import views

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
SIZE = 224


def _tensor(pil: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255.0


def measure(photo: np.ndarray, seed: int = 0) -> dict[str, float]:
    img = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).contiguous()
    pil = Image.fromarray(np.ascontiguousarray(photo))
    params = views.draw_view_params(seed, 63, img.shape[1], img.shape[2])
    ours = views._cut(img, SIZE, params.boxes, [False] * len(params.boxes)) / 255.0
    theirs = torch.stack([_tensor(pil.crop(tuple(b)).resize((SIZE, SIZE), Image.BILINEAR)) for b in params.boxes])
    view0 = views.resize_center_crop(img, SIZE)
    ref0 = _tensor(TF.center_crop(TF.resize(pil, SIZE, interpolation=InterpolationMode.BICUBIC), SIZE))
    crops, first = (ours - theirs).abs(), (view0 - ref0).abs()
    return {"crops_mean": float(crops.mean()), "crops_max": float(crops.max()),
            "crops_off": float((crops > 0).float().mean()),
            "view0_mean": float(first.mean()), "view0_max": float(first.max()),
            "view0_off": float((first > 0).float().mean())}


def main() -> None:
    import skimage.data

    torch.set_num_threads(1)
    print("| photograph | size | crops: mean | max | values off | view 0: mean | max | values off |")
    print("|---|---|---|---|---|---|---|---|")
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        r = measure(photo)
        print(f"| {name} | {photo.shape[1]}×{photo.shape[0]} | {r['crops_mean']:.1e} | {r['crops_max']:.4f} | "
              f"{100 * r['crops_off']:.3f} % | {r['view0_mean']:.1e} | {r['view0_max']:.4f} | {100 * r['view0_off']:.3f} % |")


if __name__ == "__main__":
    main()
