"""TPT with prompt tuning (Shu et al., NeurIPS 2022) under the shared RLCF/TPT protocol.

Episode (``docs/original-code.md#tpt``): 4 learnable context tokens initialised from "a photo of a"
(one context per
test sample), the protocol's views (64; view 0 = centre crop), the 10 % most confident views
selected once, ``steps`` AdamW steps on the entropy of their averaged distribution, episodic
reset, prediction on view 0.

Choices (``docs/original-code.md#known-quirks-and-bugs``):

* ``steps=1, lr=5e-3`` — TPT's own setting. The original ``tpt-prompt.sh`` sets ``tta_steps=0``
  (it evaluates zero-shot CLIP, ``docs/original-code.md#tpt-script-runs-zero-steps``); ``-m
  steps=0`` reproduces that.
* ``weight_decay=0.01`` — the original passes no weight decay, so PyTorch's AdamW default 0.01
  applies (``docs/original-code.md#tpt-weight-decay``); kept for parity with the published TPT numbers.
* No CoOp init by default (``-m coop=PATH`` loads ``state_dict['ctx']``).
* Wasted work removed (same mathematics): frozen view features once per sample, text prompts
  truncated to the longest end-of-text token, several samples adapted at once (exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import MethodContext, MethodSpec, hookimpl
from rlcf_bench.tta.episode import PromptTuningConfig, PromptTuningMethod, entropy_objective
from rlcf_bench.tta.objectives import Objective


@dataclass(frozen=True)
class TPTPromptConfig(PromptTuningConfig):
    steps: int = 1
    lr: float = 5e-3
    weight_decay: float = 0.01


class TPTPrompt(PromptTuningMethod):
    """TPT: test-time prompt tuning by marginal-entropy minimisation over confident views."""

    name = "tpt-prompt"
    version = "1"
    config_cls = TPTPromptConfig
    tasks = frozenset({"classification"})
    paper = "Shu et al., Test-Time Prompt Tuning for Zero-Shot Generalization in Vision-Language Models (NeurIPS 2022)"

    def make_objective(self, ctx: MethodContext) -> Objective:
        return entropy_objective(ctx)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(TPTPrompt)]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The name a paper's table prints (``report --label tpt-prompt=...`` overrides it)."""
    return {TPTPrompt.name: "TPT (prompt)"}
