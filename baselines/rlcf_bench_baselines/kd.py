"""KD: test-time distillation of the reward model into the image encoder (the RLCF paper's baseline).

Episode (``tune_cls_kd.py`` with ``--kd_loss KD``, ``kd-tune.sh`` case 01): the policy's image
tower is tuned (AdamW lr 1e-5, wd 5e-4, 3 steps) on the 10 % most confident views, towards the
class distribution of the teacher (``--reward-model``, CLIP ViT-L/14 in the paper) on the same
views; prediction on view 0. The loss is the soft-target cross-entropy
``mean_v −Σ_c softmax(z_t,v / T)_c · log softmax(z_s,v / T)_c · T²`` (T = 1; the same gradient as
KL(teacher ‖ student)). The shared episode is :class:`rlcf_bench.tta.episode.DistillationMethod`.

Departures from the official code, and why:

* Teacher logits: ``teacher.class_logits`` (the reward model's own logit scale times its cosine
  similarities); for an ensemble reward model, the weighted sum of its members' logits (the
  official code has one teacher).
* The loss is computed in fp32 (the original under autocast); class prompts "a photo of a
  <class>." by default, ``-m underscore_prompt=true`` for the original's "a_photo_of_a <class>."
  (for the student and the teacher, as the original feeds both the same token ids).
* Selection by a no-grad forward of all views, then forward/backward of the selected views only
  (the original keeps a 64-view graph at step 0; the same update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodSpec, ReferenceResult, hookimpl
from rlcf_bench.tta.episode import DistillationConfig, DistillationMethod

from ._distillation_paper import PAPER, paper_table_references


@dataclass(frozen=True)
class KDConfig(DistillationConfig):
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: expected > 0")


def kd_loss(student: Any, teacher: Any, temperature: float = 1.0) -> Any:
    """Per-sample soft-target cross-entropy ``[B]`` of logits ``[B, N, C]``, mean over views."""
    t = temperature
    soft = (teacher / t).softmax(-1)
    return -(soft * (student / t).log_softmax(-1)).sum(-1).mean(-1) * t * t


class KD(DistillationMethod):
    """KD: distil the reward model's class distribution into the image encoder (soft targets)."""

    name = "kd"
    version = "1"
    config_cls = KDConfig
    tasks = frozenset({"classification"})
    paper = PAPER

    def distill_loss(self, student: Any, teacher: Any) -> Any:
        return kd_loss(student, teacher, self.config.temperature)


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(KD)]


@hookimpl
def rlcfb_register_references() -> list[ReferenceResult]:
    return paper_table_references("kd", "KD", (70.92, 66.39, 65.01, 82.12, 53.51))
