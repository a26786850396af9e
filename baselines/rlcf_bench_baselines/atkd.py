"""ATKD: test-time distillation with standardised logits (the RLCF paper's "ATKD" row).

The KD episode (``baselines/rlcf_bench_baselines/kd.py``; :class:`rlcf_bench.tta.episode.DistillationMethod`) with the loss
of the RLCF code's ``atkd_distill_loss`` (version 1, multiplier 2): each view's logit row is
standardised, ``ẑ = m·(z − μ)/(σ + ε)`` (μ, σ the row's mean and population standard deviation,
computed without gradient; m = 2, ε = 1e-5), and the loss is ``mean_v σ_s,v² · KL(softmax(ẑ_t,v) ‖
softmax(ẑ_s,v))``: the student's own spread sets the per-view weight, so the effective temperature
adapts to each view.

``-m swapped_std_mean=true`` reproduces the official code exactly: it unpacks
``torch.std_mean`` (which returns (std, mean)) as (mean, std), so it computes
``ẑ = m·(z − σ)/(μ + ε)`` and weights by ``μ_s²``. That is a bug, but the shipped script
(``kd-tune.sh`` case 02) runs it, so the paper's ATKD row was probably produced with it; the
registered reference row says so. The default is the intended loss.

Other departures: the loss is in fp32 (the original under autocast). Teacher, prompts and
episode as ``kd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodSpec, ReferenceResult, hookimpl
from rlcf_bench.tta.episode import DistillationConfig, DistillationMethod
from rlcf_bench.tta.objectives import kl_divergence

from ._distillation_paper import PAPER, paper_table_references

EPS = 1e-5


@dataclass(frozen=True)
class ATKDConfig(DistillationConfig):
    multiplier: float = 2.0
    swapped_std_mean: bool = False


def standardise(logits: Any, *, multiplier: float = 2.0, swapped: bool = False) -> tuple[Any, Any]:
    """``(ẑ, weight)``: the standardised logits and the per-row weight (σ², or μ² when ``swapped``)
    of logits ``[..., C]``; the statistics carry no gradient."""
    import torch

    with torch.no_grad():
        std, mean = torch.std_mean(logits, dim=-1, correction=0, keepdim=True)
    centre, spread = (std, mean) if swapped else (mean, std)
    return (logits - centre) / (spread + EPS) * multiplier, spread[..., 0] ** 2


def atkd_loss(student: Any, teacher: Any, *, multiplier: float = 2.0, swapped: bool = False) -> Any:
    """Per-sample ATKD loss ``[B]`` of logits ``[B, N, C]`` (module docstring), mean over views."""
    z_s, weight = standardise(student, multiplier=multiplier, swapped=swapped)
    z_t, _ = standardise(teacher, multiplier=multiplier, swapped=swapped)
    return (weight * kl_divergence(z_t.log_softmax(-1), z_s.log_softmax(-1))).mean(-1)


class ATKD(DistillationMethod):
    """ATKD: distil the reward model into the image encoder with standardised, spread-weighted logits."""

    name = "atkd"
    version = "1"
    config_cls = ATKDConfig
    tasks = frozenset({"classification"})
    paper = PAPER

    def distill_loss(self, student: Any, teacher: Any) -> Any:
        return atkd_loss(student, teacher, multiplier=self.config.multiplier, swapped=self.config.swapped_std_mean)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(ATKD)]


@hookimpl
def rlcfb_register_references() -> list[ReferenceResult]:
    return paper_table_references("atkd", "ATKD", (70.51, 70.66, 65.54, 85.12, 53.56),
                                  note="probably produced with the swapped std/mean form (-m swapped_std_mean=true)")
