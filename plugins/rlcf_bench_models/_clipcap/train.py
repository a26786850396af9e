"""Training a ClipCap/CapDec captioner from precomputed CLIP features
(``docs/original-code.md#captioner-training``).

* Targets: ``[BOS] + caption (+ EOS)`` padded to ``max_seq_len = min(mean + 10·std, max)`` of the
  token lengths; the loss is next-token cross-entropy over the non-padding tokens of the batch.
* Prefix: ClipCap → the normalised *image* embedding of the caption's image; CapDec → the
  normalised *text* embedding of the caption plus Gaussian noise of variance ``noise_variance``
  (0.016), re-normalised.
* AdamW (lr, eps 1e-6, wd 0 by default), linear warm-up then linear decay to 0.
* Only the mapper is trained unless ``train_decoder`` (needed when the decoder is a tiny random
  OPT, as in the micro suite: there is no pretrained language model offline).
* Deterministic and resumable: the batch order is a permutation seeded by ``(seed, epoch)`` and the
  CapDec noise by ``(seed, step)``, so a run resumed from ``train_state/`` (written every
  ``checkpoint_every`` steps: weights + AdamW state as safetensors, the step and config as JSON)
  ends bit-identical to an uninterrupted one. The final model is exported with
  :func:`~.model.save_captioner`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .mapper import MapperConfig, TransformerMapper
from .model import CaptionerSettings, ClipCaptioner, save_captioner

STATE_DIR = "train_state"


@dataclass(frozen=True)
class TrainConfig:
    kind: str = "clipcap"
    steps: int | None = None  # default: epochs × steps per epoch
    epochs: int = 10
    batch_size: int = 40
    lr: float = 2e-5
    warmup: int = 5000
    weight_decay: float = 0.0
    eps: float = 1e-6
    seed: int = 0
    noise_variance: float = 0.016
    train_decoder: bool = False
    checkpoint_every: int = 500
    grad_clip: float | None = None


def max_seq_len(lengths: list[int]) -> int:
    """``min(mean + 10·std, max)`` of the token lengths
    (``docs/original-code.md#captioner-training``)."""
    t = torch.tensor(lengths, dtype=torch.float64)
    std = float(t.std()) if len(lengths) > 1 else 0.0
    return int(min(float(t.mean()) + 10 * std, float(t.max())))


def lr_factor(step: int, total: int, warmup: int) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _prefixes(feats: dict[str, Any], idx: torch.Tensor, cfg: TrainConfig, step: int) -> torch.Tensor:
    if cfg.kind == "clipcap":
        x = feats["clip_image_embedding"][feats["image_index"][idx]]
        return F.normalize(x, dim=-1)
    if cfg.kind == "capdec":
        x = F.normalize(feats["clip_text_embedding"][feats["text_index"][idx]], dim=-1)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        x = x + torch.randn(x.shape, generator=g) * math.sqrt(cfg.noise_variance)
        return F.normalize(x, dim=-1)
    raise ValueError(f"kind {cfg.kind!r}: expected clipcap or capdec")


def _opt_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(val).detach().cpu().clone()
    return tensors, {"param_groups": sd["param_groups"]}


def _opt_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _trainable(mapper: torch.nn.Module, decoder: torch.nn.Module, cfg: TrainConfig) -> dict[str, torch.nn.Parameter]:
    params = {f"mapper.{k}": p for k, p in mapper.named_parameters()}
    if cfg.train_decoder:
        seen = set()
        for k, p in decoder.named_parameters():  # tied weights appear once
            if id(p) not in seen:
                seen.add(id(p))
                params[f"decoder.{k}"] = p
    return params


def train_captioner(feats: dict[str, Any], out_dir: str | Path, *, clip_model: str, mapper_config: MapperConfig,
                    decoder: Any, tokenizer: Any, tokenizer_dir: str | Path | None, config: TrainConfig,
                    settings_extra: dict[str, Any] | None = None, progress: bool = True,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and export a captioner to ``out_dir``; resumes from ``out_dir/train_state`` if present.

    ``decoder`` is an ``OPTForCausalLM`` (pretrained, or a tiny random one with ``train_decoder``).
    Returns a summary (steps, final loss, wall time, curve).
    """
    from safetensors.torch import load_file, save_file

    from .features import check_features

    cfg = config
    feats = check_features(feats)
    out = Path(out_dir)
    state_dir = out / STATE_DIR
    torch.manual_seed(cfg.seed)
    mapper = TransformerMapper(mapper_config)
    settings = CaptionerSettings(kind=cfg.kind, clip_model=clip_model, mapper=mapper_config,
                                 noise_variance=cfg.noise_variance, **(settings_extra or {}))
    model = ClipCaptioner(None, mapper, decoder, tokenizer, settings, name="training")
    params = _trainable(mapper, decoder, cfg)
    for p in params.values():
        p.requires_grad_(True)
    if cfg.train_decoder:
        decoder.train()
    captions = feats["captions"]
    token_rows = [model.encode_captions([c])[0][0].tolist() for c in captions]
    seq_len = max_seq_len([len(r) for r in token_rows])
    ids, mask = model.encode_captions(captions, max_len=seq_len)
    n = len(captions)
    per_epoch = max(1, n // cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    data_key = {"n_captions": n, "n_images": int(feats["clip_image_embedding"].shape[0]),
                "prefix_dim": int(feats["clip_image_embedding"].shape[1]), "seq_len": seq_len}
    run_key = {"config": asdict(cfg), "mapper": mapper_config.as_dict(), "data": data_key, "clip_model": clip_model}
    step, curve, wall_before = 0, [], 0.0
    if (state_dir / "latest.json").is_file():
        meta = json.loads((state_dir / "latest.json").read_text())
        if meta["run_key"] != json.loads(json.dumps(run_key)):
            raise RuntimeError(f"{state_dir} belongs to a different training run (config or data differ); "
                               "remove it or choose another --out")
        tensors = load_file(str(state_dir / "latest.safetensors"))
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(tensors[k])
        _opt_from_tensors(opt, tensors, meta["optimizer"])
        step, curve, wall_before = meta["step"], meta["curve"], meta.get("wall_time_s", 0.0)
        log(f"resuming from step {step} of {total} ({state_dir})")

    def checkpoint() -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        tensors, opt_meta = _opt_to_tensors(opt)
        tensors.update({k: p.detach().cpu().contiguous() for k, p in params.items()})
        save_file(tensors, str(state_dir / "latest.safetensors"))
        meta = {"step": step, "total": total, "curve": curve, "optimizer": opt_meta, "run_key": run_key,
                "wall_time_s": wall_before + time.perf_counter() - t0}
        (state_dir / "latest.json").write_text(json.dumps(meta, indent=1, default=float) + "\n")

    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {cfg.kind}", unit="step")
    running = None
    perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
    while step < total:
        epoch, j = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
            perm_epoch = epoch
        idx = perm[j * cfg.batch_size : (j + 1) * cfg.batch_size]
        prefix = model.prefix_embeddings(_prefixes(feats, idx, cfg, step))
        lengths = mask[idx].sum(1).float()
        per_caption = model.caption_losses(prefix, ids[idx], mask[idx])
        loss = (per_caption * lengths).sum() / lengths.sum()  # token-level mean over the batch
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        step += 1
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 50 == 0 or step == total:
            curve.append([step, round(running, 5)])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
            checkpoint()
    if bar is not None:
        bar.close()
    checkpoint()
    wall = wall_before + time.perf_counter() - t0
    for p in params.values():
        p.requires_grad_(False)
    decoder.eval()
    settings.training = {**settings.training, "config": asdict(cfg), "data": data_key, "steps": total, "final_loss": running,
                         "wall_time_s": round(wall, 1)}
    save_captioner(out, settings, mapper, decoder if cfg.train_decoder else None, tokenizer_dir)
    if not cfg.train_decoder:
        log("decoder not trained: captioner.json refers to it by name/path (settings.decoder)")
    return {"steps": total, "final_loss": running, "wall_time_s": wall, "curve": curve, "seq_len": seq_len}
