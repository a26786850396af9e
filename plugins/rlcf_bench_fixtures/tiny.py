"""``tiny-clip`` (a seeded random open_clip model, 32×32 input), ``tiny-siglip`` (the same size
with SigLIP's architecture: logit bias, bidirectional text tower pooled at its last position) and
``tiny-colors`` (a generated 4-class dataset of solid colour patches with a little noise). Their numbers mean nothing; they
exist so the whole pipeline can be exercised in seconds."""

from __future__ import annotations

import math
from typing import Any

from rlcf_bench import DatasetSpec, ModelSpec, hookimpl
from rlcf_bench.types import ParamRule, Range

TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

#: ``tiny-clip``'s size with open_clip's SigLIP text tower (``ViT-B-16-SigLIP``'s ``text_cfg``: no
#: causal mask, last-position pooling, a projection with a bias) and SigLIP's initial logit scale
#: (10) and bias (−10). The image tower is open_clip's own ViT (SigLIP's is a timm one; what the
#: methods see of it, a tower to encode and tune, is the same). It keeps CLIP's BPE tokenizer (a
#: SigLIP's sentencepiece vocabulary would need a download).
TINY_SIGLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32, "init_logit_scale": math.log(10.0), "init_logit_bias": -10.0,
    "vision_cfg": TINY_CLIP_CONFIG["vision_cfg"],
    "text_cfg": {**TINY_CLIP_CONFIG["text_cfg"], "no_causal_mask": True, "pool_type": "last", "proj_bias": True,
                 "norm_kwargs": {"eps": 1e-6}},
}

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40)}


def _build_tiny(config: dict[str, Any], seed: int, *, siglip: bool) -> Any:
    """A seeded random open_clip model of ``config`` (``CustomTextCLIP`` for SigLIP) and its tokenizer."""
    import open_clip
    import torch
    from open_clip.model import CLIP, CustomTextCLIP

    torch.manual_seed(seed)
    model = (CustomTextCLIP if siglip else CLIP)(**config)
    return model, open_clip.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])


def build_tiny_clip(seed: int = 0) -> Any:
    return _build_tiny(TINY_CLIP_CONFIG, seed, siglip=False)


def build_tiny_siglip(seed: int = 0) -> Any:
    return _build_tiny(TINY_SIGLIP_CONFIG, seed, siglip=True)


def load_tiny_clip(name: str, device: Any, seed: int = 0) -> Any:
    from rlcf_bench.tta.vlm import OpenClipVLM

    model, tokenizer = build_tiny_clip(seed)
    return OpenClipVLM(model.to(device), tokenizer, name=name, image_size=32, version=f"seed{seed}")


def load_tiny_siglip(name: str, device: Any, seed: int = 0) -> Any:
    """``tiny-siglip``, normalised as SigLIP's weights expect (mean = std = 0.5)."""
    from rlcf_bench.tta.vlm import OpenClipVLM

    model, tokenizer = build_tiny_siglip(seed)
    return OpenClipVLM(model.to(device), tokenizer, name=name, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                       version=f"seed{seed}")


class TinyColors:
    """``n`` images of 40×48 pixels, class = dominant colour, deterministic per index."""

    classnames = tuple(COLORS)
    templates = ("a photo of a {}.",)

    def __init__(self, n: int = 16) -> None:
        if int(n) < 1:
            raise ValueError(f"n must be a positive number of samples, got {n}")
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def sample_id(self, index: int) -> str:
        return f"tiny-{index:04d}"

    def label(self, index: int) -> int:
        return index % len(COLORS)

    def load_image(self, index: int) -> Any:
        import torch

        g = torch.Generator().manual_seed(index)
        rgb = torch.tensor(COLORS[self.classnames[self.label(index)]], dtype=torch.float32).view(3, 1, 1)
        img = rgb + 25.0 * torch.randn(3, 40, 48, generator=g)
        return img.clamp(0, 255).to(torch.uint8)


#: For each task the fixture serves: the keyword arguments of a method's contract run on it
#: (``rlcf_bench.testing.MethodContract``: dataset, policy model, protocol overrides and the samples
#: a run stores; the reward model / teacher is ``tiny-clip-teacher``). A task added to the fixture
#: adds its entry here.
CONTRACT_FIXTURES: dict[str, dict[str, Any]] = {
    "classification": {"dataset": "tiny-colors", "model": "tiny-clip", "samples": 6,
                       "protocol": (("n_views", 8), ("selection_ratio", 0.25), ("limit", 6))},
    "retrieval": {"dataset": "tiny-captions", "model": "tiny-clip", "samples": 6,
                  "protocol": (("limit", 3),)},  # 3 queries per direction
    # beam search makes the captioning episode the costliest: 4 samples in batches of 2 (two stores)
    "captioning": {"dataset": "tiny-captioning", "model": "tiny-captioner", "samples": 4, "batch_size": 2,
                   "protocol": (("limit", 4), ("meteor", False))},
}


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    return [ModelSpec(name="tiny-clip", version="seed0", load=load_tiny_clip,
                      description="random tiny open_clip CLIP for smoke tests (numbers are meaningless)"),
            ModelSpec(name="tiny-clip-teacher", version="seed1", load=lambda name, device: load_tiny_clip(name, device, 1),
                      description="tiny-clip's architecture with other random weights: a reward model / teacher that "
                                  "is not the policy itself (smoke tests)"),
            ModelSpec(name="tiny-siglip", version="seed0", load=load_tiny_siglip,
                      description="random tiny open_clip SigLIP (logit bias, sigmoid-trained architecture) for smoke "
                                  "tests (numbers are meaningless)"),
            ModelSpec(name="tiny-captioner", version="seed0", load=lambda name, device: build_tiny_captioner(device),
                      kind="captioner",
                      description="random tiny ClipCap (tiny-clip → mapper → 2-layer OPT) for smoke tests")]


