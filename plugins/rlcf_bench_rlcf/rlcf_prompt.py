"""RLCF with test-time prompt tuning (Zhao et al., ICLR 2024); the original code
is described in ``docs/original-code.md``.

Episode (``docs/original-code.md#prompt-tuning-episode``): 4 learnable context tokens initialised
from "a photo of a" (one context per
test sample); the protocol's views; the 10 % most confident views selected once; for each
selected view the policy's top-K (K = 3) classes; reward ``R = 2.5·max(0, cos)`` of (view,
"a photo of a <class>.") from the frozen reward model (``--reward-model``; an ensemble such as
``rlcf-s`` works the same); advantage = reward − mean of the K rewards of the same view;
REINFORCE loss ``−mean adv·log π``; ``steps=3`` AdamW steps (lr 7e-3, wd 5e-4); episodic reset;
prediction on view 0.

Choices (``docs/original-code.md#known-quirks-and-bugs``):

* Actions are the deterministic top-K classes, recomputed at every step (kept,
  ``docs/original-code.md#top-k-instead-of-sampling``): this is a
  reward-weighted likelihood, not an unbiased policy gradient.
* No CoOp init by default — the paper's plain "RLCF" row. The shipped ``rlcf-prompt.sh`` loads
  CoOp weights ("RLCF + CoOp" row,
  ``docs/original-code.md#coop-initialisation-in-the-rlcf-script``): ``-m coop=PATH``.
  Fine-grained sets use ``-m steps=5``.
* Reward text = the hand-crafted prompts through the reward model's own text encoder, once per
  run; reward image features of the selected views once per sample (step 0), as the original.
* Wasted work removed (same mathematics): frozen view features once per sample, the step-0
  selection forward reused for the step-0 loss, truncated prompts, batched samples (exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import MethodContext, MethodSpec, hookimpl
from rlcf_bench.tta.episode import PromptTuningConfig, PromptTuningMethod, RewardConfig, clip_reward_objective
from rlcf_bench.tta.objectives import Objective

from ._paper import PAPER


@dataclass(frozen=True)
class RLCFPromptConfig(PromptTuningConfig, RewardConfig):
    steps: int = 3
    lr: float = 7e-3
    weight_decay: float = 5e-4


class RLCFPrompt(PromptTuningMethod):
    """RLCF: prompt tuning with CLIP-reward REINFORCE over the top-K classes of confident views."""

    name = "rlcf-prompt"
    version = "1"
    config_cls = RLCFPromptConfig
    tasks = frozenset({"classification"})
    requires = frozenset({"reward_model"})
    paper = PAPER

    def make_objective(self, ctx: MethodContext) -> Objective:
        return clip_reward_objective(ctx, self.tuner.hand_crafted_prompts, self.config)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(RLCFPrompt)]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The name a paper's table prints (``report --label rlcf-prompt=...`` overrides it)."""
    return {RLCFPrompt.name: "RLCF (prompt)"}
