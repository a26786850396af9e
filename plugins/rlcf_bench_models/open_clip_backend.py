"""open_clip backend: pretrained tags and local checkpoint files, offline and fail-fast.

Model names (see this folder's README.md)::

    ARCH@TAG             ViT-B-16@openai, ViT-L-14@openai, ViT-B-16-SigLIP@webli, EVA02-B-16@merged2b_s8b_b131k
    ARCH@/path/file      weights from a local file; ARCH is an open_clip architecture name
    ARCH@TAG@/path/file  the file holds the weights of TAG: preprocessing and QuickGELU come from the tag
    CFG.json@/path/file  ARCH is a path to an open_clip model config JSON (custom architectures)

A config JSON beside the weights (``<weights>.json``, ``<stem>.json`` or ``open_clip_config.json``)
takes precedence over a built-in ARCH, so custom models travel as (weights, config) pairs.

Nothing is downloaded unless ``RLCF_BENCH_ALLOW_DOWNLOAD=1``: a tag whose weights are not in the
local caches fails at once with a message saying which file to put where; Hugging Face hub access
(tokenizers, HF text towers) is forced offline while loading, whatever ``HF_HUB_OFFLINE`` says.
Checkpoints are read by :mod:`._formats` (``weights_only=True``; TorchScript archives without
running their code). Preprocessing (size, mean, std, interpolation, resize mode) travels with the
weights: tag config, then the config JSON's ``preprocess_cfg``; the input size is the model's.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rlcf_bench import ModelSpec, hookimpl

ALLOW_DOWNLOAD_ENV = "RLCF_BENCH_ALLOW_DOWNLOAD"
#: open_clip's own download cache for ``url`` weights (OpenAI's ``ViT-B-16.pt`` and the like).
OPEN_CLIP_URL_CACHE = Path("~/.cache/clip")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_BPE_VOCAB_SIZE = 49408
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")
_DERIVED_LEAVES = frozenset({"attn_mask", "position_ids"})


class ModelLoadError(RuntimeError):
    """A model name cannot be loaded; the message says what is missing and where to put it."""


# --------------------------------------------------------------------------------------------
# Offline guard
# --------------------------------------------------------------------------------------------


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@contextmanager
def hub_offline() -> Iterator[None]:
    """Force Hugging Face hub offline mode for the duration, unless downloads are allowed.

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once, at import, so setting the environment
    variable is not enough when it was imported earlier: the module constant is patched too and
    both are restored afterwards. Offline, a hub call fails at once instead of retrying for ~30 s.
    """
    if downloads_allowed():
        yield
        return
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from huggingface_hub import constants as hub_constants  # a dependency of open_clip and transformers

    saved_const = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_const
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenClipName:
    """A parsed ``ARCH@TAG``, ``ARCH@/path``, ``ARCH@TAG@/path`` model name."""

    arch: str
    tag: str | None
    path: Path | None


def _accepts(name: str) -> bool:
    """``ARCH@SOURCE`` where ARCH is a config path, ``hf-hub:...``, or one of open_clip's
    architectures — or close to one, so that a misspelt architecture still gets this backend's
    hint. Other ``NAME@SOURCE`` families (``clipcap@/dir``) are left to their own backends: a name
    accepted by two backends is an error, never settled by plugin order."""
    if name.startswith("hf:"):
        return False
    arch, sep, source = name.partition("@")
    if not (sep and arch and source):
        return False
    if arch.startswith("hf-hub:") or arch.lower().endswith(".json") or _looks_like_path(arch):
        return True
    if _looks_like_path(source.rpartition("@")[2]) and _has_open_clip_config(source.rpartition("@")[2]):
        return True  # a custom architecture: ARCH is only a label, the config beside the weights wins
    import difflib

    return arch in _builtin_archs() or bool(difflib.get_close_matches(arch, _builtin_archs(), n=1))


def _has_open_clip_config(source: str) -> bool:
    """A weights file with an open_clip config beside it (``<weights>.json``, ``<stem>.json`` or
    ``open_clip_config.json``): whatever its ARCH label, the name is this backend's."""
    from ._formats import find_sidecar_config

    weights = Path(source).expanduser()
    return weights.is_file() and find_sidecar_config(weights) is not None


