"""Training of the micro zoo (``rlcf-bench micro train-zoo``).

Contrastive CLIP training from scratch on generated scenes, with the prototype's lessons:

* half of the captions are the shape-only "a photo of a {shape}.", the rest descriptive, with
  *multi-positive* targets (every image of class c is a positive of "a photo of a c.", identical
  captions are positives of each other) — otherwise the models learn colour before shape;
* captions stay colour-consistent: an augmentation that changes colours drops the colour words;
* the logit scale ramps to CLIP's 100 over the first 30 % of steps and stays fixed there, so that
  prompt-tuning gradients at test time are not tiny;
* model selection never looks at a test set: the curves report accuracy on a held-out validation
  split of the photo domain (its own seed stream).

The student sees the photo domain only, without augmentation. The reward model sees a broader
scene distribution (``broad``: wider sizes and rotations, more distractors, some patterned
backgrounds) and broad image augmentation: colour permutation/greyscale, edge maps, noise, blur,
contrast, down-up sampling. It continues from the student's weights (``init_from``), so it has
seen more training steps in total.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import generator as gen
from .zoo import (
    FIXED_LOGIT_SCALE, IMAGE_SIZE, MANIFEST, MEAN, STD, ZOO_NAMES, build_clip, default_tokenizer, full_config,
    preprocess_uint8, sha256_file, zero_shot_accuracy,
)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    scale_ramp: float = 0.3
    pool_size: int = 12000
    pool_domain: str = "photo"
    augment: bool = False
    val_size: int = 500
    eval_every: int = 250
    shape_caption_prob: float = 0.5
    init_from: str | None = None  # a zoo model trained earlier in the same call, to continue from


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    # What the shipped weights were trained with (``--steps`` trains longer).
    "micro-student": TrainConfig(steps=600, batch_size=64, pool_size=4000, val_size=300, eval_every=100,
                                 pool_domain="photo", augment=False),
    "micro-reward": TrainConfig(steps=300, batch_size=64, pool_size=3000, val_size=300, eval_every=100,
                                pool_domain="broad", augment=True, lr=5e-4, scale_ramp=0.0,
                                init_from="micro-student"),
}

QUICK = {"steps": 3, "batch_size": 16, "pool_size": 48, "val_size": 20, "eval_every": 2}


# --------------------------------------------------------------------------------------------
# Augmentation (reward model only); returns the augmented batch and which images lost colour
# --------------------------------------------------------------------------------------------


def _sobel_sketch(x: torch.Tensor) -> torch.Tensor:
    """Edge map drawn as dark lines on light paper, ``x`` float [B,3,H,W] in 0..255."""
    g = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), kx)
    gy = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), kx.transpose(2, 3))
    mag = (gx.abs() + gy.abs()).clamp(0, 255)
    return (240.0 - 2.0 * mag).clamp(0, 255).expand(-1, 3, -1, -1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=3)


def augment_batch(images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, list[bool]]:
    """Broad augmentation of uint8 ``[B,3,H,W]`` images (vectorised over the batch); returns uint8
    images and, per image, whether colour words are still true of it."""
    x = images.float()
    b = x.shape[0]
    u = torch.rand(b, generator=g)
    v = torch.rand(b, generator=g)
    amount = torch.rand(b, generator=g)
    grey = u < 0.12
    permute = (u >= 0.12) & (u < 0.24)
    edges = (u >= 0.24) & (u < 0.38)
    if grey.any():
        x[grey] = x[grey].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    if permute.any():
        perm = torch.randperm(3, generator=g)
        y = x[permute][:, perm]
        inv = torch.rand(int(permute.sum()), generator=g) < 0.3
        y[inv] = 255.0 - y[inv]
        x[permute] = y
    if edges.any():
        x[edges] = _sobel_sketch(x[edges])
    noise = v < 0.15
    if noise.any():
        x[noise] = x[noise] + torch.randn(x[noise].shape, generator=g) * (amount[noise] * 45).view(-1, 1, 1, 1)
    blur = (v >= 0.15) & (v < 0.28)
    if blur.any():
        x[blur] = _blur(x[blur], 0.4 + 2.2 * float(amount[blur].mean()))
    contrast = (v >= 0.28) & (v < 0.4)
    if contrast.any():
        y = x[contrast]
        m = y.mean(dim=(2, 3), keepdim=True)
        x[contrast] = (y - m) * (0.12 + 0.75 * amount[contrast]).view(-1, 1, 1, 1) + m
    pixel = (v >= 0.4) & (v < 0.48)
    if pixel.any():
        size = int(14 + 30 * float(amount[pixel].mean()))
        y = F.interpolate(x[pixel], size=(size, size), mode="area")
        x[pixel] = F.interpolate(y, size=x.shape[-2:], mode="nearest")
    keeps = (~(grey | permute | edges)).tolist()
    return x.clamp(0, 255).round().to(torch.uint8), keeps


# --------------------------------------------------------------------------------------------
# Captions and targets
# --------------------------------------------------------------------------------------------


def batch_captions(scenes: Sequence[gen.Scene], colour_ok: Sequence[bool], rng: np.random.Generator,
                   shape_prob: float) -> tuple[list[str], list[int | None]]:
    """A caption per image; the second list holds the class of shape-only captions (else None)."""
    texts, shape_of = [], []
    for scene, keep in zip(scenes, colour_ok):
        if rng.random() < shape_prob:
            texts.append(gen.shape_caption(scene.shape))
            shape_of.append(scene.label)
        else:
            texts.append(gen.describe(scene, int(rng.integers(0, 4)), colours=keep and scene.domain != "sketch"))
            shape_of.append(None)
    return texts, shape_of


def positives(texts: Sequence[str], shape_of: Sequence[int | None], labels: Sequence[int]) -> torch.Tensor:
    """``P[i, j]`` = caption ``j`` is true of image ``i``."""
    n = len(texts)
    p = torch.zeros(n, n)
    for j, (t, c) in enumerate(zip(texts, shape_of)):
        for i in range(n):
            if texts[i] == t or (c is not None and labels[i] == c):
                p[i, j] = 1.0
    return p


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, pos: torch.Tensor, scale: float) -> torch.Tensor:
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
    pt = pos.T
    t2i = -(pt / pt.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
    return 0.5 * (i2t + t2i)


# --------------------------------------------------------------------------------------------
# Training one model
# --------------------------------------------------------------------------------------------


def _lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def _scale_at(step: int, cfg: TrainConfig) -> float:
    ramp = max(1, int(cfg.scale_ramp * cfg.steps))
    return min(FIXED_LOGIT_SCALE, 10.0 + (FIXED_LOGIT_SCALE - 10.0) * step / ramp)


def train_model(name: str, cfg: TrainConfig, seed: int = 0, log: Callable[[str], None] = print,
                init_path: str | Path | None = None) -> tuple[Any, dict]:
    """Train one zoo model; returns the open_clip model and its manifest entry (no file yet).

    ``init_path``: a safetensors checkpoint of the same architecture to continue from.
    """
    from rlcf_bench.vlm import OpenClipVLM

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7, ZOO_NAMES.index(name)])
    g = torch.Generator().manual_seed(seed * 1000 + 17)
    tokenizer = default_tokenizer()
    config = full_config(name, tokenizer)
    model = build_clip(config)
    if init_path is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(init_path)), strict=True)
        log(f"[{name}] initialised from {init_path}")
    model.logit_scale.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())

    pool = gen.generate(cfg.pool_domain, cfg.pool_size, seed=seed, split="train")
    pool_imgs = torch.from_numpy(pool.images).permute(0, 3, 1, 2).contiguous()
    val = gen.generate("photo", cfg.val_size, seed=seed, split="val")
    gen_s = time.perf_counter() - t0
    log(f"[{name}] {n_params / 1e6:.2f} M parameters; generated {cfg.pool_size} training + {cfg.val_size} "
        f"validation images in {gen_s:.1f} s")

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    def validate() -> float:
        model.eval()
        vlm = OpenClipVLM(model, tokenizer, name=name, image_size=IMAGE_SIZE, mean=MEAN, std=STD)
        acc = zero_shot_accuracy(vlm, val.images, val.labels.tolist())
        for p in model.parameters():  # OpenClipVLM freezes; unfreeze for training
            p.requires_grad_(True)
        model.logit_scale.requires_grad_(False)
        model.train()
        return acc

    curves: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_accuracy": []}
    model.train()
    running = 0.0
    for step in range(cfg.steps):
        idx = rng.choice(cfg.pool_size, size=cfg.batch_size, replace=False)
        imgs = pool_imgs[idx]
        scenes = [pool.scenes[i] for i in idx]
        colour_ok = [True] * len(idx)
        if cfg.augment:
            imgs, colour_ok = augment_batch(imgs, g)
        texts, shape_of = batch_captions(scenes, colour_ok, rng, cfg.shape_caption_prob)
        pos = positives(texts, shape_of, [s.label for s in scenes])
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        img_f = model.encode_image(preprocess_uint8(imgs))
        txt_f = model.encode_text(tokenizer(texts))
        loss = multi_positive_loss(img_f, txt_f, pos, _scale_at(step, cfg))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if step == 0 else 0.95 * running + 0.05 * loss.item()
        if step % 10 == 0 or step == cfg.steps - 1:
            curves["step"].append(step)
            curves["loss"].append(round(running, 4))
        if step % 50 == 0:
            log(f"[{name}] step {step} loss {running:.3f} ({time.perf_counter() - t0:.0f} s)")
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            acc = validate()
            curves["val_step"].append(step + 1)
            curves["val_accuracy"].append(round(acc, 4))
            log(f"[{name}] step {step + 1}/{cfg.steps} loss {running:.3f} val acc {acc:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
    model.eval()
    import math as _m

    with torch.no_grad():
        model.logit_scale.fill_(_m.log(FIXED_LOGIT_SCALE))
    entry = {
        "config": config,
        "tokenizer": tokenizer.to_dict(),
        "image_size": IMAGE_SIZE,
        "mean": list(MEAN),
        "std": list(STD),
        "train": asdict(cfg),
        "seed": seed,
        "data_version": gen.DATA_VERSION,
        "n_parameters": n_params,
        "val_accuracy": curves["val_accuracy"][-1],
        "val_split": {"domain": "photo", "split": "val", "n": cfg.val_size, "seed": seed},
        "curves": curves,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "generation_time_s": round(gen_s, 1),
    }
    return model, entry


def train_zoo(out_dir: str | Path, seed: int = 0, quick: bool = False, steps: int | None = None,
              models: Sequence[str] = ZOO_NAMES, threads: int = 2,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the zoo into ``out_dir``: ``<name>.safetensors`` + ``manifest.json``.

    ``quick`` runs a few tiny steps (a smoke test of the command, not a usable model). Models not
    trained in this call keep their existing manifest entries.
    """
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("models", {})
    t0 = time.perf_counter()
    for name in models:
        cfg = TRAIN_CONFIGS[name]
        changes: dict[str, Any] = dict(QUICK) if quick else {}
        if steps is not None:
            changes["steps"] = steps
            changes.setdefault("eval_every", max(1, min(cfg.eval_every, steps)))
        cfg = TrainConfig(**{**asdict(cfg), **changes})
        init_path = out / f"{cfg.init_from}.safetensors" if cfg.init_from else None
        if init_path is not None and not init_path.is_file():
            raise FileNotFoundError(f"{name} continues from {init_path}: train {cfg.init_from} first")
        model, entry = train_model(name, cfg, seed=seed, log=log, init_path=init_path)
        entry["init_from"] = cfg.init_from and manifest["models"][cfg.init_from]["sha256"]
        path = out / f"{name}.safetensors"
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(path), metadata={"name": name, "seed": str(seed), "data_version": gen.DATA_VERSION})
        entry["file"] = path.name
        entry["sha256"] = sha256_file(path)
        entry["size_bytes"] = path.stat().st_size
        entry["quick"] = quick
        entry["command"] = ("rlcf-bench micro train-zoo" + (" --quick" if quick else "")
                            + (f" --steps {steps}" if steps is not None else "") + f" --seed {seed} --model {name}"
                            + f" --threads {threads}")
        manifest["models"][name] = entry
    manifest["command"] = "rlcf-bench micro train-zoo" + (" --quick" if quick else "") + (
        f" --steps {steps}" if steps is not None else "") + f" --seed {seed}"
    manifest["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                           "torch": torch.__version__, "threads": threads}
    manifest["total_wall_time_s"] = round(time.perf_counter() - t0, 1)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
