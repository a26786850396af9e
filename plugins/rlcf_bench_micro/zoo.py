"""The micro suite's model zoo: a student and a reward model, small open_clip CLIPs.

Both are open_clip ``CLIP`` models built from the configurations below (a ``ModifiedResNet``
image tower — tiny ViTs stay near chance when trained from scratch on a CPU in minutes — and a
causal text transformer) with a word-level vocabulary of the suite's few dozen words, so that a
checkpoint is a few MB. They are loaded exactly like any open_clip checkpoint (build the
architecture, load a safetensors state dict) and wrapped in :class:`rlcf_bench.tta.vlm.OpenClipVLM`.

* ``micro-student`` — the policy (ViT-B/16 analogue): smaller, trained on the ``photo`` domain
  only, without augmentation.
* ``micro-reward`` — the reward model (ViT-L/14 analogue): a wider network (about 4.5x the
  student's parameters) trained from scratch on a broader scene distribution with broad image
  augmentation. Nothing of it comes from the student.

Train them with ``rlcf-bench micro train-zoo`` (``commands.py``, ``_train.py``); the shipped weights live in
``weights/`` with a ``manifest.json`` (config, seed, data version, sha256, curves, validation
accuracy, wall time). This module stays cheap to import: torch is imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlcf_bench import ModelSpec, hookimpl

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"
IMAGE_SIZE = 64
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 24
FIXED_LOGIT_SCALE = 100.0

ZOO_NAMES = ("micro-student", "micro-reward")

# open_clip CLIP architecture configurations (``vision_cfg``/``text_cfg`` as open_clip reads them;
# ``vocab_size`` and ``context_length`` are filled in from the tokenizer).
CONFIGS: dict[str, dict[str, Any]] = {
    # Image tower width 8: five methods tune this tower on every test image, and at width 16 it
    # took about twice the CPU time for 2 points more photo accuracy (100 vs 98 %) and a shifted
    # mean 1.5 points lower (docs/performance.md#the-student).
    "micro-student": {
        "embed_dim": 128,
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8, "head_width": 32, "image_size": IMAGE_SIZE},
        "text_cfg": {"width": 128, "heads": 4, "layers": 3},
    },
    # A different, larger network (about 4.5x the student's parameters), trained from scratch.
    "micro-reward": {
        "embed_dim": 192,
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": 24, "head_width": 32, "image_size": IMAGE_SIZE},
        "text_cfg": {"width": 192, "heads": 4, "layers": 3},
    },
}


class WordTokenizer:
    """A word-level tokenizer with CLIP's conventions.

    Ids: 0 padding, 1 unknown word, then the vocabulary, then start-of-text and end-of-text — the
    end-of-text id is the highest, so open_clip's ``argmax`` pooling finds it. Words are lower-case
    runs of letters; ``.`` and ``,`` are tokens of their own. Calling it on a list of strings
    returns a ``LongTensor[N, context_length]`` (truncated texts keep their end-of-text token).
    """

    pad_token_id = 0
    unk_token_id = 1

    def __init__(self, vocab: Sequence[str], context_length: int = CONTEXT_LENGTH) -> None:
        self.vocab = tuple(vocab)
        self.context_length = int(context_length)
        self.encoder = {w: i + 2 for i, w in enumerate(self.vocab)}
        self.sot_token_id = len(self.vocab) + 2
        self.eot_token_id = len(self.vocab) + 3
        self.vocab_size = len(self.vocab) + 4
        self.decoder = {i: w for w, i in self.encoder.items()}

    def encode(self, text: str) -> list[int]:
        return [self.encoder.get(w, self.unk_token_id) for w in re.findall(r"[a-z]+|[.,]", text.lower())]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> Any:
        import torch

        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text)[: n - 2], self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        words = [self.decoder.get(int(i), "") for i in ids if int(i) in self.decoder]
        return " ".join(words).replace(" .", ".").replace(" ,", ",")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "vocab": list(self.vocab), "context_length": self.context_length}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        return cls(d["vocab"], d["context_length"])


def default_tokenizer() -> WordTokenizer:
    from .generator import VOCABULARY

    return WordTokenizer(VOCABULARY, CONTEXT_LENGTH)


def full_config(name: str, tokenizer: WordTokenizer) -> dict[str, Any]:
    cfg: dict[str, Any] = json.loads(json.dumps(CONFIGS[name]))
    cfg["text_cfg"].update(vocab_size=tokenizer.vocab_size, context_length=tokenizer.context_length)
    return cfg


def build_clip(config: dict[str, Any]) -> Any:
    """An open_clip ``CLIP`` from a zoo configuration (random weights, fixed logit scale 100)."""
    import math

    from open_clip.model import CLIP

    vision = dict(config["vision_cfg"])
    vision["layers"] = tuple(vision["layers"])
    return CLIP(embed_dim=config["embed_dim"], vision_cfg=vision, text_cfg=dict(config["text_cfg"]),
                init_logit_scale=math.log(FIXED_LOGIT_SCALE))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = Path(weights_dir) / MANIFEST
    if not path.is_file():
        return {}
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


class ChecksumError(RuntimeError):
    """A checkpoint does not match the sha256 its manifest records."""


def load_zoo_model(name: str, device: Any = "cpu", weights_dir: str | Path = WEIGHTS_DIR) -> Any:
    """Load ``micro-student``/``micro-reward`` as an :class:`~rlcf_bench.tta.vlm.OpenClipVLM`.

    The checkpoint's sha256 is verified against the manifest before loading.
    """
    import torch
    from safetensors.torch import load_file

    from rlcf_bench.tta.vlm import OpenClipVLM

    manifest = read_manifest(weights_dir)
    if name not in manifest.get("models", {}):
        raise FileNotFoundError(f"no {name!r} in {Path(weights_dir) / MANIFEST}; train with `rlcf-bench micro train-zoo`")
    entry = manifest["models"][name]
    path = Path(weights_dir) / entry["file"]
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ChecksumError(f"{path}: sha256 {digest} does not match the manifest's {entry['sha256']}")
    tokenizer = WordTokenizer.from_dict(entry["tokenizer"])
    model = build_clip(entry["config"])
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=True), None
    del missing, unexpected
    vlm = OpenClipVLM(model, tokenizer, name=name, image_size=entry.get("image_size", IMAGE_SIZE),
                      mean=tuple(entry.get("mean", MEAN)), std=tuple(entry.get("std", STD)),
                      version=digest[:12])
    return vlm.to(torch.device(device if device is not None else "cpu"))


def preprocess_uint8(images: Any, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Any:
    """uint8 ``[N, 3, H, W]`` (or ``[N, H, W, 3]`` numpy) → normalised float tensor."""
    import numpy as np
    import torch

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = images.float() / 255.0
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def zero_shot_accuracy(vlm: Any, images: Any, labels: Sequence[int], classnames: Sequence[str] | None = None,
                       template: str = "a photo of a {}.", batch_size: int = 250) -> float:
    """Zero-shot top-1 accuracy of a VLM on uint8 images with one prompt template."""
    import torch

    from .generator import SHAPES

    classnames = tuple(classnames or SHAPES)
    text = vlm.text_features([template.format(c) for c in classnames])
    x = preprocess_uint8(images, vlm.mean, vlm.std)
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            f = vlm.image_features(x[i : i + batch_size].to(vlm.device))
            pred = (f @ text.T).argmax(-1).cpu()
            correct += int((pred == torch.as_tensor(list(labels[i : i + batch_size]))).sum())
    return correct / max(1, int(x.shape[0]))


# --------------------------------------------------------------------------------------------
# Plugin hooks
# --------------------------------------------------------------------------------------------


def _make_loader(name: str) -> Callable[..., Any]:
    def load(requested: str = name, device: Any = "cpu", **_: Any) -> Any:
        return load_zoo_model(name, device)

    return load


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    manifest = read_manifest()
    specs = []
    descriptions = {
        "micro-student": "micro suite policy (ViT-B/16 analogue): small open_clip ResNet CLIP trained on photo only",
        "micro-reward": "micro suite reward (ViT-L/14 analogue): a 4.5x larger CLIP trained from scratch on broader scenes",
    }
    for name in ZOO_NAMES:
        entry = manifest.get("models", {}).get(name)
        version = entry["sha256"][:12] if entry else "untrained"
        specs.append(ModelSpec(name=name, version=version, load=_make_loader(name), description=descriptions[name]))
    return specs
