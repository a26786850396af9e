"""The micro suite's datasets: generated test sets of fixed size per domain.

Names: ``micro-<domain>`` for the domains ``photo`` (in-domain test), ``sketch``, ``rendition``,
``hard`` and ``resampled``, and ``micro-<corruption>`` for ``noise``, ``blur``, ``contrast`` and
``pixelate``, whose severity (1–5, default 3) is a dataset parameter (``severity``) applied to the
photo test scenes, as ImageNet-C corrupts ImageNet's validation images. Every dataset takes ``n``
(test-set size, default 500) and ``seed`` (default 0). ``root`` is ignored: nothing is read from
or written to disk. Images are generated on first use and kept in memory; a process keeps the
last few generated sets (:func:`_generated`), so the runs of a suite that share a domain render it
once per process instead of once per run (rendering costs milliseconds per image).

One object serves all three task kinds: classification (``classnames``, ``label``), retrieval
(``captions``/``caption_image``: four descriptive captions per image) and captioning
(``references``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, lru_cache
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import ParamRule, Range

DEFAULT_N = 500
DEFAULT_SEVERITY = 3
#: What ``--data-param`` may set (checked before anything runs; severity only on corruptions).
PARAM_RULES = {"n": ParamRule(int, Range(ge=1)), "seed": ParamRule(int, Range(ge=0)),
               "severity": ParamRule(int, Range(ge=1, le=5))}
TEMPLATES = ("a photo of a {}.",)
GENERATED_KEPT = 12  # generated sets a process keeps (the default suite has 6 domains; ~6 MB per 500 images)


@lru_cache(maxsize=GENERATED_KEPT)
def _generated(domain: str, n: int, seed: int, split: str, severity: int) -> tuple[Any, tuple[Any, ...]]:
    """The generated images (uint8 ``[N, 3, 64, 64]``, never handed out: datasets copy them) and
    scenes of a domain; deterministic, so one process renders each set once."""
    import torch

    from . import generator as gen

    g = gen.generate(domain, n, seed=seed, split=split, severity=severity)
    return torch.from_numpy(g.images).permute(0, 3, 1, 2).contiguous(), tuple(g.scenes)


class MicroDataset:
    """A generated micro-suite test set (classification, retrieval and captioning views)."""

    templates = TEMPLATES

    def __init__(self, domain: str, n: int = DEFAULT_N, seed: int = 0, severity: int = DEFAULT_SEVERITY,
                 split: str = "test") -> None:
        from . import generator as gen

        gen.parse_domain(domain)  # validates the name
        if int(n) < 1:
            raise ValueError(f"n must be positive, got {n}")
        if domain in gen.CORRUPTIONS and not 1 <= int(severity) <= 5:
            raise ValueError(f"severity must be 1..5, got {severity}")
        self.domain = domain
        self.n = int(n)
        self.seed = int(seed)
        self.severity = int(severity)
        self.split = split
        self.classnames: tuple[str, ...] = gen.SHAPES
        self._gen = gen

    @property
    def name(self) -> str:
        suffix = f"-{self.severity}" if self.domain in self._gen.CORRUPTIONS else ""
        return f"micro-{self.domain}{suffix}"

    @cached_property
    def _data(self) -> Any:
        images, scenes = _generated(self.domain, self.n, self.seed, self.split, self.severity)
        return images.clone(), list(scenes)  # this dataset's own copy: the kept set stays pristine

    @property
    def images(self) -> Any:
        """All images, uint8 ``[N, 3, 64, 64]``."""
        return self._data[0]

    @property
    def scenes(self) -> list[Any]:
        scenes: list[Any] = self._data[1]
        return scenes

    def __len__(self) -> int:
        return self.n

    def _check(self, index: int) -> int:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.name} with {self.n} images")
        return index

    # classification / captioning
    def sample_id(self, index: int) -> str:
        return f"{self.name}/{self.split}/{self.seed}/{self._check(index):05d}"

    def label(self, index: int) -> int:
        return int(self.scenes[self._check(index)].label)

    def load_image(self, index: int) -> Any:
        return self.images[self._check(index)]

    # captioning
    def references(self, index: int) -> list[str]:
        return self._gen.references(self.scenes[self._check(index)])

    # retrieval
    def image_id(self, index: int) -> str:
        return self.sample_id(index)

    @cached_property
    def _captions(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        caps, owner = [], []
        for i, scene in enumerate(self.scenes):
            for text in self._gen.references(scene):
                caps.append(text)
                owner.append(i)
        return tuple(caps), tuple(owner)

    @property
    def captions(self) -> tuple[str, ...]:
        return self._captions[0]

    @property
    def caption_image(self) -> tuple[int, ...]:
        return self._captions[1]


_DESCRIPTIONS = {
    "photo": "in-domain test set of the training domain (ImageNet analogue)",
    "sketch": "outlines only, pencil on paper (ImageNet-Sketch analogue)",
    "rendition": "other palette, cartoon style, patterned backgrounds (ImageNet-R analogue)",
    "hard": "small objects, clutter, occlusion, busy backgrounds (ImageNet-A analogue)",
    "resampled": "same generator, new sampling seed and mildly shifted parameters (ImageNet-V2 analogue)",
    "noise": "Gaussian noise on the photo test scenes, severity 1-5 (ImageNet-C analogue)",
    "blur": "Gaussian blur on the photo test scenes, severity 1-5 (ImageNet-C analogue)",
    "contrast": "reduced contrast on the photo test scenes, severity 1-5 (ImageNet-C analogue)",
    "pixelate": "pixelation on the photo test scenes, severity 1-5 (ImageNet-C analogue)",
}

TASK_KINDS = frozenset({"classification", "retrieval", "captioning"})


def _builder(domain: str) -> Callable[..., MicroDataset]:
    def build(root: Any = None, **params: Any) -> MicroDataset:
        return MicroDataset(domain, **params)

    return build


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    from .generator import CORRUPTIONS, DATA_VERSION, DOMAINS

    specs = []
    for domain in DOMAINS + CORRUPTIONS:
        params: dict[str, Any] = {"n": DEFAULT_N, "seed": 0}
        if domain in CORRUPTIONS:
            params["severity"] = DEFAULT_SEVERITY
        specs.append(DatasetSpec(
            name=f"micro-{domain}", version=DATA_VERSION, task_kinds=TASK_KINDS, build=_builder(domain),
            root_name=None, params=params, description=f"micro suite: {_DESCRIPTIONS[domain]}",
            param_rules=PARAM_RULES,
        ))
    return specs
