"""The training-feature dictionary of the original code
(``docs/original-code.md#captioner-training``), and its extraction from images.

Keys (one entry per *caption*; embeddings un-normalised, fp32)::

    clip_image_embedding  [N_images, D]   CLIP image embeddings
    clip_text_embedding   [N_captions, D] CLIP text embeddings (end-of-text token)
    captions              list[str]       N_captions
    image_ids             list            N_images (dataset ids)
    image_index           [N_captions]    row of clip_image_embedding of caption i
    text_index            [N_captions]    row of clip_text_embedding of caption i (usually i)

Stored as a pickle (the original's format) or a ``.pt``; arrays may be NumPy or torch.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

REQUIRED = ("clip_image_embedding", "clip_text_embedding", "captions", "image_index")


def _tensor(x: Any) -> torch.Tensor:
    return x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x).float()


def check_features(feats: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise a feature dictionary (tensors, index lists); returns a new dict."""
    missing = [k for k in REQUIRED if k not in feats]
    if missing:
        raise ValueError(f"feature dictionary lacks {', '.join(missing)} (expected keys: {', '.join(REQUIRED)})")
    out = dict(feats)
    out["clip_image_embedding"] = _tensor(feats["clip_image_embedding"])
    out["clip_text_embedding"] = _tensor(feats["clip_text_embedding"])
    out["captions"] = [str(c) for c in feats["captions"]]
    n = len(out["captions"])
    out["image_index"] = torch.as_tensor(feats["image_index"]).long().view(-1)
    out["text_index"] = torch.as_tensor(feats.get("text_index", range(n))).long().view(-1)
    if len(out["image_index"]) != n or len(out["text_index"]) != n:
        raise ValueError(f"image_index/text_index must have one entry per caption ({n})")
    if int(out["image_index"].max()) >= out["clip_image_embedding"].shape[0]:
        raise ValueError("image_index points past clip_image_embedding")
    if int(out["text_index"].max()) >= out["clip_text_embedding"].shape[0]:
        raise ValueError("text_index points past clip_text_embedding")
    out.setdefault("image_ids", list(range(out["clip_image_embedding"].shape[0])))
    return out


class _FeaturePickle(pickle.Unpickler):
    """Reads the original feature pickles (``docs/original-code.md#captioner-training``) without
    running arbitrary code: only
    containers, NumPy arrays and tensors can be rebuilt; tensor storages go through
    ``torch.load(weights_only=True)``."""

    ALLOWED = {
        ("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("torch._utils", "_rebuild_tensor_v2"), ("torch", "FloatStorage"), ("torch", "HalfStorage"),
        ("torch", "LongStorage"), ("torch", "IntStorage"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a feature file (only arrays and "
                                     "tensors are allowed)")


def load_features(path: str | Path) -> dict[str, Any]:
    """Features saved by :func:`save_features` (``.pt``, ``weights_only=True``) or the original
    release's pickle (read by a restricted unpickler)."""
    path = Path(path)
    if path.suffix in {".pt", ".pth"}:
        data = torch.load(path, map_location="cpu", weights_only=True)
    else:
        with open(path, "rb") as fh:
            data = _FeaturePickle(fh).load()
    return check_features(data)


def save_features(feats: dict[str, Any], path: str | Path) -> Path:
    """Write features as a ``torch.save`` file of tensors and lists (loadable with
    ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = check_features(feats)
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()}
    torch.save(plain, path)
    return path


@torch.no_grad()
def extract_features(vlm: Any, images: Callable[[int], torch.Tensor], n_images: int,
                     references: Callable[[int], Sequence[str]], image_ids: Sequence[Any] | None = None,
                     batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
    """Features of ``n_images`` images (``images(i)`` → uint8 ``[3, H, W]``) and their captions,
    with ``vlm`` (an ``OpenClipVLM``); images get CLIP's resize + centre crop + normalisation."""
    from rlcf_bench.tta.views import normalize, resize_center_crop

    image_feats, captions, image_index = [], [], []
    rng = range(0, n_images, batch_size)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="image features", unit="batch")
    for start in rng:
        idx = range(start, min(n_images, start + batch_size))
        x = torch.stack([resize_center_crop(images(i), vlm.image_size) for i in idx])
        x = normalize(x, vlm.mean, vlm.std).to(vlm.device)
        image_feats.append(vlm.encode_image(x).float().cpu())
        for i in idx:
            for cap in references(i):
                captions.append(cap)
                image_index.append(i)
    text_feats = []
    for start in range(0, len(captions), 256):
        tokens = vlm.tokenize(captions[start : start + 256]).to(vlm.device)
        text_feats.append(vlm.encode_text(tokens).float().cpu())
    return check_features({
        "clip_image_embedding": torch.cat(image_feats), "clip_text_embedding": torch.cat(text_feats),
        "captions": captions, "image_ids": list(image_ids) if image_ids is not None else list(range(n_images)),
        "image_index": image_index, "text_index": list(range(len(captions))),
    })
