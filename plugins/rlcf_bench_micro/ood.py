"""The micro suite's open-set data (``docs/open-set.md#the-micro-ood-domain``).

``micro-ood``: photo-style scenes whose objects are all shapes outside the label set
(:data:`~rlcf_bench_micro.generator.NOVEL_SHAPES`: pentagon, arrow, hourglass, semicircle,
trapezoid), classes the student never saw in training, prompts or captions. It is an OOD set,
the OOD member of the mix below, not a dataset of its own (no task runs on OOD images alone).

``micro-openset``: the open-set stream of the ``open-set`` task: the in-domain test set
``micro-photo`` (``n`` images, ``seed``) mixed with ``micro-ood`` at ``ood_ratio`` (default 0.5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl

from .data import DEFAULT_N, GENERATED_KEPT, MicroDataset
from .data import PARAM_RULES as MICRO_RULES

#: Seeds the OOD scenes apart from every domain's (``generator._DOMAIN_CODE`` stops at 5).
OOD_DOMAIN_CODE = 60


#: The ID set's parameters (``severity`` does not apply to the photo domain).
PARAM_RULES_ID = {k: v for k, v in MICRO_RULES.items() if k in ("n", "seed")}
#: OOD images the mix may draw from (each rendered on first use only, so the pool costs nothing).
OOD_POOL = 100_000


@lru_cache(maxsize=GENERATED_KEPT * DEFAULT_N)
def ood_image(seed: int, index: int) -> Any:
    """uint8 ``[3, 64, 64]`` image of novel-shape scene ``index`` (photo style), deterministic."""
    import numpy as np
    import torch

    from . import generator as gen

    rng = np.random.default_rng([int(seed), gen.SPLITS["test"], OOD_DOMAIN_CODE, int(index)])
    scene = gen.sample_scene(rng, "photo")
    objects = tuple(dataclasses.replace(o, shape=gen._choice(rng, gen.NOVEL_SHAPES)) for o in scene.objects)
    img = gen.render_scene(dataclasses.replace(scene, objects=objects), rng)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


class MicroOOD:
    """Novel-shape scenes: an OOD set (images and ids, no labels)."""

    def __init__(self, n: int = DEFAULT_N, seed: int = 0) -> None:
        if int(n) < 1:
            raise ValueError(f"n must be positive, got {n}")
        self.n, self.seed = int(n), int(seed)
        self.name = "micro-ood"

    def __len__(self) -> int:
        return self.n

    def sample_id(self, index: int) -> str:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for micro-ood with {self.n} images")
        return f"micro-ood/test/{self.seed}/{index:05d}"

    def load_image(self, index: int) -> Any:
        self.sample_id(index)  # range check
        return ood_image(self.seed, index).clone()


def _id_set(root: Any, params: Mapping[str, Any]) -> MicroDataset:
    return MicroDataset("photo", **params)


def _ood_set(root: Any, params: Mapping[str, Any]) -> MicroOOD:
    return MicroOOD(n=OOD_POOL, **params)


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    from rlcf_bench_tasks.openset_mix import open_set_spec

    from .generator import DATA_VERSION

    return [
        open_set_spec("micro-openset", DATA_VERSION, _id_set, {"micro-ood": _ood_set}, default_ood="micro-ood",
                      params={"n": DEFAULT_N, "seed": 0}, id_params=("n", "seed"), param_rules=PARAM_RULES_ID,
                      description="micro suite: open-set stream, micro-photo mixed with micro-ood (--task open-set)"),
    ]
