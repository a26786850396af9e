"""``tiny-clip`` (a seeded random open_clip model, 32×32 input) and ``tiny-colors`` (a generated
4-class dataset of solid colour patches with a little noise). Their numbers mean nothing; they
exist so the whole pipeline can be exercised in seconds."""

from __future__ import annotations

from typing import Any

from rlcf_bench import DatasetSpec, ModelSpec, hookimpl

TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40)}


def build_tiny_clip(seed: int = 0) -> Any:
    import open_clip
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**TINY_CLIP_CONFIG)
    tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CLIP_CONFIG["text_cfg"]["context_length"])
    return model, tokenizer


def load_tiny_clip(name: str, device: Any) -> Any:
    from rlcf_bench.vlm import OpenClipVLM

    model, tokenizer = build_tiny_clip()
    return OpenClipVLM(model.to(device), tokenizer, name=name, image_size=32, version="seed0")


class TinyColors:
    """``n`` images of 40×48 pixels, class = dominant colour, deterministic per index."""

    classnames = tuple(COLORS)
    templates = ("a photo of a {}.",)

    def __init__(self, n: int = 16) -> None:
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


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    return [ModelSpec(name="tiny-clip", version="seed0", load=load_tiny_clip,
                      description="random tiny open_clip CLIP for smoke tests (numbers are meaningless)")]


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(name="tiny-colors", version="1", task_kinds=frozenset({"classification"}),
                        build=lambda root=None, n=16: TinyColors(int(n)),
                        description="16 generated colour patches, 4 classes (smoke tests)")]