@lru_cache(maxsize=1)
def _builtin_archs() -> tuple[str, ...]:
    """open_clip's built-in architecture names, read from its ``model_configs`` folder without
    importing open_clip (and torch): names are resolved while planning, before anything loads."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        return ()
    folder = Path(spec.origin).parent / "model_configs"
    return tuple(sorted(p.stem for p in folder.glob("*.json")))


def _looks_like_path(source: str) -> bool:
    return (os.sep in source or "/" in source or source.startswith(("~", "."))
            or source.lower().endswith(_WEIGHT_SUFFIXES))


def parse_name(name: str) -> OpenClipName:
    arch, sep, source = name.partition("@")
    if not (sep and arch and source):
        raise ModelLoadError(f"{name!r} is not an open_clip model name: use ARCH@TAG, ARCH@/path/to/weights "
                             "or ARCH@TAG@/path/to/weights")
    if _looks_like_path(source) and Path(source).expanduser().exists():
        return OpenClipName(arch, None, Path(source).expanduser())
    tag, sep2, rest = source.partition("@")
    if sep2 and tag and rest:
        path = Path(rest).expanduser()
        if not path.exists():
            raise ModelLoadError(f"{name}: no file at {path}: put the weights of {arch}@{tag} there, or fix the path")
        return OpenClipName(arch, tag, path)
    if _looks_like_path(source):
        raise ModelLoadError(
            f"{name}: no file at {Path(source).expanduser()}: put the checkpoint there (an OpenAI .pt, an open_clip "
            f".pt/.bin state dict or a .safetensors file), or fix the path"
        )
    return OpenClipName(arch, source, None)


# --------------------------------------------------------------------------------------------
# Configuration: architecture, tag, preprocessing
# --------------------------------------------------------------------------------------------


@dataclass
class Resolved:
    """Everything needed to build and load one model."""

    label: str
    model_cfg: dict[str, Any]
    preprocess: dict[str, Any]
    weights: Path
    tag_cfg: dict[str, Any]
    config_path: Path | None


def _builtin_config(open_clip: Any, arch: str, name: str) -> dict[str, Any]:
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        import difflib

        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(
            f"{name}: open_clip has no architecture {arch!r}{hint} (for a custom architecture pass the path of "
            f"its model config JSON as ARCH, or put <weights>.json beside the weights)"
        )
    return copy.deepcopy(cfg)


def _hf_file_candidates(hf_hub: str) -> tuple[str, list[str]]:
    # open_clip's convention: "org/repo/" (default file names) or "org/repo/file.bin"
    model_id, filename = os.path.split(hf_hub)
    if not filename:
        return model_id, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return model_id, names


def find_cached_tag_weights(tag_cfg: Mapping[str, Any]) -> Path | None:
    """The tag's weights if already on this machine (HF hub cache, open_clip's URL cache); no network."""
    if tag_cfg.get("file") and Path(tag_cfg["file"]).is_file():
        return Path(tag_cfg["file"])
    hf_hub = tag_cfg.get("hf_hub") or ""
    if hf_hub:
        from huggingface_hub import try_to_load_from_cache

        model_id, names = _hf_file_candidates(hf_hub)
        for filename in names:
            found = try_to_load_from_cache(model_id, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    url = tag_cfg.get("url") or ""
    if url:
        cached = OPEN_CLIP_URL_CACHE.expanduser() / os.path.basename(url)
        if cached.is_file():
            return cached
    return None


def _missing_tag_message(name: str, arch: str, tag: str, tag_cfg: Mapping[str, Any]) -> str:
    lines = [f"{name}: the weights of {arch}@{tag} are not on this machine and downloads are off "
             f"(set {ALLOW_DOWNLOAD_ENV}=1 where there is network). Put one of these files in place:"]
    hf_hub = tag_cfg.get("hf_hub") or ""
    url = tag_cfg.get("url") or ""
    basename = "weights.safetensors"
    if hf_hub:
        model_id, names = _hf_file_candidates(hf_hub)
        basename = names[0]
        lines.append(f"  - {names[0]} of https://huggingface.co/{model_id} into the Hugging Face cache "
                     f"(HF_HUB_CACHE, default ~/.cache/huggingface/hub): run `hf download {model_id} {names[0]}` "
                     f"on a machine with network and copy that cache folder here;")
    if url:
        basename = os.path.basename(url)
        lines.append(f"  - {url} saved as {OPEN_CLIP_URL_CACHE / basename};")
    lines.append(f"  - or any copy of them, passed as --model {arch}@{tag}@/path/to/{basename}")
    return "\n".join(lines)


def _family_preprocess(open_clip: Any, arch: str) -> dict[str, Any]:
    """Preprocessing shared by *every* pretrained tag of a built-in architecture (e.g. SigLIP's
    0.5 mean/std and squash resize), used for a bare ``ARCH@/path`` file; empty if the tags disagree."""
    if arch not in open_clip.list_models():
        return {}
    seen = set()
    for tag in open_clip.list_pretrained_tags_by_model(arch):
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        seen.add(tuple((k, tuple(v) if isinstance(v, (list, tuple)) else v)
                       for k in _PREPROCESS_KEYS if (v := cfg.get(k)) is not None))
    return dict(seen.pop()) if len(seen) == 1 else {}


def resolve(name: str) -> Resolved:
    """Parse ``name`` and find its architecture config, weights file and preprocessing (no model built)."""
    import open_clip

    from ._formats import CheckpointError, find_sidecar_config, read_model_config

    parsed = parse_name(name)
    config_path: Path | None = None
    file_pre: dict[str, Any] = {}
    tag_cfg: dict[str, Any] = {}
    arch_is_json = parsed.arch.lower().endswith(".json")
    try:
        if arch_is_json:
            config_path = Path(parsed.arch).expanduser()
            if not config_path.is_file():
                raise ModelLoadError(f"{name}: no model config at {config_path}: put the open_clip config JSON there")
            model_cfg, file_pre = read_model_config(config_path)
        elif parsed.path is not None and (sidecar := find_sidecar_config(parsed.path)) is not None:
            config_path = sidecar
            model_cfg, file_pre = read_model_config(sidecar)
        else:
            model_cfg = _builtin_config(open_clip, parsed.arch, name)
    except CheckpointError as exc:
        raise ModelLoadError(f"{name}: {exc}") from exc

    if parsed.tag is not None:
        if arch_is_json:
            raise ModelLoadError(f"{name}: a pretrained tag needs a built-in open_clip architecture, not a config file")
        tags = open_clip.list_pretrained_tags_by_model(parsed.arch)
        if parsed.tag not in tags:
            # a built-in architecture is required for tags: fail with its config error first
            _builtin_config(open_clip, parsed.arch, name)
            raise ModelLoadError(
                f"{name}: {parsed.tag!r} is neither an existing file nor a pretrained tag of {parsed.arch} "
                f"(tags: {', '.join(tags) or 'none'}; give a file as a path, e.g. ./{parsed.tag})"
            )
        tag_cfg = dict(open_clip.get_pretrained_cfg(parsed.arch, parsed.tag))

    if parsed.path is not None:
        weights = parsed.path
        if weights.is_dir():
            raise ModelLoadError(f"{name}: {weights} is a folder; pass the weights file inside it "
                                 "(e.g. open_clip_model.safetensors)")
    else:
        assert parsed.tag is not None
        found = find_cached_tag_weights(tag_cfg)
        if found is None:
            if not downloads_allowed():
                raise ModelLoadError(_missing_tag_message(name, parsed.arch, parsed.tag, tag_cfg))
            from open_clip.pretrained import download_pretrained

            found = Path(download_pretrained(tag_cfg))
        weights = found

    preprocess: dict[str, Any] = {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
                                  "resize_mode": "shortest"}
    if not tag_cfg and not arch_is_json:
        preprocess.update(_family_preprocess(open_clip, parsed.arch))
    preprocess.update({k: tag_cfg[k] for k in _PREPROCESS_KEYS if tag_cfg.get(k) is not None})
    preprocess.update({k: file_pre[k] for k in _PREPROCESS_KEYS if file_pre.get(k) is not None})
    if tag_cfg.get("quick_gelu"):
        model_cfg["quick_gelu"] = True
    label = parsed.arch if not arch_is_json else Path(parsed.arch).stem
    return Resolved(label=label, model_cfg=model_cfg, preprocess=preprocess, weights=weights, tag_cfg=tag_cfg,
                    config_path=config_path)


# --------------------------------------------------------------------------------------------
# Building, tokenizers, weights
# --------------------------------------------------------------------------------------------


_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_", "orthogonal_")
_INIT_LOCK = threading.Lock()


@contextmanager
def skip_random_init() -> Iterator[None]:
    """Make ``torch.nn.init``'s random initialisers no-ops while a model is constructed.

    Every persistent weight is then overwritten by the (strict) checkpoint load, so drawing random
    numbers for hundreds of millions of parameters first is wasted time (seconds to tens of seconds
    for ViT-L on a CPU). Only construction is covered; the originals are restored afterwards.
    """
    import torch.nn.init as init

    def _keep(tensor: Any, *_: Any, **__: Any) -> Any:
        return tensor

    with _INIT_LOCK:
        saved = {fn: getattr(init, fn) for fn in _RANDOM_INITS if hasattr(init, fn)}
        for fn in saved:
            setattr(init, fn, _keep)
        try:
            yield
        finally:
            for fn, original in saved.items():
                setattr(init, fn, original)


def build_model(model_cfg: Mapping[str, Any], name: str = "model") -> Any:
    """An open_clip model (``CLIP``/``CustomTextCLIP``/``CoCa``) from a config, to be filled by a checkpoint.

    Its weights are *not* meaningful (random initialisation is skipped, see
    :func:`skip_random_init`): always load a checkpoint into it strictly. Base-tower pretrained
    weights (timm image towers, HF text towers) are never fetched.
    """
    from open_clip.coca_model import CoCa
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = copy.deepcopy(dict(model_cfg))
    vision_cfg = dict(cfg.get("vision_cfg", {}))
    text_cfg = dict(cfg.get("text_cfg", {}))
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False
    if isinstance(vision_cfg.get("layers"), list):
        vision_cfg["layers"] = tuple(vision_cfg["layers"])
    cfg["vision_cfg"], cfg["text_cfg"] = vision_cfg, text_cfg
    custom_text = bool(cfg.pop("custom_text", False)) or hf_text
    cls = (CoCa if "multimodal_cfg" in cfg else CustomTextCLIP) if custom_text else CLIP
    try:
        with hub_offline(), skip_random_init():
            return cls(**cfg)
    except OSError as exc:  # an HF text tower whose config is not cached
        raise ModelLoadError(
            f"{name}: its text tower is the Hugging Face model {text_cfg.get('hf_model_name')!r}, whose config is not "
            f"on this machine; run `hf download {text_cfg.get('hf_model_name')} config.json` where there is network "
            f"and copy the Hugging Face cache here ({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
        ) from exc


def _tokenizer_dir(weights: Path | None) -> Path | None:
    if weights is None:
        return None
    folder = weights.parent
    if any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return folder
    return None


def make_tokenizer(model_cfg: Mapping[str, Any], label: str, weights: Path | None = None, name: str = "") -> Any:
    """The tokenizer the config asks for, from local files only.

    * ``text_cfg.hf_tokenizer_name`` (SigLIP, some EVA/MobileCLIP/multilingual models): tokenizer
      files beside the weights (open_clip's hub layout), else the Hugging Face cache; never the network.
    * otherwise open_clip's bundled CLIP BPE ``SimpleTokenizer`` (its vocabulary ships with open_clip).
    """
    from open_clip.tokenizer import HFTokenizer

    text_cfg = dict(model_cfg.get("text_cfg", {}))
    ctx = int(text_cfg.get("context_length", 77))
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    hf_name = text_cfg.get("hf_tokenizer_name") or ""
    if hf_name:
        source = _tokenizer_dir(weights)
        if source is None:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("tokenizer.json", "tokenizer_config.json"):
                found = try_to_load_from_cache(hf_name, filename)
                if isinstance(found, str):
                    source = Path(found).parent
                    break
        if source is None and not downloads_allowed():
            raise ModelLoadError(
                f"{name or label}: its tokenizer is the Hugging Face tokenizer {hf_name!r}, which is not on this machine. "
                f"Put tokenizer.json, tokenizer_config.json and special_tokens_map.json beside the weights"
                + (f" (in {weights.parent})" if weights is not None else "")
                + f", or run `hf download {hf_name} tokenizer.json tokenizer_config.json special_tokens_map.json` "
                f"where there is network and copy the Hugging Face cache here."
            )
        try:
            with hub_offline():
                return HFTokenizer(str(source or hf_name), context_length=ctx,
                                   tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any tokenizer failure becomes one clear error
            raise ModelLoadError(f"{name or label}: cannot load tokenizer {hf_name!r} from {source}: {exc}") from exc
    if "siglip" in label.lower():
        raise ModelLoadError(f"{name or label}: SigLIP models need a sentencepiece tokenizer (set text_cfg.hf_tokenizer_name "
                             "and put its tokenizer files beside the weights); it cannot be downloaded here")
    vocab = int(text_cfg.get("vocab_size", CLIP_BPE_VOCAB_SIZE))
    if vocab < CLIP_BPE_VOCAB_SIZE:
        raise ModelLoadError(
            f"{name or label}: text vocabulary of {vocab} tokens is smaller than the CLIP BPE tokenizer's "
            f"{CLIP_BPE_VOCAB_SIZE}; give it a tokenizer (text_cfg.hf_tokenizer_name with tokenizer files beside "
            f"the weights), or load it in code with load_open_clip_files(..., tokenizer=...)"
        )
    return _simple_tokenizer(ctx, tuple(sorted(kwargs.items())))


@lru_cache(maxsize=8)
def _simple_tokenizer(context_length: int, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    """open_clip's CLIP BPE tokenizer (stateless apart from a memo; building it reads ~50k merges)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length, **dict(kwargs))


def load_weights(model: Any, sd: dict[str, Any], source: str) -> None:
    """Load a flat state dict into an open_clip model, strictly.

    Applies open_clip's own format conversions (MobileCLIP, old text-tower layout, logit scale
    shape) and drops what is not a persistent weight (OpenAI's scalar attributes, non-persistent
    buffers read from TorchScript archives). Position embeddings are *not* resized: weights that
    do not fit the architecture are an error, never a silent interpolation.
    """
    import torch
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    from ._formats import OPENAI_EXTRA_KEYS

    expected = model.state_dict()
    transient = {n for n, _ in model.named_buffers()} - set(expected)
    for key in (*OPENAI_EXTRA_KEYS, *transient, "text.transformer.embeddings.position_ids"):
        sd.pop(key, None)
    # derived tensors some archives keep as attributes (OpenAI's blocks hold their causal mask)
    for key in [k for k in sd if k not in expected and k.rsplit(".", 1)[-1] in _DERIVED_LEAVES]:
        del sd[key]
    sd = convert_state_dict(model, sd)
    if "positional_embedding" in sd and "positional_embedding" not in expected:
        sd = convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        if key in sd and key in expected and sd[key].ndim != expected[key].ndim:
            sd[key] = sd[key].reshape(expected[key].shape)
    if "logit_bias" in expected and "logit_bias" not in sd:
        sd["logit_bias"] = torch.zeros_like(expected["logit_bias"])
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
                  for k in expected if k in sd and sd[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:4]})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {mismatched[:3]})")
        raise ModelLoadError(f"{source}: the weights do not fit the architecture: " + "; ".join(parts)
                             + ". Check ARCH (or the config JSON beside the weights).")
    model.load_state_dict(sd, strict=True)


