"""The CLIP-score reward of any CLIP model or weighted ensemble, as a reward-model component.

``--reward-model ViT-L-14@openai`` or ``--reward-model m1*0.6+m2*0.4``: each member's CLIPScore
(``2.5 · max(0, cos)``), weighted and summed (:class:`rlcf_bench.tta.reward.CLIPReward`). Named
ensembles (``rlcf-s``) register their members and use :func:`clip_score` as their builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlcf_bench import RewardModel, RewardModelSpec, hookimpl


def clip_score(members: Sequence[tuple[Any, float]], *, name: str, policy_mean: Sequence[float],
               policy_std: Sequence[float]) -> RewardModel:
    """The weighted CLIPScore of ``members`` (torch is imported only when a reward is built)."""
    from rlcf_bench.tta.reward import CLIPReward

    return CLIPReward(members, name=name, policy_mean=policy_mean, policy_std=policy_std)


def _any_ensemble(name: str) -> bool:
    return all(part.partition("*")[0].strip() for part in name.split("+"))


@hookimpl
def rlcfb_register_reward_models() -> list[RewardModelSpec]:
    return [RewardModelSpec(name="clip-score", version="1", build=clip_score, accepts=_any_ensemble,
                            description="CLIPScore of any model or weighted ensemble: MODEL or M1*W1+M2*W2")]
