"""Named reward models of the RLCF paper.

``rlcf-s`` — the RLCF-S ensemble (``docs/original-code.md#reward-ensemble-rlcf-s``): CLIP
ViT-L/14@336px, RN50x64 and ViT-L/14 (OpenAI
weights) with the original's rounded confidence weights 0.56 / 0.17 / 0.28 (they sum to 1.01, as
in the original). Each member clamps its own score before weighting.
"""

from __future__ import annotations

from rlcf_bench import RewardModelSpec, hookimpl
from rlcf_bench_models.clip_reward import clip_score

RLCF_S_MEMBERS: tuple[tuple[str, float], ...] = (
    ("ViT-L-14-336@openai", 0.56),
    ("RN50x64@openai", 0.17),
    ("ViT-L-14@openai", 0.28),
)


@hookimpl
def rlcfb_register_reward_models() -> list[RewardModelSpec]:
    return [RewardModelSpec(name="rlcf-s", version="1", members=RLCF_S_MEMBERS, build=clip_score,
                            description="RLCF-S ensemble: ViT-L/14@336 0.56, RN50x64 0.17, ViT-L/14 0.28")]