@dataclass
class Checkpoint:
    """A weights file, read once: its format and (except for ``npz``) its flat state dict."""

    path: Path
    fmt: str
    state_dict: dict[str, Any] | None

    @property
    def openai(self) -> bool:
        """OpenAI's own release format: a TorchScript archive, or its state dict (which keeps the
        archive's ``input_resolution`` scalar). Those weights were trained with QuickGELU."""
        return self.fmt == "torchscript" or (self.state_dict is not None and "input_resolution" in self.state_dict)


def read_checkpoint(weights: Path, name: str) -> Checkpoint:
    from ._formats import CheckpointError, detect_format, read_state_dict

    try:
        fmt = detect_format(weights)
        if fmt == "npz":
            return Checkpoint(weights, fmt, None)
        sd, fmt = read_state_dict(weights, fmt)
    except CheckpointError as exc:
        raise ModelLoadError(f"{name}: {exc}") from exc
    return Checkpoint(weights, fmt, sd)


def load_checkpoint_into(model: Any, ckpt: Checkpoint, name: str) -> None:
    if ckpt.state_dict is None:  # big_vision .npz (SigLIP): open_clip reads it with allow_pickle=False
        from open_clip.convert import load_big_vision_weights

        load_big_vision_weights(model, str(ckpt.path))
        return
    load_weights(model, ckpt.state_dict, f"{name} ({ckpt.path})")


