"""Record the original TPT/RLCF AugMix on fixed crops: ``tests/parity/golden/views_augmix.safetensors``.

Runs the official ``TPT/data/augmix_ops.py`` and ``TPT/data/datautils.py:augmix`` of
mzhaoshuai/RLCF (the same operations as azshue/TPT) from a checkout you fetched::

    git clone https://github.com/mzhaoshuai/RLCF /tmp/official-RLCF
    git -C /tmp/official-RLCF checkout 0996a5d5bdeea9108c36bd0c5a71bba652945cd4
    PYTHONPATH=/tmp/extra .venv/bin/python tools/parity/record_views.py --official /tmp/official-RLCF

(``/tmp/extra``: ``pip install --target /tmp/extra scikit-image`` for the photographs; the
official modules also import scipy, which the project depends on.) An extracted ``git archive``
has no ``.git``: pass ``--commit`` with the commit you extracted.

What it records, on two 224×224 crops (photographs from scikit-image: the astronaut, public
domain, and the coffee cup, CC0) and a low-contrast version of the first (``x // 4 + 100``):

* ``params_*`` / ``official_*``: views made by the official ``augmix`` (preaugment the identity, so
  ``x₀`` is the stored crop; preprocess ``ToTensor`` + CLIP's ``Normalize`` as the original) with
  every random draw recorded (numpy's generator wrapped): mixing weights, depths, operations,
  levels and signs; the official view as a stride-8 subsample and per-channel row sums.
* ``change_official`` / ``change_torchvision``: the mean absolute pixel change (in [0, 1]) of 200
  views per image against ``x₀``, for the official AugMix and for torchvision's
  ``v2.AugMix(severity=1, mixture_width=3, chain_depth=-1, all_ops=False)`` (the views before).
* ``range_*``: every value the official operations passed to PIL over 4000 calls each at severity
  1 (rotate degrees, translate pixels, posterize bits, solarize thresholds; shear min/max).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPOSITORY = "https://github.com/mzhaoshuai/RLCF"
PINNED = "0996a5d5bdeea9108c36bd0c5a71bba652945cd4"
OUT = Path(__file__).resolve().parents[2] / "tests" / "parity" / "golden" / "views_augmix.safetensors"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PARITY_VIEWS = 8      # views per image with recorded draws
CHANGE_VIEWS = 200    # views per image for the mean change
RANGE_CALLS = 4000    # calls per operation for the parameter ranges
STRIDE, OFFSET = 8, 3  # subsample of the stored official views


class RecordingRandom:
    """Stands in for ``numpy.random`` in the official modules: forwards every call and logs it."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        fn = getattr(np.random, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            self.log.append((name, out))
            return out

        return call


class NumpyProxy:
    def __init__(self, random: RecordingRandom) -> None:
        self.random = random

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def official_modules(root: Path) -> tuple[Any, Any]:
    sys.path.insert(0, str(root / "TPT"))
    import data.augmix_ops as ops  # type: ignore[import-not-found]
    from data import datautils  # type: ignore[import-not-found]

    return ops, datautils


def images() -> list[np.ndarray]:
    import skimage.data

    astronaut = np.ascontiguousarray(skimage.data.astronaut()[100:324, 150:374])
    coffee = np.ascontiguousarray(skimage.data.coffee()[50:274, 100:324])
    return [astronaut, coffee]


def with_low_contrast(imgs: np.ndarray) -> np.ndarray:
    """The stored crops plus a low-contrast copy of the first (exact integer arithmetic; the
    parity test builds the same)."""
    return np.concatenate([imgs, imgs[:1] // 4 + 100])


def parse_view(log: list[tuple[str, Any]], aug_list: list[Any]) -> dict[str, Any]:
    """The draws of one official ``augmix`` call, from the recorded numpy calls, in its order:
    dirichlet, beta, then per chain randint (depth) and per operation choice + its own draws."""
    it = iter(log)
    name, w = next(it)
    assert name == "dirichlet"
    name, m = next(it)
    assert name == "beta"
    depth = np.zeros(3, np.int64)
    ops = np.zeros((3, 3), np.int64)
    level = np.zeros((3, 3))
    negative = np.zeros((3, 3), bool)
    for c in range(3):
        name, d = next(it)
        assert name == "randint"
        depth[c] = d
        for s in range(d):
            name, op = next(it)
            assert name == "choice"
            k = aug_list.index(op)
            ops[c, s] = k
            if op.__name__ in ("autocontrast", "equalize"):
                continue
            name, lv = next(it)
            assert name == "uniform"
            level[c, s] = lv
            if op.__name__ in ("posterize", "solarize"):
                continue
            name, sign = next(it)
            assert name in ("uniform", "random")
            negative[c, s] = sign > 0.5
    assert next(it, None) is None, "unexpected extra draws"
    return {"weights": np.float32(w), "m": np.float32(m), "depth": depth, "ops": ops, "level": level,
            "negative": negative}


def record_views(ops: Any, datautils: Any, imgs: np.ndarray) -> dict[str, torch.Tensor]:
    from PIL import Image
    from torchvision import transforms

    preprocess = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])
    rec = RecordingRandom()
    ops.np = datautils.np = NumpyProxy(rec)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    out: dict[str, list[Any]] = {k: [] for k in ("weights", "m", "depth", "ops", "level", "negative", "sub", "rows",
                                                   "change")}
    change_official = []
    for i, img in enumerate(imgs):
        pil = Image.fromarray(img)
        x0 = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        np.random.seed(1000 + i)
        for _ in range(PARITY_VIEWS):
            rec.log.clear()
            view = datautils.augmix(pil, lambda x: x, preprocess, ops.augmentations, severity=1)
            draws = parse_view(rec.log, ops.augmentations)
            for key, value in draws.items():
                out[key].append(torch.from_numpy(np.asarray(value)))
            out["sub"].append(view[:, OFFSET::STRIDE, OFFSET::STRIDE].clone())
            out["rows"].append(view.double().sum(-1))
            out["change"].append(((view * std + mean) - x0).abs().mean().double())
        np.random.seed(i)
        changes = []
        for _ in range(CHANGE_VIEWS):
            view = datautils.augmix(pil, lambda x: x, preprocess, ops.augmentations, severity=1)
            changes.append(float(((view * std + mean) - x0).abs().mean()))
        change_official.append(torch.tensor(changes, dtype=torch.float64))
    ops.np = datautils.np = np
    n = len(imgs)
    result = {f"params_{k}": torch.stack(out[k]).view(n, PARITY_VIEWS, *out[k][0].shape)
              for k in ("weights", "m", "depth", "ops", "level", "negative")}
    result["official_subsample"] = torch.stack(out["sub"]).view(n, PARITY_VIEWS, 3, *out["sub"][0].shape[1:])
    result["official_row_sums"] = torch.stack(out["rows"]).view(n, PARITY_VIEWS, 3, -1)
    result["official_view_change"] = torch.stack(out["change"]).view(n, PARITY_VIEWS)
    result["change_official"] = torch.stack(change_official)
    return result


