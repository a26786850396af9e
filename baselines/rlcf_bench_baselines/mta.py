"""MTA: MeanShift for test-time augmentation (Zanella & Ben Ayed, CVPR 2024).

No learning. The view embeddings of a sample are treated as samples of a density whose mode is
classified. Each view ``i`` has an inlierness score ``y_i`` and its own kernel bandwidth ``h_i``
(``h_i² = ½ · mean squared distance to its ⌊0.3·(N−1)⌋ nearest other views``); views agree
through ``A = P Pᵀ`` (``P`` the views' class distributions). Starting from ``y`` uniform and the
mode ``m`` at view 0, five outer rounds alternate

* inlierness (≤ 5 iterations, until ‖Δy‖ < 1e-6): ``y ← softmax((κ(m) + λ_q·A y) / λ_y)``;
* mode (≤ 5 iterations, until ‖Δm‖ < 1e-6): ``w = κ(m)·y``, ``m ← normalise(Σ w_i f_i / Σ w_i)``,

with ``κ_i(m) = exp(−‖f_i − m‖² / (2 h_i²))``; the prediction is ``s · m Tᵀ``. λ_y = 0.2,
λ_q = 4 (the official defaults, used for every dataset).

Departures from the official code (``MaxZanella/MTA``), and why:

* The class text features are computed once per run; the official forward re-encodes every
  class prompt for every test image (the same features, ≈ 3 TMAC per ImageNet image wasted).
* The solver runs in fp32 on fp32 features (the official code keeps fp16 features under CUDA
  autocast; the distances and the exponential are better in fp32; in fp32 on the CPU both agree
  within 5.4e-5 on the logits), with exact pairwise distances (no matrix-product shortcut, so a
  view's distance to itself is exactly 0); ``h_i²`` is floored at 1e-12 so that identical views
  cannot divide by zero. With a single view the mode is that view.
* Several samples are solved at once, each with its own convergence test (results do not depend
  on the batch size).
* Views: the common protocol's by default. The paper's own (64 views, crop + flip, no AugMix on
  any set, as the official ``augmix`` flag is tied to ``--tpt``) with
  ``--protocol-param view_policy=method``.

Parity: ``tests/parity/test_parity_mta.py`` checks the logits against the official ``solve_mta``
per sample (``docs/parity.md``).

No paper numbers are registered: none could be read from a primary source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodSpec, Predictions, ViewPolicy, hookimpl
from rlcf_bench.tta.episode import FrozenViewsMethod


@dataclass(frozen=True)
class MTAConfig:
    """The solver's constants (official defaults): ``lambda_y`` (entropy barrier on the scores),
    ``lambda_q`` (weight of the class-agreement term), ``outer``/``inner`` iteration caps,
    ``tol`` (inner convergence), ``knn_ratio`` (neighbours for the per-view bandwidth)."""

    lambda_y: float = 0.2
    lambda_q: float = 4.0
    outer: int = 5
    inner: int = 5
    tol: float = 1e-6
    knn_ratio: float = 0.3

    def __post_init__(self) -> None:
        if self.lambda_y <= 0 or self.outer < 1 or self.inner < 1 or not 0 < self.knn_ratio <= 1:
            raise ValueError("MTA needs lambda_y > 0, outer ≥ 1, inner ≥ 1 and 0 < knn_ratio ≤ 1")


def mta_bandwidth_sq(features: Any, knn_ratio: float) -> Any:
    """``h_i²`` ``[B, N]``: half the mean squared distance of each view to its ``⌊ratio·(N−1)⌋``
    (at least one) nearest other views."""
    import torch

    n = features.shape[1]
    d2 = torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    k = max(1, int(knn_ratio * (n - 1)))
    nearest = d2.sort(dim=-1).values[..., 1 : k + 1]  # column 0 is the view itself (distance 0)
    return (0.5 * nearest.mean(dim=-1)).clamp_min(1e-12)


def mta_kernel(mode: Any, features: Any, h2: Any) -> Any:
    """``κ_i(m) = exp(−‖f_i − m‖² / (2 h_i²))`` → ``[B, N]``."""
    return (-((features - mode[:, None]) ** 2).sum(-1) / (2 * h2)).exp()


def mta_mode(features: Any, probs: Any, config: MTAConfig = MTAConfig()) -> Any:
    """The MTA mode ``[B, E]`` of view features ``[B, N, E]`` (unit norm) with view class
    distributions ``[B, N, C]`` (module docstring). Each sample stops iterating on its own."""
    import torch
    import torch.nn.functional as F

    features = features.float()
    b, n, _ = features.shape
    if n < 2:
        return features[:, 0]
    h2 = mta_bandwidth_sq(features, config.knn_ratio)
    probs = probs.float()
    affinity = probs @ probs.transpose(1, 2)  # [B, N, N]
    y = torch.full((b, n), 1.0 / n, device=features.device)
    mode = features[:, 0]

    def converge(state: Any, update: Any) -> Any:
        active = torch.ones(b, dtype=torch.bool, device=features.device)
        for _ in range(config.inner):
            new = update(state)
            done = (new - state).norm(dim=-1) < config.tol
            state = torch.where(active[:, None], new, state)
            active = active & ~done
        # no early exit: asking whether every sample has converged is a host sync per iteration;
        # a converged sample's state is frozen by the mask, so the few extra iterations change nothing
        return state

    for _ in range(config.outer):
        kappa = mta_kernel(mode, features, h2)
        y = converge(y, lambda y_: ((kappa + config.lambda_q * (affinity @ y_[..., None])[..., 0])  # noqa: B023 (called at once, within this iteration)
                                    / config.lambda_y).softmax(-1))

        def mode_step(m: Any, y: Any = y) -> Any:
            w = mta_kernel(m, features, h2) * y
            return F.normalize((w[..., None] * features).sum(1) / w.sum(-1, keepdim=True), dim=-1)

        mode = converge(mode, mode_step)
    return mode


class MTA(FrozenViewsMethod):
    """MTA: classify the MeanShift mode of the view embeddings, with inlierness scores (no learning)."""

    name = "mta"
    version = "1"
    config_cls = MTAConfig
    tasks = frozenset({"classification"})
    paper = "Zanella and Ben Ayed, On the Test-Time Zero-Shot Generalization of Vision-Language Models: Do We Really Need Prompt Learning? (CVPR 2024)"
    view_policy = ViewPolicy(n_views=64, augmix=False)

    def decide(self, features: Any) -> Predictions:
        probs = self.view_logits(features).softmax(-1)
        mode = mta_mode(features, probs, self.config)
        return Predictions(logits=self.logits.product(mode, self.text.t()))


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(MTA)]