def wrap(model: Any, tokenizer: Any, *, name: str, version: str, preprocess: Mapping[str, Any],
         device: Any = None) -> Any:
    """Wrap a loaded open_clip model as an :class:`~rlcf_bench.tta.vlm.OpenClipVLM` with its preprocessing."""
    from rlcf_bench.tta.vlm import OpenClipVLM

    size = getattr(model.visual, "image_size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    pre = {"size": int(size), **{k: preprocess[k] for k in _PREPROCESS_KEYS if k in preprocess}}
    pre["mean"] = tuple(float(x) for x in pre.get("mean", OPENAI_MEAN))
    pre["std"] = tuple(float(x) for x in pre.get("std", OPENAI_STD))
    from open_clip.model import set_model_preprocess_cfg

    set_model_preprocess_cfg(model, {**pre, "mode": "RGB"})
    if device is not None:
        model = model.to(device)
    vlm = OpenClipVLM(model, tokenizer, name=name, image_size=int(size), mean=pre["mean"], std=pre["std"],
                      version=version)
    # Not (yet) constructor arguments of OpenClipVLM: recorded so views can resize like the weights expect.
    vlm.preprocess_cfg = pre  # type: ignore[attr-defined]
    vlm.interpolation = str(pre.get("interpolation", "bicubic"))  # type: ignore[attr-defined]
    return vlm


def load_open_clip_files(config: str | Path | Mapping[str, Any], weights: str | Path, *, name: str | None = None,
                         device: Any = "cpu", tokenizer: Any = None,
                         preprocess: Mapping[str, Any] | None = None) -> Any:
    """Load an open_clip model from a config (a JSON path or a model-config mapping) and a weights file.

    For code that owns its tokenizer (e.g. a word-level vocabulary): pass ``tokenizer=``.
    """
    from ._formats import CheckpointError, quick_fingerprint, read_model_config

    w = Path(weights)
    if not w.is_file():
        raise ModelLoadError(f"no weights file at {w}")
    pre: dict[str, Any] = {}
    if isinstance(config, Mapping):
        model_cfg = copy.deepcopy(dict(config))
        if "model_cfg" in model_cfg:  # open_clip_config.json layout
            pre.update(model_cfg.get("preprocess_cfg") or {})
            model_cfg = dict(model_cfg["model_cfg"])
        pre.update(model_cfg.pop("preprocess_cfg", None) or {})
        label = name or w.stem
    else:
        try:
            model_cfg, pre = read_model_config(config)
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from exc
        label = name or Path(config).stem
    pre.update(preprocess or {})
    tok = tokenizer if tokenizer is not None else make_tokenizer(model_cfg, label, w, label)
    ckpt = read_checkpoint(w, label)
    if ckpt.openai:
        model_cfg["quick_gelu"] = True
    model = build_model(model_cfg, label)
    load_checkpoint_into(model, ckpt, label)
    return wrap(model.eval(), tok, name=name or label, version=f"{w.name}:{quick_fingerprint(w)}",
                preprocess=pre, device=device)


def check_open_clip(name: str) -> None:
    """Raise :class:`ModelLoadError` when ``name``'s config or weights are not on this machine
    (nothing is built; a download happens only where downloads are allowed, as loading would)."""
    with hub_offline():
        resolve(name)


def load_open_clip(name: str, device: Any) -> Any:
    """Load any open_clip model name (see the module docstring) as an ``OpenClipVLM``."""
    from ._formats import quick_fingerprint

    with hub_offline():
        res = resolve(name)
        tokenizer = make_tokenizer(res.model_cfg, res.label, res.weights, name)
        ckpt = read_checkpoint(res.weights, name)
        if ckpt.openai:  # OpenAI's released weights were trained with QuickGELU
            res.model_cfg["quick_gelu"] = True
        model = build_model(res.model_cfg, name)
        load_checkpoint_into(model, ckpt, name)
    parsed = parse_name(name)
    version = parsed.tag if parsed.path is None and parsed.tag else f"{res.weights.name}:{quick_fingerprint(res.weights)}"
    return wrap(model.eval(), tokenizer, name=name, version=str(version), preprocess=res.preprocess, device=device)


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(name="open_clip", version="2", load=load_open_clip, accepts=_accepts, check=check_open_clip,
                  description="open_clip ARCH@TAG (e.g. ViT-B-16@openai), ARCH@/path/to/weights, "
                              "ARCH@TAG@/path/to/weights or CONFIG.json@/path/to/weights; offline, fail-fast"),
    ]
