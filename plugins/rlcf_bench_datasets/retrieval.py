"""Image–text retrieval test sets: COCO 2014 and Flickr30k Karpathy test splits (LAVIS format).

Layout (``docs/original-code.md#retrieval-data``): ``coco2014/coco_karpathy_test.json`` with images
under ``coco2014/``
(paths such as ``val2014/COCO_val2014_000000391895.jpg``) and
``flickr30k/annotations/flickr30k_test.json`` with images under ``flickr30k/``
(``flickr30k-images/1007129816.jpg``). Each file is a JSON list of
``{"image": relpath, "caption": [...]}``, one entry per image.

Flattening follows LAVIS ``RetrievalEvalDataset``: images in file order, and each image's
captions get consecutive caption indices in order (``caption_image[t]`` is the image of caption
``t``). Captions are pre-processed like LAVIS ``blip_caption`` (:func:`blip_caption`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import LayoutReport

from ._common import (
    COCO_KARPATHY,
    FLICKR30K_KARPATHY,
    KarpathySource,
    inspect_karpathy,
    merge_params,
    raise_if_problems,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

VERSION = "1"
MAX_WORDS = 50
_PUNCT = re.compile(r'[.!"()*#:;~]')
_SPACES = re.compile(r"\s{2,}")


def blip_caption(text: str, max_words: int = MAX_WORDS) -> str:
    """LAVIS ``blip_caption`` text processing: lower-case, each of ``. ! " ( ) * # : ; ~`` → space,
    collapse repeated whitespace, strip, keep at most ``max_words`` words."""
    text = _PUNCT.sub(" ", text.lower())
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


@dataclass
class RetrievalGallery:
    """A :class:`rlcf_bench.datasets.RetrievalData`: ``len`` is the number of images."""

    image_ids: tuple[str, ...]
    captions: tuple[str, ...]
    caption_image: tuple[int, ...]
    image_captions: tuple[tuple[int, ...], ...]
    base: Path = field(repr=False)
    name: str = ""

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_id(self, index: int) -> str:
        return self.image_ids[index]

    def path(self, index: int) -> Path:
        return self.base / self.image_ids[index]

    def load_image(self, index: int) -> torch.Tensor:
        from rlcf_bench.datasets import decode_image

        return decode_image(self.path(index))


def build_gallery(name: str, source: KarpathySource, root: Path | str | None) -> RetrievalGallery:
    report, base, entries = inspect_karpathy(name, source, root)
    raise_if_problems(report)
    assert base is not None and entries is not None
    captions: list[str] = []
    caption_image: list[int] = []
    image_captions: list[tuple[int, ...]] = []
    for j, entry in enumerate(entries):
        start = len(captions)
        for cap in entry.captions:
            captions.append(blip_caption(cap))
            caption_image.append(j)
        image_captions.append(tuple(range(start, len(captions))))
    return RetrievalGallery(tuple(e.image for e in entries), tuple(captions), tuple(caption_image),
                            tuple(image_captions), base, name)


def spec_for(name: str, source: KarpathySource) -> DatasetSpec:
    def check(root: Path | str | None, **params: Any) -> LayoutReport:
        merge_params(name, {}, params)
        return inspect_karpathy(name, source, root)[0]

    def build(root: Path | str | None, **params: Any) -> RetrievalGallery:
        merge_params(name, {}, params)
        return build_gallery(name, source, root)

    return DatasetSpec(
        name=name, version=VERSION, task_kinds=frozenset({"retrieval"}), build=build, check=check,
        root_name=source.folder,
        description=f"{source.title} ({source.standard_images} images, {source.standard_captions} captions), "
                    f"{source.folder}/{source.annotation}",
    )


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    return [spec_for("coco-retrieval", COCO_KARPATHY), spec_for("flickr30k-retrieval", FLICKR30K_KARPATHY)]