#: ``--data-param n=N``: how many images (at least one).
N_RULE = {"n": ParamRule(int, Range(ge=1))}


def _color_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(name="tiny-colors", version="1", task_kinds=frozenset({"classification"}),
                        build=lambda root=None, n=16: TinyColors(int(n)), params={"n": 16}, param_rules=N_RULE,
                        description="16 generated colour patches, 4 classes (smoke tests)"),
            DatasetSpec(name="tiny-captioning", version="1", task_kinds=frozenset({"captioning"}),
                        build=lambda root=None, n=6: TinyCaptioningSet(int(n)), params={"n": 6}, param_rules=N_RULE,
                        description="6 generated colour patches with 3 reference captions each (captioning smoke tests)")]


class TinyCaptions(TinyColors):
    """``tiny-captions``: the ``tiny-colors`` patches as a retrieval set. Image ``i`` has one
    caption when ``i % 3 == 0`` and two otherwise (so image→text has several ground truths)."""

    @property
    def name(self) -> str:
        return "tiny-captions"

    def image_id(self, index: int) -> str:
        return self.sample_id(index)

    def _pairs(self) -> list[tuple[str, int]]:
        out = []
        for i in range(self.n):
            colour = self.classnames[self.label(i)]
            out.append((f"a {colour} square number {i}", i))
            if i % 3:
                out.append((f"a photo of a {colour} patch", i))
        return out

    @property
    def captions(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self._pairs())

    @property
    def caption_image(self) -> tuple[int, ...]:
        return tuple(i for _, i in self._pairs())


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    return _color_datasets() + [DatasetSpec(name="tiny-captions", version="1", task_kinds=frozenset({"retrieval"}),
                        build=lambda root=None, n=8: TinyCaptions(int(n)), params={"n": 8}, param_rules=N_RULE,
                        description="8 generated colour patches with 1-2 captions each (retrieval smoke tests)")]


# --------------------------------------------------------------------------------------------
# Captioning fixtures: ``tiny-captioning`` (the colour patches with reference captions) and
# ``tiny-captioner`` (tiny-clip → random mapper → random 2-layer OPT, BPE trained on the captions)
# --------------------------------------------------------------------------------------------

TINY_CAPTION_TEMPLATES = ("a {} patch.", "a photo of a {} square.", "a {} image.")


class TinyCaptioningSet(TinyColors):
    """``tiny-captioning``: the ``tiny-colors`` images with three reference captions each."""

    def references(self, index: int) -> list[str]:
        colour = self.classnames[self.label(index)]
        return [t.format(colour) for t in TINY_CAPTION_TEMPLATES]


def tiny_caption_corpus() -> list[str]:
    return [t.format(c) for c in COLORS for t in TINY_CAPTION_TEMPLATES]


def build_tiny_captioner(device: Any = "cpu", seed: int = 0, clip: Any = None, name: str = "tiny-captioner") -> Any:
    """A random tiny ClipCap captioner (prefix 4 tokens of width 64, 2-layer OPT of width 64)."""
    import tempfile

    import torch
    from transformers import OPTForCausalLM

    from rlcf_bench_models._clipcap.mapper import MapperConfig, TransformerMapper
    from rlcf_bench_models._clipcap.model import CaptionerSettings, ClipCaptioner, tiny_opt_config
    from rlcf_bench_models._clipcap.tokenizer import load_tokenizer, train_bpe

    if clip is None:
        clip = load_tiny_clip("tiny-clip", device)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = load_tokenizer(train_bpe(tiny_caption_corpus(), tmp, vocab_size=300, min_frequency=1))
    torch.manual_seed(seed)
    mcfg = MapperConfig(prefix_dim=TINY_CLIP_CONFIG["embed_dim"], dim=64, clip_length=4, prefix_length=4, layers=1,
                        heads=2)
    mapper = TransformerMapper(mcfg)
    for p in mapper.parameters():
        p.requires_grad_(False)
    decoder = OPTForCausalLM(tiny_opt_config(len(tokenizer), hidden=64, layers=2, heads=2, ffn=128, max_positions=40))
    settings = CaptionerSettings(kind="clipcap", clip_model="tiny-clip", mapper=mcfg, max_new_tokens=8,
                                 tta={"k": 4, "lr": 1e-3})
    return ClipCaptioner(clip, mapper.eval(), decoder, tokenizer, settings, name=name, version=f"seed{seed}").to(device)
