"""Configuration shared by the tuning methods (each method file sets its own defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ...types import bounded


@dataclass(frozen=True)
class TuningConfig:
    """``steps`` AdamW steps per episode (0 → zero-shot with the initial state)."""

    steps: int = bounded(1, ge=0)
    lr: float = bounded(5e-3, gt=0)
    weight_decay: float = bounded(0.01, ge=0)


@dataclass(frozen=True)
class PromptTuningConfig(TuningConfig):
    """``ctx_init``: the words whose embeddings initialise the context (underscores → spaces, as
    the original); ``coop``: path of a CoOp checkpoint whose ``ctx`` replaces that init."""

    ctx_init: str = "a photo of a"
    coop: str | None = None


@dataclass(frozen=True)
class ImageTuningConfig(TuningConfig):
    """``underscore_prompt`` reproduces the original backbone-tuning class prompts
    "a_photo_of_a <class>." (``docs/original-code.md#underscored-prompts``), also used as the reward
    text; ``tune_norm`` restricts
    tuning to normalisation layers (the original's ``--tune_norm 1``, off)."""

    underscore_prompt: bool = False
    tune_norm: bool = False


@dataclass(frozen=True)
class RewardConfig:
    """RLCF's reward options: ``sample_k`` top-K classes per view; ``baseline`` ``view`` (mean of
    the K rewards of the view), ``sample`` (mean over the sample's N·K pairs) or ``none``;
    ``reward_std`` divides by the std (the original's ``reward_amplify``); ``entropy_reg`` adds
    ``w·`` TPT's entropy (the original's ``--min_entropy_reg``, 0.1 when on)."""

    sample_k: int = bounded(3, ge=1)
    baseline: str = "view"
    reward_std: bool = False
    entropy_reg: float = bounded(0.0, ge=0)


@dataclass(frozen=True)
class DistillationConfig(ImageTuningConfig):
    """The RLCF paper's distillation baselines (``kd-tune.sh``): 3 AdamW steps, lr 1e-5, wd 5e-4."""

    steps: int = 3
    lr: float = 1e-5
    weight_decay: float = 5e-4
