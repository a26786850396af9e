"""Test-time objectives shared by the classification TTA methods (TPT, RLCF, ...).

Every function works on a leading batch of *independent samples*: logits are ``[B, N, C]``
(B samples, N views each, C classes) and losses are returned per sample (``[B]``). A batched
episode sums the per-sample losses, so each sample's gradient is exactly what it would be alone
(see :mod:`rlcf_bench.tta.episode`).

* :func:`select_confident` — TPT's confidence selection
  (``docs/original-code.md#prompt-tuning-episode``): the
  ``n`` lowest-entropy views of each sample.
* :func:`marginal_entropy` — entropy of the view-averaged distribution, in log space
  (``log p̄ = logsumexp_i log softmax(z_i) − log N``) as TPT computes it.
* :func:`process_rewards` — RLCF's reward post-processing (``docs/original-code.md#reward``):
  subtract the mean of the
  K samples of the same view (default), or of all N·K pairs of the sample, optionally divide by
  the standard deviation; with K = 1 nothing is subtracted (as in the original).
* :func:`kl_divergence` — ``KL(p ‖ q)`` from log-probabilities (distillation losses).
* :func:`reinforce_loss` — ``−mean_{i,k} adv_ik · log π(a_ik | v_i)``: REINFORCE with the
  baseline already subtracted. The actions are the deterministic top-K classes
  (``docs/original-code.md#top-k-instead-of-sampling``), so
  this is a reward-weighted likelihood over the K most likely classes, not an unbiased
  policy-gradient estimate — kept for parity.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..lazy import LazyModule, no_grad

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)

if TYPE_CHECKING:  # pragma: no cover
    from ..types import RewardModel

SectionFn = Callable[[str], contextlib.AbstractContextManager[Any]]
#: Per-member reward-model features ``[B, N, D_j]`` of views ``[B, N, 3, S, S]``.
ViewFeaturesFn = Callable[["torch.Tensor"], list["torch.Tensor"]]


def reward_features_of(reward_model: RewardModel) -> ViewFeaturesFn:
    """``reward_model.image_features`` for views ``[B, N, 3, S, S]``: all B·N views in one call."""

    def features(views: torch.Tensor) -> list[torch.Tensor]:
        b, n = views.shape[:2]
        return [f.view(b, n, -1) for f in reward_model.image_features(views.flatten(0, 1))]

    return features

BaselineMode = str  # "view" | "sample" | "none"


def view_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` along the last axis, computed in fp32."""
    logp = logits.float().log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def select_confident(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Indices ``[B, n]`` of the ``n`` lowest-entropy views of each sample (``logits`` ``[B, V, C]``).

    A stable sort makes ties resolve to the lower view index, so the choice is deterministic.
    """
    if not 1 <= n <= logits.shape[1]:
        raise ValueError(f"cannot select {n} of {logits.shape[1]} views")
    ent = view_entropy(logits.detach())
    return torch.sort(ent, dim=1, stable=True).indices[:, :n]


def gather_views(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b]]`` for ``x`` ``[B, V, ...]`` and ``idx`` ``[B, N]`` → ``[B, N, ...]``."""
    rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
    return x[rows, idx.to(x.device)]


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H(mean_i softmax(z_i))`` per sample for ``logits`` ``[B, N, C]`` → ``[B]``.

    Log space: ``log p̄ = logsumexp_i log softmax(z_i) − log N``, clamped at the dtype's minimum
    (TPT does the same so that ``0 · log 0`` stays finite).
    """
    logp = logits.float().log_softmax(dim=-1)
    avg = torch.logsumexp(logp, dim=1) - log_count(logp.shape[1])
    avg = avg.clamp(min=torch.finfo(avg.dtype).min)
    return -(avg.exp() * avg).sum(dim=-1)


@functools.cache
def log_count(n: int) -> torch.Tensor:
    """``log n`` as a 0-dim fp32 tensor on the host, made once per ``n``: a host scalar joins a
    device operation without an upload (a fresh ``torch.tensor(..., device=cuda)`` per loss is a
    synchronising copy), and its bits are those of ``torch.log`` in fp32, as before."""
    return torch.log(torch.tensor(float(n)))


def top_k_actions(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` most probable classes of each view (``[B, N, C]`` → ``[B, N, k]``), no gradient."""
    return logits.detach().topk(k, dim=-1).indices


def process_rewards(rewards: torch.Tensor, *, baseline: BaselineMode = "view", normalise_std: bool = False,
                    eps: float = 1e-5) -> torch.Tensor:
    """Advantages from raw rewards ``[B, N, K]`` (the original's ``rewards_post_process``,
    ``docs/original-code.md#reward``).

    ``baseline="view"``: subtract the mean over the K samples of the same view (the original's
    default, ``process_batch=0``); ``"sample"``: the mean over all N·K pairs of the test sample
    (``process_batch=1``; per sample, so batching stays exact); ``"none"``: raw rewards.
    ``normalise_std`` also divides by ``std + eps`` over the same group (``reward_amplify=1``).
    With K = 1 the original subtracts nothing; so does this.
    """
    if baseline == "none" or rewards.shape[-1] == 1:
        return rewards
    if baseline == "view":
        dims: tuple[int, ...] = (-1,)
    elif baseline == "sample":
        dims = (-2, -1)
    else:
        raise ValueError(f"baseline={baseline!r}: expected 'view', 'sample' or 'none'")
    adv = rewards - rewards.mean(dim=dims, keepdim=True)
    if normalise_std:
        adv = adv / (rewards.std(dim=dims, keepdim=True) + eps)
    return adv


def reinforce_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Per-sample REINFORCE loss ``−mean_{i,k} adv_ik · log softmax(z_i)[a_ik]`` → ``[B]``.

    ``logits`` ``[B, N, C]``, ``actions``/``advantages`` ``[B, N, K]``; advantages carry no
    gradient. Equivalent to the original's mean over pairs of ``adv · CE(z_i, a_ik)``.
    """
    logp = logits.float().log_softmax(dim=-1).gather(-1, actions)
    return -(advantages.detach().to(logp.dtype) * logp).mean(dim=(-2, -1))


# --------------------------------------------------------------------------------------------
# Objectives as pluggable objects: what an episode minimises (see rlcf_bench.tta.episode)
# --------------------------------------------------------------------------------------------


def reward_section(section: SectionFn | None) -> contextlib.AbstractContextManager[Any]:
    """The ``reward`` timing section (reward/teacher compute), or nothing without a timer."""
    return section("reward") if section is not None else contextlib.nullcontext()


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p ‖ q) = Σ_c p_c (log p_c − log q_c)`` along the last axis, from log-probabilities.

    Classes with ``p_c = 0`` (``log p_c = −inf``, e.g. masked out) contribute exactly 0, also when
    ``log q_c = −inf`` there, and pass no gradient.
    """
    p = log_p.exp()
    term = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return term.sum(dim=-1)


class Objective(ABC):
    """What a TTA episode minimises over the selected views.

    ``begin`` is called once per episode, after the confident views are chosen, with their
    pixels ``[B, N, 3, S, S]`` (an objective that needs per-episode constants — the reward
    model's image features — computes them there, once). ``loss`` maps the current policy's
    logits of the selected views ``[B, N, C]`` to per-sample losses ``[B]``.
    """

    def begin(self, selected_views: torch.Tensor) -> None:  # noqa: B027 - optional
        pass

    @abstractmethod
    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ``[B]`` of the selected views' logits ``[B, N, C]``."""


class MarginalEntropyObjective(Objective):
    """TPT: entropy of the averaged distribution of the selected views."""

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        return marginal_entropy(logits)


class CLIPRewardObjective(Objective):
    """RLCF: top-K classes per view, CLIP reward ``2.5·max(0, cos)`` of (view, class prompt) from
    the frozen reward model, baseline subtraction, REINFORCE
    (``docs/original-code.md#prompt-tuning-episode``).

    ``text_features`` are the reward model's per-member class features ``[C, D_j]`` (computed once
    per run). The reward image features of the selected views are computed once per episode in
    ``begin``, by ``view_features`` (default: the reward model itself; the runs of an invocation
    share them through ``rlcf_bench.view_cache.reward_view_features``). Every reward-model call runs inside ``section("reward")`` so the runner can report
    the reward's share of the latency. ``entropy_reg`` adds ``w · marginal entropy`` (the
    original's ``--min_entropy_reg``, off by default).
    """

    def __init__(self, reward_model: RewardModel, text_features: list[torch.Tensor], *, k: int = 3,
                 baseline: BaselineMode = "view", normalise_std: bool = False, entropy_reg: float = 0.0,
                 section: SectionFn | None = None, view_features: ViewFeaturesFn | None = None) -> None:
        self.reward_model = reward_model
        self.view_features = view_features or reward_features_of(reward_model)
        self.text_features = text_features
        self.k = int(k)
        self.baseline = baseline
        self.normalise_std = normalise_std
        self.entropy_reg = float(entropy_reg)
        self.section = section
        self.image_features: list[torch.Tensor] | None = None
        self.last_rewards: torch.Tensor | None = None

    def _timed(self) -> contextlib.AbstractContextManager[Any]:
        return reward_section(self.section)

    def begin(self, selected_views: torch.Tensor) -> None:
        with self._timed():
            self.image_features = self.view_features(selected_views)

    @no_grad
    def rewards(self, actions: torch.Tensor) -> torch.Tensor:
        """Reward ``[B, N, K]`` of each (selected view, action class) pair."""
        assert self.image_features is not None, "begin() was not called for this episode"
        k = actions.shape[-1]
        with self._timed():
            img = [f.unsqueeze(2).expand(-1, -1, k, -1).reshape(-1, f.shape[-1]) for f in self.image_features]
            txt = [t[actions.reshape(-1).to(t.device)] for t in self.text_features]
            scores = self.reward_model.score(img, txt)
        return scores.view(actions.shape).to(actions.device)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        actions = top_k_actions(logits, self.k)
        rewards = self.rewards(actions)
        self.last_rewards = rewards
        adv = process_rewards(rewards, baseline=self.baseline, normalise_std=self.normalise_std)
        loss = reinforce_loss(logits, actions, adv)
        if self.entropy_reg:
            loss = loss + self.entropy_reg * marginal_entropy(logits)
        return loss


DistillLoss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class DistillationObjective(Objective):
    """Distillation from a frozen teacher (the RLCF paper's KD / DKD / ATKD baselines).

    ``begin`` computes the teacher's class logits of the selected views once per episode
    (``teacher.class_logits`` against its own class features ``text_features``, computed once per
    run), inside ``section("reward")`` so the teacher's share of the latency is reported; ``loss``
    applies ``loss_fn(student logits, teacher logits)`` → per-sample losses ``[B]``, in fp32.
    ``sigmoid``: the protocol's ``probability=sigmoid`` — the teacher's logits become ``log σ(z)``
    as the student's do (:mod:`rlcf_bench.tta.logits`), so both distributions are normalised sigmoids.
    """

    def __init__(self, teacher: RewardModel, text_features: list[torch.Tensor], loss_fn: DistillLoss, *,
                 section: SectionFn | None = None, view_features: ViewFeaturesFn | None = None,
                 sigmoid: bool = False) -> None:
        self.teacher = teacher
        self.sigmoid = sigmoid
        self.view_features = view_features or reward_features_of(teacher)
        self.text_features = text_features
        self.loss_fn = loss_fn
        self.section = section
        self.teacher_logits: torch.Tensor | None = None

    def begin(self, selected_views: torch.Tensor) -> None:
        b, n = selected_views.shape[:2]
        with reward_section(self.section):
            feats = [f.flatten(0, 1) for f in self.view_features(selected_views)]
            z = self.teacher.class_logits(feats, self.text_features).float().view(b, n, -1)
            self.teacher_logits = torch.nn.functional.logsigmoid(z) if self.sigmoid else z

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        assert self.teacher_logits is not None, "begin() was not called for this episode"
        return self.loss_fn(logits.float(), self.teacher_logits.to(logits.device))
