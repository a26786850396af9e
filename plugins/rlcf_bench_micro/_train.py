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

The student sees the photo domain only, without augmentation. The reward model is a different,
larger network (about 4.5x the student's parameters) trained **from scratch** on a broader mixture:
photo scenes plus ``broad`` scenes (wider sizes and rotations, more distractors, some patterned
backgrounds), with broad image augmentation (colour permutation/greyscale, edge maps, noise, blur,
contrast, down-up sampling) on part of each batch, ramped in over the first steps so that the
network learns shapes on clean images first. Nothing of it comes from the student.

Every model is validated at the end on the validation split of every domain (never a test split):
the manifest records the photo (in-domain) accuracy and the mean over the suite's shifted domains.
Models are independent, so ``train_zoo(jobs=2)`` trains them in parallel processes, one thread
each (the same bytes as training them one after the other with one thread).
"""

from __future__ import annotations

import json
import math
import os
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
    FIXED_LOGIT_SCALE,
    IMAGE_SIZE,
    MANIFEST,
    MEAN,
    STD,
    ZOO_NAMES,
    build_clip,
    default_tokenizer,
    full_config,
    preprocess_uint8,
    sha256_file,
    zero_shot_accuracy,
)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    scale_ramp: float = 0.3
    #: The training pool: ``(generator domain, number of images)`` pairs, drawn uniformly.
    pool: tuple[tuple[str, int], ...] = (("photo", 12000),)
    #: Fraction of each batch that goes through :func:`augment_batch` (after the ramp).
    augment_prob: float = 0.0
    #: Fraction of the steps over which ``augment_prob`` ramps up from 0.
    augment_ramp: float = 0.0
    val_size: int = 500
    eval_every: int = 250
    shape_caption_prob: float = 0.5

    @property
    def pool_size(self) -> int:
        return sum(n for _, n in self.pool)


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    # What the shipped weights were trained with (``--steps`` trains longer or shorter).
    "micro-student": TrainConfig(steps=1800, batch_size=128, pool=(("photo", 8000),), val_size=300,
                                 eval_every=300),
    "micro-reward": TrainConfig(steps=2400, batch_size=128, lr=1.5e-3, pool=(("photo", 4000), ("broad", 6000)),
                                augment_prob=0.5, augment_ramp=0.2, val_size=300, eval_every=300),
}

#: The shifted domains whose validation mean the manifest reports (the default suite's OOD set).
SHIFTED_DOMAINS = ("sketch", "rendition", "hard", "resampled", "noise")
#: Every domain validated at the end of training (corruptions at the suite's severity 3).
VAL_DOMAINS = ("photo", *SHIFTED_DOMAINS, "blur", "contrast", "pixelate")

QUICK = {"steps": 3, "batch_size": 16, "pool": (("photo", 48),), "val_size": 20, "eval_every": 2}


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
    texts: list[str] = []
    shape_of: list[int | None] = []
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


def _augment_share(step: int, cfg: TrainConfig) -> float:
    ramp = int(cfg.augment_ramp * cfg.steps)
    return cfg.augment_prob if step >= ramp else cfg.augment_prob * step / max(1, ramp)


def _generate_pool(cfg: TrainConfig, seed: int) -> tuple[torch.Tensor, list[gen.Scene]]:
    images, scenes = [], []
    for domain, n in cfg.pool:
        part = gen.generate(domain, n, seed=seed, split="train")
        images.append(torch.from_numpy(part.images).permute(0, 3, 1, 2))
        scenes.extend(part.scenes)
    return torch.cat(images).contiguous(), scenes


def validate_domains(vlm: Any, n: int, seed: int, domains: Sequence[str] = VAL_DOMAINS) -> dict[str, float]:
    """Zero-shot top-1 on the validation split of each domain (corruptions at severity 3)."""
    out = {}
    for domain in domains:
        data = gen.generate(domain, n, seed=seed, split="val", severity=3)
        out[domain] = round(zero_shot_accuracy(vlm, data.images, data.labels.tolist()), 4)
    return out


def train_model(name: str, cfg: TrainConfig, seed: int = 0, log: Callable[[str], None] = print,
                val_domains: Sequence[str] = VAL_DOMAINS) -> tuple[Any, dict[str, Any]]:
    """Train one zoo model from scratch; returns the open_clip model and its manifest entry (no file yet)."""
    from rlcf_bench.tta.vlm import OpenClipVLM

    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7, ZOO_NAMES.index(name)])
    g = torch.Generator().manual_seed(seed * 1000 + 17)
    tokenizer = default_tokenizer()
    config = full_config(name, tokenizer)
    model = build_clip(config)
    model.logit_scale.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())

    pool_imgs, pool_scenes = _generate_pool(cfg, seed)
    val = gen.generate("photo", cfg.val_size, seed=seed, split="val")
    gen_s = time.perf_counter() - t0
    log(f"[{name}] {n_params / 1e6:.2f} M parameters; generated {cfg.pool_size} training + {cfg.val_size} "
        f"validation images in {gen_s:.1f} s")

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)

    def as_vlm() -> OpenClipVLM:
        return OpenClipVLM(model, tokenizer, name=name, image_size=IMAGE_SIZE, mean=MEAN, std=STD)

    def validate() -> float:
        model.eval()
        acc = zero_shot_accuracy(as_vlm(), val.images, val.labels.tolist())
        for p in model.parameters():  # OpenClipVLM freezes; unfreeze for training
            p.requires_grad_(True)
        model.logit_scale.requires_grad_(False)
        model.train()
        return acc

    curves: dict[str, list[Any]] = {"step": [], "loss": [], "val_step": [], "val_accuracy": []}
    model.train()
    running = 0.0
    for step in range(cfg.steps):
        idx = rng.choice(cfg.pool_size, size=cfg.batch_size, replace=False)
        imgs = pool_imgs[idx]
        scenes = [pool_scenes[i] for i in idx]
        colour_ok = [True] * len(idx)
        share = _augment_share(step, cfg)
        if share > 0:
            chosen = torch.rand(len(idx), generator=g) < share
            if chosen.any():
                augmented, keeps = augment_batch(imgs[chosen], g)
                imgs = imgs.clone()
                imgs[chosen] = augmented
                for k, keep in zip(chosen.nonzero().flatten().tolist(), keeps):
                    colour_ok[k] = keep
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
    with torch.no_grad():
        model.logit_scale.fill_(math.log(FIXED_LOGIT_SCALE))
    by_domain = validate_domains(as_vlm(), cfg.val_size, seed, val_domains)
    shifted = [by_domain[d] for d in SHIFTED_DOMAINS if d in by_domain]
    log(f"[{name}] validation: " + ", ".join(f"{d} {a:.3f}" for d, a in by_domain.items()))
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
        "val_split": {"split": "val", "n": cfg.val_size, "seed": seed, "severity": 3},
        "val_accuracy_by_domain": by_domain,
        "val_shifted_mean": round(sum(shifted) / len(shifted), 4) if shifted else None,
        "curves": curves,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "cpu_time_s": round(time.process_time() - c0, 1),
        "generation_time_s": round(gen_s, 1),
        "threads": torch.get_num_threads(),
    }
    return model, entry


def _train_and_save(name: str, cfg: TrainConfig, seed: int, out: Path, threads: int,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``name`` and write ``<out>/<name>.safetensors``; returns its manifest entry."""
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    model, entry = train_model(name, cfg, seed=seed, log=log)
    path = out / f"{name}.safetensors"
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".safetensors.tmp")
    # No safetensors metadata: its key order is not stable, so the file's bytes (and sha256) would
    # vary between identical trainings. Name, seed and data version live in the manifest.
    save_file(state, str(tmp))
    tmp.replace(path)
    entry["file"] = path.name
    entry["sha256"] = sha256_file(path)
    entry["size_bytes"] = path.stat().st_size
    return entry


