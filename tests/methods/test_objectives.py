"""The shared TTA objectives: selection, marginal entropy, reward post-processing, REINFORCE."""

from __future__ import annotations

import math

import pytest
import torch

from rlcf_bench.tta.objectives import (
    CLIPRewardObjective,
    marginal_entropy,
    process_rewards,
    reinforce_loss,
    select_confident,
    top_k_actions,
    view_entropy,
)


def test_view_entropy_matches_definition():
    z = torch.randn(3, 5, 7)
    p = z.softmax(-1)
    assert torch.allclose(view_entropy(z), -(p * p.log()).sum(-1), atol=1e-6)


def test_select_confident_keeps_lowest_entropy_views_per_sample():
    z = torch.zeros(2, 6, 4)  # uniform → maximal entropy
    z[0, 4, 1] = 9.0          # sample 0: view 4 most confident, then view 1
    z[0, 1, 2] = 5.0
    z[1, 0, 3] = 7.0          # sample 1: view 0, then view 5
    z[1, 5, 0] = 3.0
    sel = select_confident(z, 2)
    assert sel.tolist() == [[4, 1], [0, 5]]
    # ties resolve to the lower view index (stable), so the choice is deterministic
    assert select_confident(torch.zeros(1, 5, 3), 3).tolist() == [[0, 1, 2]]
    with pytest.raises(ValueError):
        select_confident(z, 7)


def test_select_confident_count_follows_protocol():
    from rlcf_bench.types import RunProtocol

    assert RunProtocol(n_views=64, selection_ratio=0.1).n_selected == 6
    assert RunProtocol(n_views=8, selection_ratio=0.1).n_selected == 1


def test_marginal_entropy_equals_direct_computation():
    torch.manual_seed(0)
    z = 4 * torch.randn(3, 6, 10)
    p_bar = z.softmax(-1).mean(1)
    direct = -(p_bar * p_bar.log()).sum(-1)
    assert torch.allclose(marginal_entropy(z), direct, atol=1e-5)
    # it is the entropy of the *average*, not the average entropy
    assert not torch.allclose(marginal_entropy(z), view_entropy(z).mean(1), atol=1e-3)
    # stable for extreme logits (log space, clamped): finite and ≈ 0 for a confident one-hot
    extreme = torch.full((1, 2, 5), -1e4)
    extreme[..., 2] = 1e4
    h = marginal_entropy(extreme)
    assert torch.isfinite(h).all() and h.abs().max() < 1e-4


def test_process_rewards_view_baseline_subtracts_mean_of_k():
    r = torch.tensor([[[1.0, 2.0, 3.0], [0.5, 0.5, 2.0]]])  # [B=1, N=2, K=3]
    adv = process_rewards(r)
    assert torch.allclose(adv, torch.tensor([[[-1.0, 0.0, 1.0], [-0.5, -0.5, 1.0]]]))
    assert torch.allclose(adv.sum(-1), torch.zeros(1, 2))
    sample = process_rewards(r, baseline="sample")
    assert torch.allclose(sample, r - r.mean())
    assert torch.equal(process_rewards(r, baseline="none"), r)
    std = process_rewards(r, normalise_std=True)
    assert torch.allclose(std, adv / (r.std(-1, keepdim=True) + 1e-5))
    k1 = torch.tensor([[[0.7], [0.2]]])  # K = 1: nothing subtracted, as the original
    assert torch.equal(process_rewards(k1), k1)
    with pytest.raises(ValueError):
        process_rewards(r, baseline="bogus")


def test_reward_is_clamped_weighted_clipscore():
    from rlcf_bench.tta.reward import CLIPReward

    class _M:
        mean = (0.0, 0.0, 0.0)
        std = (1.0, 1.0, 1.0)
        image_size = 4
        device = torch.device("cpu")

    reward = CLIPReward([(_M(), 0.5), (_M(), 0.25)], name="x", policy_mean=_M.mean, policy_std=_M.std)
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    txt = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]), dim=-1)
    s = reward.score([img, img], [txt, txt])
    # pair 0: cos = 1/√2 → 2.5·0.707·(0.5 + 0.25); pair 1: cos = −1 → clamped to 0
    assert torch.allclose(s, torch.tensor([2.5 * math.sqrt(0.5) * 0.75, 0.0]), atol=1e-6)


def test_reinforce_loss_value():
    z = torch.tensor([[[2.0, 1.0, 0.0, -1.0]]])
    actions = torch.tensor([[[0, 1]]])
    adv = torch.tensor([[[0.3, -0.3]]])
    logp = z.log_softmax(-1)[0, 0]
    expected = -(0.3 * logp[0] - 0.3 * logp[1]) / 2
    assert torch.allclose(reinforce_loss(z, actions, adv), expected.view(1))


def test_reinforce_step_raises_probability_of_higher_reward_class():
    """One gradient step on the REINFORCE loss with a per-view mean baseline moves probability
    towards the top-K class with the highest reward (here class 2, ranked third by the policy)."""
    z = torch.tensor([[[3.0, 2.5, 2.0, 0.0, -1.0]]], requires_grad=True)
    actions = top_k_actions(z, 3)
    assert actions.tolist() == [[[0, 1, 2]]]
    reward_of_class = torch.tensor([0.1, 0.2, 0.9, 0.0, 0.0])
    rewards = reward_of_class[actions]
    loss = reinforce_loss(z, actions, process_rewards(rewards)).sum()
    loss.backward()
    before = z.detach().softmax(-1)[0, 0]
    after = (z.detach() - 1.0 * z.grad).softmax(-1)[0, 0]
    assert after[2] > before[2]
    assert after[0] < before[0]


def test_reward_objective_with_tiny_reward_model(make_ctx):
    """End to end through the reward model: the objective's rewards equal the reward model's
    score of (selected view, action-class prompt), and a step raises the best-rewarded class."""
    from rlcf_bench.tta.episode import reward_text_features

    ctx, task = make_ctx(n_views=4, selection_ratio=0.5)
    prompts = [f"a photo of a {c}." for c in ctx.classnames]
    text = reward_text_features(ctx, prompts)
    obj = CLIPRewardObjective(ctx.reward_model, text, k=3)
    views = task.make_batch([(0, "tiny-0000"), (1, "tiny-0001")], ctx.model, ctx.device).views
    selected = views[:, :2]
    obj.begin(selected)
    z = torch.randn(2, 2, len(prompts), requires_grad=True)
    loss = obj.loss(z)
    assert loss.shape == (2,)
    r = obj.last_rewards
    a = top_k_actions(z, 3)
    img = ctx.reward_model.image_features(selected[1, 0:1])
    direct = ctx.reward_model.score(img * 1, [text[0][a[1, 0, 2]].unsqueeze(0)])
    assert torch.allclose(r[1, 0, 2], direct[0], atol=1e-6)
    assert (r >= 0).all()