def record_torchvision(imgs: np.ndarray) -> torch.Tensor:
    from torchvision.transforms import v2

    augmix = v2.AugMix(severity=1, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=False)
    torch.manual_seed(0)
    rows = []
    for img in imgs:
        x = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        rows.append(torch.tensor([float((augmix(x).float() - x.float()).abs().mean() / 255.0)
                                  for _ in range(CHANGE_VIEWS)], dtype=torch.float64))
    return torch.stack(rows)


class FakeImage:
    """Receives the official operations' PIL calls and records their arguments."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def rotate(self, degrees: float, resample: Any = None) -> FakeImage:
        self.log.append(("rotate", degrees))
        return self

    def transform(self, size: Any, method: Any, data: Any, resample: Any = None) -> FakeImage:
        self.log.append(("transform", tuple(data)))
        return self


class FakeImageOps:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def posterize(self, img: FakeImage, bits: int) -> FakeImage:
        self.log.append(("posterize", bits))
        return img

    def solarize(self, img: FakeImage, threshold: int) -> FakeImage:
        self.log.append(("solarize", threshold))
        return img


def record_ranges(ops: Any) -> dict[str, torch.Tensor]:
    log: list[tuple[str, Any]] = []
    real = ops.ImageOps
    ops.ImageOps = FakeImageOps(log)
    np.random.seed(0)
    values: dict[str, list[float]] = {"rotate": [], "shear": [], "translate": [], "posterize": [], "solarize": []}
    for op in (ops.posterize, ops.rotate, ops.solarize, ops.shear_x, ops.shear_y, ops.translate_x, ops.translate_y):
        for _ in range(RANGE_CALLS):
            log.clear()
            op(FakeImage(log), 1)
            (kind, arg), = log
            if kind == "transform":
                a, b, c, d, e, f = arg
                values["shear" if op.__name__.startswith("shear") else "translate"].append(b + d if "shear" in op.__name__ else c + f)
            else:
                values[kind].append(float(arg))
    ops.ImageOps = real
    result = {f"range_{k}": torch.tensor(sorted(set(v)), dtype=torch.float64)
              for k, v in values.items() if k != "shear"}
    result["range_shear"] = torch.tensor([min(values["shear"]), max(values["shear"])], dtype=torch.float64)
    result["range_shear_abs_min"] = torch.tensor([min(abs(v) for v in values["shear"])], dtype=torch.float64)
    return result


def checkout_commit(root: Path, given: str | None) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        if not given:
            raise SystemExit(f"{root} is not a git checkout: pass --commit with the commit you extracted") from None
        return given


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of mzhaoshuai/RLCF")
    parser.add_argument("--commit", help="the commit of an extracted archive (no .git)")
    parser.add_argument("--allow-other-commit", action="store_true", help="look without recording")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: threads only contend
    commit = checkout_commit(args.official, args.commit)
    if commit != PINNED and not args.allow_other_commit:
        raise SystemExit(f"checkout is at {commit}, the pinned commit is {PINNED}")
    ops, datautils = official_modules(args.official)
    imgs = with_low_contrast(np.stack(images()))
    tensors = {"images": torch.from_numpy(np.stack(images())), **record_views(ops, datautils, imgs),
               "change_torchvision": record_torchvision(imgs), **record_ranges(ops)}
    for k, v in tensors.items():
        if k.startswith("change_"):
            print(f"{k}: mean pixel change {float(v.mean()):.4f} (per image {[round(float(x), 4) for x in v.mean(1)]})")
        elif k.startswith("range_"):
            print(f"{k}: {v.tolist()}")
    if commit != PINNED:
        print("not recorded: another commit")
        return
    from safetensors.torch import save_file

    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT), metadata={
        "repository": REPOSITORY, "commit": commit, "script": Path(__file__).name,
        "inputs": "two 224x224 crops of scikit-image photographs (astronaut: public domain; coffee: CC0) "
                  "and a low-contrast copy of the first (x // 4 + 100); official augmix at severity 1"})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
