"""Hugging Face backend: ``hf:/path/to/dir`` loads a ``transformers`` ``CLIPModel`` or ``SiglipModel``
(``config.json``'s ``model_type``: ``clip`` or ``siglip``) from a local folder.

The folder is what ``CLIPModel.save_pretrained`` (``SiglipModel``'s) and the tokenizer's
``save_pretrained`` write (or a snapshot of a hub repo such as ``openai/clip-vit-base-patch16`` or
``google/siglip-base-patch16-224``): ``config.json``, the weights
(``model.safetensors`` or ``pytorch_model.bin``, possibly sharded), the tokenizer files
(``tokenizer.json``, ``vocab.json`` + ``merges.txt`` or SigLIP's ``spiece.model``, with
``tokenizer_config.json``) and
optionally ``preprocessor_config.json`` (image size, mean, std, resample) — preprocessing travels
with the weights. Everything is read with ``local_files_only=True`` under a forced-offline hub:
nothing is ever fetched. ``transformers`` reads ``.bin`` weights with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlcf_bench import ModelSpec, hookimpl

from .open_clip_backend import ModelLoadError, hub_offline

PREFIX = "hf:"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
#: PIL resampling codes used in ``preprocessor_config.json``.
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: ``config.json`` model types this backend loads → the ``transformers`` class.
MODEL_CLASSES = {"clip": "CLIPModel", "siglip": "SiglipModel"}


def _accepts(name: str) -> bool:
    return name.startswith(PREFIX) and len(name) > len(PREFIX)


def check_folder(folder: Path, name: str) -> None:
    """Fail at once, saying which file is missing, before ``transformers`` is even imported."""
    what = ("the output of CLIPModel.save_pretrained (config.json, model.safetensors) and of the tokenizer's "
            "save_pretrained (tokenizer.json or vocab.json + merges.txt, tokenizer_config.json)")
    if not folder.is_dir():
        raise ModelLoadError(f"{name}: no folder at {folder}; put {what} there")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{name}: {folder / 'config.json'} is missing; the folder must hold {what}")
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise ModelLoadError(f"{name}: no weights in {folder}; expected one of {', '.join(WEIGHT_FILES)}")
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
    if not has_tokenizer:
        raise ModelLoadError(f"{name}: no tokenizer in {folder}; put tokenizer.json (or vocab.json and merges.txt) "
                             "and tokenizer_config.json there (CLIPTokenizer(...).save_pretrained(folder))")
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{name}: cannot read {folder / 'config.json'}: {exc}") from exc
    if model_type not in MODEL_CLASSES:
        raise ModelLoadError(f"{name}: config.json has model_type {model_type!r}; this backend loads CLIPModel "
                             "('clip') and SiglipModel ('siglip') only (use an open_clip name for other families, "
                             "e.g. ViT-B-16-SigLIP2@webli for SigLIP 2)")


def read_preprocess(folder: Path, image_size: int) -> dict[str, Any]:
    """Mean, std, interpolation and crop size from ``preprocessor_config.json`` (CLIP defaults if absent)."""
    pre: dict[str, Any] = {"size": int(image_size), "mean": OPENAI_MEAN, "std": OPENAI_STD,
                           "interpolation": "bicubic", "resize_mode": "shortest"}
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return pre
    cfg = json.loads(path.read_text())
    if cfg.get("image_mean"):
        pre["mean"] = tuple(float(x) for x in cfg["image_mean"])
    if cfg.get("image_std"):
        pre["std"] = tuple(float(x) for x in cfg["image_std"])
    resample = cfg.get("resample")
    if isinstance(resample, int) and resample in RESAMPLE:
        pre["interpolation"] = RESAMPLE[resample]
    crop = cfg.get("crop_size")
    crop_size = crop.get("height") if isinstance(crop, dict) else crop
    if crop_size is not None and int(crop_size) != int(image_size):
        raise ModelLoadError(f"{path}: crop size {crop_size} differs from the vision model's image_size {image_size}")
    return pre


def load_hf_clip(name: str, device: Any) -> Any:
    """Load ``hf:/path/to/dir`` (a ``CLIPModel`` or a ``SiglipModel``) as a :class:`rlcf_bench.tta.hf_vlm.HFClipVLM`."""
    folder = Path(name[len(PREFIX):]).expanduser()
    check_folder(folder, name)
    from ._formats import quick_fingerprint

    with hub_offline():
        import transformers
        from transformers import AutoTokenizer

        from rlcf_bench.quiet import quiet_transformers

        quiet_transformers()
        model_type = json.loads((folder / "config.json").read_text())["model_type"]  # checked: clip or siglip
        try:
            model = getattr(transformers, MODEL_CLASSES[model_type]).from_pretrained(str(folder), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{name}: cannot load the {MODEL_CLASSES[model_type]}/tokenizer in {folder}: {exc}") from exc
    from rlcf_bench.tta.hf_vlm import HFClipVLM

    vision = model.config.vision_config
    if not isinstance(getattr(vision, "image_size", None), int):
        raise ModelLoadError(f"{name}: the vision configuration in {folder} has image_size "
                             f"{vision.image_size!r}, not one number")
    image_size = vision.image_size
    pre = read_preprocess(folder, image_size)
    weights = next(folder / f for f in WEIGHT_FILES if (folder / f).is_file())
    vlm = HFClipVLM(model.float(), tokenizer, name=name, image_size=image_size, mean=pre["mean"], std=pre["std"],
                    interpolation=pre["interpolation"], version=f"{weights.name}:{quick_fingerprint(weights)}")
    return vlm.to(device) if device is not None else vlm


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(name="hf-clip", version="1", load=load_hf_clip, accepts=_accepts,
                  check=lambda name: check_folder(Path(name[len(PREFIX):]).expanduser(), name),
                  description="Hugging Face CLIPModel or SiglipModel from a local folder: hf:/path/to/dir (offline)"),
    ]