def _flush_print(line: str) -> None:
    print(line, flush=True)


def train_zoo(out_dir: str | Path, seed: int = 0, quick: bool = False, steps: int | None = None,
              models: Sequence[str] = ZOO_NAMES, threads: int = 2, jobs: int = 1,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the zoo into ``out_dir``: ``<name>.safetensors`` + ``manifest.json``.

    The models are independent: with ``jobs > 1`` they train in parallel processes (``threads``
    each). ``quick`` runs a few tiny steps (a smoke test of the command, not a usable model).
    Models not trained in this call keep their existing manifest entries.
    """
    import concurrent.futures
    import multiprocessing

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("models", {})
    t0 = time.perf_counter()
    configs = {}
    for name in models:
        changes: dict[str, Any] = dict(QUICK) if quick else {}
        if steps is not None:
            changes["steps"] = steps
            changes.setdefault("eval_every", max(1, min(TRAIN_CONFIGS[name].eval_every, steps)))
        configs[name] = TrainConfig(**{**asdict(TRAIN_CONFIGS[name]), **changes})
    if jobs > 1 and len(configs) > 1:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(jobs, len(configs)), mp_context=ctx) as pool:
            futures = {name: pool.submit(_train_and_save, name, cfg, seed, out, threads, _flush_print)
                       for name, cfg in configs.items()}
            entries = {name: f.result() for name, f in futures.items()}
    else:
        entries = {name: _train_and_save(name, cfg, seed, out, threads, log) for name, cfg in configs.items()}
    flags = (" --quick" if quick else "") + (f" --steps {steps}" if steps is not None else "") + f" --seed {seed}"
    for name, entry in entries.items():
        entry["quick"] = quick
        entry["command"] = f"rlcf-bench micro train-zoo{flags} --model {name} --threads {threads}"
        manifest["models"][name] = entry
    manifest["command"] = f"rlcf-bench micro train-zoo{flags} --threads {threads} --jobs {jobs}"
    manifest["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                           "cpu_count": os.cpu_count(), "device": "cpu", "torch": torch.__version__,
                           "threads_per_model": threads, "jobs": jobs}
    manifest["total_wall_time_s"] = round(time.perf_counter() - t0, 1)
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(manifest_path)
    return manifest
