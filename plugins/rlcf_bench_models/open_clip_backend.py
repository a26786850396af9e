"""open_clip backend: ``ARCH@TAG`` (a pretrained tag open_clip knows) or ``ARCH@/path/to/weights``.

Nothing is downloaded unless ``RLCF_BENCH_ALLOW_DOWNLOAD=1``: a tag whose weights are not in the
local cache fails at once with a message saying which file to put where, instead of hanging on a
hub that cannot be reached. Preprocessing (input size, mean, std) travels with the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rlcf_bench import ModelSpec, hookimpl

ALLOW_DOWNLOAD_ENV = "RLCF_BENCH_ALLOW_DOWNLOAD"


class ModelLoadError(RuntimeError):
    pass


def _accepts(name: str) -> bool:
    arch, sep, source = name.partition("@")
    return bool(sep and arch and source)


def _offline() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").lower() not in {"1", "true", "yes"}


def _cached_pretrained(open_clip: Any, arch: str, tag: str) -> str | None:
    """Path of the tag's weights in the local caches, or None."""
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hf_hub = cfg.get("hf_hub", "")
    if hf_hub:
        from huggingface_hub import try_to_load_from_cache

        repo, _, filename = hf_hub.rstrip("/").partition("/")
        repo_id = f"{repo}/{filename}" if filename else repo
        for weights in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            path = try_to_load_from_cache(repo_id, weights)
            if isinstance(path, str):
                return path
    url = cfg.get("url", "")
    if url:
        cache = Path(os.environ.get("OPEN_CLIP_CACHE", "~/.cache/clip")).expanduser() / os.path.basename(url)
        if cache.is_file():
            return str(cache)
    return None


def load_open_clip(name: str, device: Any) -> Any:
    if _offline():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    from rlcf_bench.vlm import OpenClipVLM

    arch, _, source = name.partition("@")
    if arch not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        raise ModelLoadError(f"open_clip has no architecture {arch!r}" + (f"; did you mean {close}?" if close else ""))
    path = Path(source).expanduser()
    if path.exists():
        weights = str(path)
    else:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if source not in tags:
            raise ModelLoadError(
                f"{name}: {source!r} is neither a file nor a pretrained tag of {arch} (tags: {', '.join(tags) or 'none'})"
            )
        cached = _cached_pretrained(open_clip, arch, source)
        if cached is None and _offline():
            cfg = open_clip.get_pretrained_cfg(arch, source)
            where = cfg.get("hf_hub") or cfg.get("url") or "its source"
            raise ModelLoadError(
                f"weights for {name} are not in the local cache and downloads are off on this machine. "
                f"Download them where there is network ({where}), then pass the file: "
                f"--model {arch}@/path/to/weights (an OpenAI .pt, an open_clip .bin/.pt state dict or .safetensors), "
                f"or set {ALLOW_DOWNLOAD_ENV}=1 to let open_clip download into its cache."
            )
        weights = cached or source
    model = open_clip.create_model(arch, pretrained=weights, device=device, weights_only=True)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else size
    kwargs = {k: cfg[k] for k in ("mean", "std") if k in cfg}
    return OpenClipVLM(model, open_clip.get_tokenizer(arch), name=name, image_size=int(size),
                       version=Path(weights).name if path.exists() else source, **kwargs)


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(name="open_clip", version="1", load=load_open_clip, accepts=_accepts,
                  description="any open_clip ARCH@TAG (e.g. ViT-B-16@openai) or ARCH@/path/to/weights"),
    ]
