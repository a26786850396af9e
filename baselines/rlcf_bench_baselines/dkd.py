"""DKD: test-time decoupled knowledge distillation (the RLCF code's ``--kd_loss DKD``).

The KD episode (``baselines/rlcf_bench_baselines/kd.py``; :class:`rlcf_bench.tta.episode.DistillationMethod`) with the
loss of Zhao et al., Decoupled Knowledge Distillation (CVPR 2022), the "target" being the
teacher's argmax class ``t`` of each view (there are no labels at test time):

* TCKD: KL between the binary (target, rest) masses ``b = (p_t, 1 − p_t)`` of teacher and student;
* NCKD: KL between their distributions renormalised over the non-target classes;
* loss ``= mean_v (α·TCKD + β·NCKD) · T²`` with α = 1, β = 0.5, T = 1 (the code's defaults).

``KL(p^T ‖ p^S) = TCKD + (1 − p^T_t)·NCKD``: DKD reweights the two parts (tested).

Departures from the official code, and why: the non-target distributions exclude the target
class exactly (the original pushes its logit down by 1000 before the softmax; the same in fp32
for logits below ~900·T); the loss is in fp32 (the original under autocast). The RLCF paper
reports no DKD row (code only), so no reference row is registered. Teacher, prompts and
episode as ``kd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodSpec, hookimpl
from rlcf_bench.tta.episode import DistillationConfig, DistillationMethod
from rlcf_bench.tta.objectives import kl_divergence

from ._distillation_paper import PAPER


@dataclass(frozen=True)
class DKDConfig(DistillationConfig):
    alpha: float = 1.0
    beta: float = 0.5
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: expected > 0")


def dkd_parts(student: Any, teacher: Any, target: Any, temperature: float = 1.0) -> tuple[Any, Any]:
    """``(TCKD, NCKD)`` per view (``[..., ]``, without the T² factor) of logits ``[..., C]`` and the
    target class indices ``[...]``."""
    import torch

    t = temperature
    mask = torch.nn.functional.one_hot(target, student.shape[-1]).bool()
    log_s, log_t = (student / t).log_softmax(-1), (teacher / t).log_softmax(-1)

    def binary(logp: Any) -> Any:  # log (p_target, p_rest), the rest as log-sum-exp of the others
        target_lp = logp.masked_fill(~mask, float("-inf")).logsumexp(-1)
        rest_lp = logp.masked_fill(mask, float("-inf")).logsumexp(-1)
        return torch.stack([target_lp, rest_lp], dim=-1)

    tckd = kl_divergence(binary(log_t), binary(log_s))
    nckd = kl_divergence((teacher / t).masked_fill(mask, float("-inf")).log_softmax(-1),
                         (student / t).masked_fill(mask, float("-inf")).log_softmax(-1))
    return tckd, nckd


def dkd_loss(student: Any, teacher: Any, *, alpha: float = 1.0, beta: float = 0.5, temperature: float = 1.0) -> Any:
    """Per-sample DKD loss ``[B]`` of logits ``[B, N, C]``, target = the teacher's argmax per view."""
    tckd, nckd = dkd_parts(student, teacher, teacher.argmax(-1), temperature)
    return (alpha * tckd + beta * nckd).mean(-1) * temperature**2


class DKD(DistillationMethod):
    """DKD: distil the reward model into the image encoder, target and non-target parts decoupled."""

    name = "dkd"
    version = "1"
    config_cls = DKDConfig
    tasks = frozenset({"classification"})
    paper = PAPER

    def distill_loss(self, student: Any, teacher: Any) -> Any:
        c = self.config
        return dkd_loss(student, teacher, alpha=c.alpha, beta=c.beta, temperature=c.temperature)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(DKD)]
