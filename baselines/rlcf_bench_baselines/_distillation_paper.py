"""The RLCF paper's distillation rows as reference rows (a private module: no plugin, no torch).

Read from the classification result image of the RLCF project page (gh-pages branch of
mzhaoshuai/RLCF, ``assets/exp-classification.png``): ViT-B/16 policy, ViT-L/14 teacher, image-
encoder tuning, top-1 on ImageNet and its four OOD variants. DKD has no reported row.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlcf_bench import ReferenceResult

PAPER = ("Zhao, Wang, Zhu, Yang, Test-Time Adaptation with CLIP Reward for Zero-Shot Generalization "
         "in Vision-Language Models (ICLR 2024), distillation baseline")
DATASETS = ("imagenet", "imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch")
SOURCE = ("RLCF (ICLR 2024) classification table, row {row!r}, read from mzhaoshuai/RLCF gh-pages "
          "assets/exp-classification.png")


def paper_table_references(method: str, row: str, values: Sequence[float], note: str = "") -> list[ReferenceResult]:
    """One top-1 reference row per ImageNet-family dataset for ``method`` (ViT-B/16 student,
    ViT-L/14 teacher = the run's reward model)."""
    full = "; ".join(x for x in (note, f"paper row {row!r}", "image-encoder tuning, teacher CLIP-ViT-L/14",
                                 "top-1 accuracy, percent (0-100)") if x)
    return [ReferenceResult(task="classification", dataset=ds, method=method, model="ViT-B-16@openai", metric="top1",
                            value=float(v), source=SOURCE.format(row=row), reward_model="ViT-L-14@openai", note=full)
            for ds, v in zip(DATASETS, values, strict=True)]
