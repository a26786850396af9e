"""RLCF with image-encoder tuning (``docs/original-code.md#image-encoder-tuning``) and its momentum
variant "-M" (``docs/original-code.md#momentum-start-point``).

Episode: all parameters of the policy's image tower are tuned (AdamW lr 1e-5, wd 5e-4, 3 steps)
with RLCF's objective (top-K = 3 classes of each of the 10 % most confident views, CLIP reward
``2.5·max(0, cos)``, mean-of-K baseline, REINFORCE); class text features of the policy and of
the reward model are computed once per run; prediction on view 0.

Momentum (``-m momentum=true``; the paper's RLCF-M / RLCF-S-M rows with ``--reward-model
rlcf-s``): after each sample is predicted, the adapted weights are folded into an EMA
(``momentum_mu``, default 0.9998 as ``rlcf-tune.sh``); every ``momentum_freq`` (64) samples the
episode start point becomes ``(1−w)·θ_clip + w·EMA`` (``momentum_w`` = 1). Each sample is still
an episode that starts from that start point, but the method now **carries state across
samples**: its result depends on the sample order (the protocol's, fixed and seeded) and on
samples coming one at a time (the runner gives a state-carrying method one sample at a time).
What ``reset`` means then: the runner's
``reset()`` restores the original weights θ_clip (so the model is left as found when the run
ends) and the start point is loaded when the next episode begins. With momentum the method
reports ``carries_state``, so a resumed run replays the stored samples first and its EMA equals
that of an uninterrupted run.

Choices (``docs/original-code.md#known-quirks-and-bugs``): class prompts "a photo of a <class>." by
default,
``-m underscore_prompt=true`` for the original's "a_photo_of_a <class>."
(``docs/original-code.md#underscored-prompts``; also the reward
text, as the original feeds the reward model the same token ids). Selection by a no-grad forward
of all views, then forward/backward of the selected views only (the original keeps the 64-view
graph at step 0; same update).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import Batch, MethodContext, MethodSpec, hookimpl
from rlcf_bench.tta.episode import (
    ImageEncoderTuner,
    ImageTuningConfig,
    ImageTuningMethod,
    RewardConfig,
    Tuner,
    clip_reward_objective,
)
from rlcf_bench.tta.objectives import Objective

from ._paper import PAPER


@dataclass(frozen=True)
class RLCFImageConfig(ImageTuningConfig, RewardConfig):
    steps: int = 3
    lr: float = 1e-5
    weight_decay: float = 5e-4
    momentum: bool = False
    momentum_mu: float = 0.9998
    momentum_freq: int = 64
    momentum_w: float = 1.0


class RLCFImage(ImageTuningMethod):
    """RLCF tuning the image encoder with CLIP-reward REINFORCE (optional momentum start point)."""

    name = "rlcf-image"
    version = "1"
    config_cls = RLCFImageConfig
    tasks = frozenset({"classification"})
    requires = frozenset({"reward_model"})
    paper = PAPER

    def make_tuner(self, ctx: MethodContext) -> Tuner:
        c = self.config
        return ImageEncoderTuner(ctx, c, momentum=c.momentum_mu if c.momentum else None,
                                 momentum_freq=c.momentum_freq, momentum_w=c.momentum_w)

    def make_objective(self, ctx: MethodContext) -> Objective:
        return clip_reward_objective(ctx, self.tuner.hand_crafted_prompts, self.config)

    @property
    def carries_state(self) -> bool:
        return bool(self.config.momentum)

    def after_predict(self, batch: Batch) -> None:
        if self.config.momentum and self.config.steps > 0:
            assert isinstance(self.tuner, ImageEncoderTuner)
            self.tuner.momentum_update()


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(RLCFImage)]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The name a paper's table prints (``report --label rlcf-image=...`` overrides it)."""
    return {RLCFImage.name: "RLCF (image encoder)"}
