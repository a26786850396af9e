"""A tiny, seeded CLIP whose identical weights load into the official code's ``clip.model.CLIP``
and into this project's open_clip wrapper (``rlcf_bench.tta.vlm.OpenClipVLM``).

The official repositories (TPT, RLCF, C-TPT, R-TPT, ...) bundle OpenAI's ``clip`` package. Its
``build_model`` infers everything from the state dict's shapes, with ``heads = width // 64``, and
its ``tokenize`` pads to 77 positions; so the tiny model has widths 128 (two heads of 64) and
context length 77. The weights are drawn from a seeded ``torch.Generator`` key by key (sorted
names), not by open_clip's initialiser, so they do not depend on the order in which a library
version creates its modules; ``weights_fingerprint`` (a SHA-256 of the tensors) lets a golden file
record which weights it was made with, and a test fail clearly if a rebuild ever differs.

Importing this module needs neither the official code nor anything but torch and open_clip:
tests rebuild the same model with ``tiny_vlm()``. Recording scripts additionally call
``use_tiny_clip(parent)`` (``parent`` is the official folder that holds the ``clip`` package,
e.g. ``<RLCF>/TPT`` or ``<TPT>``), after which the official ``clip.load`` returns the tiny model
(``official_clip_model``) whatever architecture the official code asks for, and
``import_official`` to import official modules; ``check_same_features`` asserts that both models
agree.

``python tools/parity/official_clip.py --official DIR`` runs that check and prints the largest
feature differences.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import math
import os
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

SEED = 0
EMBED_DIM = 64
IMAGE_SIZE = 32
PATCH_SIZE = 16
WIDTH = 128  # vision and text; OpenAI's build_model infers heads = width // 64 = 2
LAYERS = 2
CONTEXT_LENGTH = 77  # what the official clip.tokenize pads to
VOCAB_SIZE = 49408
LOGIT_SCALE = math.log(100.0)  # exp() = 100, OpenAI CLIP's trained value
TINY_INPUT = f"tiny seeded CLIP (ViT {IMAGE_SIZE}px/{PATCH_SIZE}, width {WIDTH}, {LAYERS} layers, embed {EMBED_DIM}, ctx {CONTEXT_LENGTH})"


def _open_clip_model() -> Any:
    """An open_clip ``CLIP`` with the tiny architecture (QuickGELU, as OpenAI's model), random init."""
    from open_clip.model import CLIP

    return CLIP(EMBED_DIM,
                vision_cfg={"image_size": IMAGE_SIZE, "layers": LAYERS, "width": WIDTH, "patch_size": PATCH_SIZE,
                            "head_width": 64},
                text_cfg={"context_length": CONTEXT_LENGTH, "vocab_size": VOCAB_SIZE, "width": WIDTH,
                          "heads": WIDTH // 64, "layers": LAYERS},
                quick_gelu=True)


def _draw(name: str, shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    """Deterministic values for one parameter, scaled so features are neither degenerate nor huge."""
    if name == "logit_scale":
        return torch.full(shape, LOGIT_SCALE)
    noise = torch.randn(shape, generator=g)
    leaf = name.rsplit(".", 1)[-1]
    if name.split(".")[-2:][0].startswith("ln_"):  # LayerNorms: ln_1, ln_2, ln_final, ln_pre, ln_post
        return 1.0 + 0.1 * noise if leaf == "weight" else 0.05 * noise
    if leaf.endswith("bias"):
        return 0.02 * noise
    if name in {"token_embedding.weight", "positional_embedding", "visual.positional_embedding"}:
        return 0.02 * noise
    if name in {"text_projection", "visual.proj", "visual.class_embedding"}:
        return noise * shape[0] ** -0.5
    fan_in = int(torch.Size(shape[1:]).numel()) if len(shape) > 1 else int(shape[0])
    return noise * fan_in ** -0.5


def tiny_state_dict(seed: int = SEED) -> dict[str, torch.Tensor]:
    """The tiny CLIP's weights under OpenAI's key names (which open_clip's ``CLIP`` shares), fp32."""
    template = _open_clip_model().state_dict()
    g = torch.Generator().manual_seed(seed)
    return {name: _draw(name, template[name].shape, g).float().contiguous() for name in sorted(template)}


def weights_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the sorted names and raw fp32 bytes: record it in a golden file's metadata."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def tiny_tokenizer() -> Any:
    """open_clip's tokenizer padded to 77 positions (the same BPE and cleaning as ``clip.tokenize``)."""
    import open_clip

    return open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)


def tiny_vlm(seed: int = SEED) -> Any:
    """This project's ``OpenClipVLM`` over the tiny CLIP (no official code needed)."""
    from rlcf_bench.tta.vlm import OpenClipVLM

    model = _open_clip_model()
    model.load_state_dict(tiny_state_dict(seed))
    return OpenClipVLM(model, tiny_tokenizer(), name="tiny-official-clip", image_size=IMAGE_SIZE,
                       version=f"seed{seed}")


def _shim_pkg_resources() -> None:
    """The official ``clip/clip.py`` imports ``packaging`` through ``pkg_resources`` (setuptools),
    which recent environments lack; it only compares torch versions with it."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version

        shim = types.ModuleType("pkg_resources")
        shim.packaging = sys.modules["packaging"]  # type: ignore[attr-defined]
        assert packaging.version
        sys.modules["pkg_resources"] = shim


def official_package(parent: Path | str, package: str = "clip") -> types.ModuleType:
    """Register the official ``package`` found in ``parent`` without running its ``__init__``
    (RLCF's ``clip/__init__`` imports ``custom_clip``, which raises unless its authors' download
    folder exists) but with what ``from .clip import *`` exports, so ``from clip import load``
    works; its other submodules import normally (``import_official("clip.custom_clip")``).
    ``parent`` goes first on ``sys.path`` (the official scripts import ``data``, ``utils``, ...).
    Refuses if a package of that name is already imported from elsewhere."""
    parent = Path(parent).resolve()
    folder = parent / package
    if not (folder / "__init__.py").is_file():
        raise FileNotFoundError(f"{folder} is not a package: pass the official folder that holds {package}/")
    loaded = sys.modules.get(package)
    if loaded is not None:
        if Path(list(getattr(loaded, "__path__", [""]))[0]).resolve() != folder:
            raise RuntimeError(f"a different {package!r} package is already imported: {loaded!r}")
        return loaded
    _shim_pkg_resources()
    if str(parent) not in sys.path:
        sys.path.insert(0, str(parent))
    module = types.ModuleType(package)
    module.__path__ = [str(folder)]
    module.__file__ = str(folder / "__init__.py")
    sys.modules[package] = module
    if (folder / "clip.py").is_file():
        inner = importlib.import_module(f"{package}.clip")
        for name in getattr(inner, "__all__", []):
            setattr(module, name, getattr(inner, name))
    return module


@contextlib.contextmanager
def pretend_paths_exist(paths: Sequence[str] = ("/YOUR/PATH",)) -> Iterator[None]:
    """``os.path.exists`` answers True for ``paths`` meanwhile: RLCF's ``custom_clip`` and
    ``clip_reward`` raise at import unless their authors' CLIP download folder (or the placeholder
    ``/YOUR/PATH``) exists; with the tiny loader (``use_tiny_clip``) nothing is read from it."""
    real = os.path.exists
    wanted = set(paths)
    os.path.exists = lambda p: str(p) in wanted or real(p)  # type: ignore[assignment]
    try:
        yield
    finally:
        os.path.exists = real


def import_official(module: str, parent: Path | str | None = None) -> types.ModuleType:
    """Import an official module (e.g. ``"clip.custom_clip"``, ``"utils.KD"``, ``"clip_reward"``),
    registering the ``clip`` package of ``parent`` first when given, with the download-folder
    check satisfied (``pretend_paths_exist``)."""
    if parent is not None:
        official_package(parent)
    with pretend_paths_exist():
        return importlib.import_module(module)


def use_tiny_clip(parent: Path | str, seeds: dict[str, int] | None = None) -> dict[str, Any]:
    """Make the official ``clip.load(name, ...)`` return ``(tiny model, EMBED_DIM, None)`` for
    every name (the weights of ``seeds.get(name, SEED)``), in the package and in every official
    module that already imported ``load``; returns the models built so far, by name."""
    package = official_package(parent)
    built: dict[str, Any] = {}

    def load(name: str, device: Any = "cpu", jit: bool = False, download_root: Any = None) -> tuple[Any, int, None]:
        model = official_clip_model(parent, (seeds or {}).get(name, SEED)).to(device)
        built[name] = model
        return model, EMBED_DIM, None

    for mod in [package, *(m for key, m in list(sys.modules.items()) if key.startswith(f"{package.__name__}."))]:
        if hasattr(mod, "load"):
            mod.load = load
    for mod in list(sys.modules.values()):
        if getattr(mod, "load", None) is not None and getattr(mod.load, "__module__", "") == "clip.clip":
            mod.load = load
    return built


def official_clip_model(parent: Path | str, seed: int = SEED) -> Any:
    """The official ``clip.model.build_model`` on the tiny weights, fp32, eval mode."""
    official_package(parent)
    build_model = importlib.import_module("clip.model").build_model
    model = build_model(dict(tiny_state_dict(seed)))
    return model.float().eval()


def official_tokenize(parent: Path | str, texts: Sequence[str]) -> torch.Tensor:
    """The official ``clip.tokenize`` (its own BPE, 77 positions), as int64."""
    official_package(parent)
    return importlib.import_module("clip.clip").tokenize(list(texts)).long()


def tiny_images(n: int, seed: int = 1) -> torch.Tensor:
    """``n`` seeded, already-normalised images ``[n, 3, 32, 32]`` (inputs to both encoders)."""
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def feature_differences(official_model: Any, parent: Path | str, vlm: Any, texts: Sequence[str],
                        images: torch.Tensor) -> dict[str, float]:
    """Largest absolute differences between the two models' normalised features (and tokens)."""
    official_tokens = official_tokenize(parent, texts)
    our_tokens = vlm.tokenize(texts)
    token_mismatch = float((official_tokens != our_tokens).sum())
    off_text = F.normalize(official_model.encode_text(official_tokens).float(), dim=-1)
    off_image = F.normalize(official_model.encode_image(images).float(), dim=-1)
    our_text = vlm.text_features(texts)
    our_image = vlm.image_features(images)
    return {"tokens_differing": token_mismatch,
            "text": float((off_text - our_text).abs().max()),
            "image": float((off_image - our_image).abs().max()),
            "logit_scale": abs(float(official_model.logit_scale.exp()) - vlm.logit_scale),
            "text_spread": float(off_text.std(0).mean()), "image_spread": float(off_image.std(0).mean())}


def check_same_features(official_model: Any, parent: Path | str, vlm: Any, texts: Sequence[str],
                        images: torch.Tensor, atol: float = 1e-5) -> dict[str, float]:
    """``feature_differences``, raising ``AssertionError`` unless tokens are identical and the
    features and logit scale agree within ``atol``."""
    diff = feature_differences(official_model, parent, vlm, texts, images)
    assert diff["tokens_differing"] == 0, f"tokenizers disagree: {diff}"
    assert max(diff["text"], diff["image"], diff["logit_scale"]) <= atol, f"features differ beyond {atol}: {diff}"
    return diff


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, type=Path,
                        help="the official folder that holds the clip package (e.g. <RLCF>/TPT or <TPT>)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    official = official_clip_model(args.official, args.seed)
    vlm = tiny_vlm(args.seed)
    texts = ["a photo of a red car.", "a photo of a dog, a type of pet.", "itap of a Crème brûlée!", "x"]
    diff = check_same_features(official, args.official, vlm, texts, tiny_images(6))
    print(f"{TINY_INPUT}, weights {weights_fingerprint(tiny_state_dict(args.seed))[:16]}: {diff}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
