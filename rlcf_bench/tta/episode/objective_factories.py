"""Objective factories: TPT's entropy, RLCF's CLIP reward, and the reward model's class-text and
view features they read (computed once per run, shared across the invocation's runs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ...types import MethodContext
from ..objectives import CLIPRewardObjective, MarginalEntropyObjective, Objective, reward_features_of
from .config import RewardConfig
from .state import sections

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


def entropy_objective(_ctx: MethodContext) -> Objective:
    return MarginalEntropyObjective()


def reward_text_features(ctx: MethodContext, prompts: Sequence[str]) -> list[torch.Tensor]:
    """The reward model's per-member features of the class prompts, computed once per run."""
    assert ctx.reward_model is not None, "this method needs --reward-model"
    key = ("reward_text_features", ctx.reward_model.name, tuple(prompts))
    if key not in ctx.cache:
        with sections(ctx)("reward"):
            ctx.cache[key] = [f.to(ctx.device) for f in ctx.reward_model.text_features(list(prompts))]
    return ctx.cache[key]  # type: ignore[no-any-return]


def shared_reward_features(ctx: MethodContext) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The reward model's features of views ``[B, N, 3, S, S]``, shared by the invocation's runs
    (:func:`rlcf_bench.view_cache.reward_view_features`; computed here without that cache)."""
    from ...view_cache import reward_view_features

    reward_model = ctx.reward_model
    assert reward_model is not None, "this method needs --reward-model"
    compute = reward_features_of(reward_model)
    return lambda views: reward_view_features(ctx, reward_model, views, compute)


def clip_reward_objective(ctx: MethodContext, prompts: Sequence[str], config: RewardConfig) -> Objective:
    """RLCF's objective with the reward text = the policy's hand-crafted class prompts."""
    if config.sample_k < 1:
        raise ValueError("sample_k must be ≥ 1")
    if config.baseline not in {"view", "sample", "none"}:
        raise ValueError(f"baseline={config.baseline!r}: expected view, sample or none")
    assert ctx.reward_model is not None, "this method needs --reward-model"
    return CLIPRewardObjective(
        ctx.reward_model, reward_text_features(ctx, prompts), k=min(config.sample_k, len(prompts)),
        baseline=config.baseline, normalise_std=config.reward_std, entropy_reg=config.entropy_reg,
        section=sections(ctx), view_features=shared_reward_features(ctx),
    )
