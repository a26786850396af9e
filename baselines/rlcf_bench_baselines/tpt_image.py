"""TPT with image-encoder tuning (the RLCF paper's "TPT" backbone baseline, ``tune_cls_tpt.py``).

Episode (``docs/original-code.md#image-encoder-tuning``): all parameters of the policy's image tower
are tuned (AdamW lr 1e-5,
wd 5e-4, 3 steps) on the entropy of the averaged distribution of the 10 % most confident views;
class text features are computed once per run; episodic reset; prediction on view 0.

Choices (``docs/original-code.md#known-quirks-and-bugs``):

* The original file imports a non-existent module ``policy``
  (``docs/original-code.md#missing-policy-module``); nothing of it is needed.
* Class prompts "a photo of a <class>." by default; ``-m underscore_prompt=true`` reproduces the
  original's literal "a_photo_of_a <class>." (``docs/original-code.md#underscored-prompts``) for
  parity of backbone-tuning numbers.
* Wasted work removed: confident views are chosen by a no-grad forward of all views, then only
  the selected views are forwarded/back-propagated (the original back-propagates a 64-view
  graph at step 0). Mathematically the same update.
* The tower is kept in eval mode (the original calls ``train()``; no effect for ViTs, which have
  no dropout or batch norm; for ResNet towers eval keeps frozen BatchNorm statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import MethodContext, MethodSpec, hookimpl
from rlcf_bench.tta.episode import ImageTuningConfig, ImageTuningMethod, entropy_objective
from rlcf_bench.tta.objectives import Objective


@dataclass(frozen=True)
class TPTImageConfig(ImageTuningConfig):
    steps: int = 3
    lr: float = 1e-5
    weight_decay: float = 5e-4


class TPTImage(ImageTuningMethod):
    """TPT objective (marginal entropy) tuning the image encoder."""

    name = "tpt-image"
    version = "1"
    config_cls = TPTImageConfig
    tasks = frozenset({"classification"})
    paper = "Zhao et al., Test-Time Adaptation with CLIP Reward (ICLR 2024), TPT backbone baseline"

    def make_objective(self, ctx: MethodContext) -> Objective:
        return entropy_objective(ctx)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(TPTImage)]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The name a paper's table prints (``report --label tpt-image=...`` overrides it)."""
    return {TPTImage.name: "TPT (image encoder)"}
