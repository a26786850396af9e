"""The RLCF paper's reported numbers as reference rows (``docs/paper-numbers.md``).

The numbers were read off the result-table images of the official project page (gh-pages branch
of mzhaoshuai/RLCF: ``assets/exp-classification.png``, ``exp-retrieval.png``, ``exp-caption.png``).
The images do not show the paper's table numbers, so each ``source`` names the table by topic and
the row as printed; the row label also keeps rows that share method/model/reward model apart (e.g.
"RLCF" and "RLCF + CoOp" are both ``rlcf-prompt``; the leaderboard keys references by source).

Naming: methods as users type them (``zero-shot``, ``tpt-prompt``, ``rlcf-prompt``, ``tpt-image``,
``rlcf-image``; retrieval and captioning RLCF is ``rlcf``), models ``ARCH@openai``, reward models
``ViT-L-14@openai`` (RLCF) or ``rlcf-s`` (the weighted ensemble), dataset names as registered by
``rlcf_bench_datasets``. All values are percentages (0–100) as printed in the paper.

Not included: the "OOD avg" column (derived: the mean of A, V2, R and Sketch) and fine-grained
numbers (the paper's tables that were reachable have none, ``docs/paper-numbers.md#classification``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rlcf_bench import ReferenceResult, hookimpl

_REPO = "read from mzhaoshuai/RLCF gh-pages assets/exp-{asset}.png"
B16 = "ViT-B-16@openai"
L14 = "ViT-L-14@openai"
L14_336 = "ViT-L-14-336@openai"
RLCF_S = "rlcf-s"
PERCENT = "percent (0-100)"


def _source(topic: str, row: str, asset: str) -> str:
    return f"RLCF (ICLR 2024) {topic} table, row {row!r}, {_REPO.format(asset=asset)}"


# (row label, method, model, reward model, note, values in column order)
_Row = tuple[str, str, str, "str | None", str, Sequence["float | None"]]

CLASSIFICATION_DATASETS = ("imagenet", "imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch")
CLASSIFICATION: tuple[_Row, ...] = (
    ("CLIP-ViT-B/16", "zero-shot", B16, None, "", (66.73, 47.87, 60.86, 73.98, 46.09)),
    ("CLIP-ViT-L/14", "zero-shot", L14, None, "", (73.44, 68.82, 67.80, 85.40, 57.84)),
    ("CoOp", "coop", B16, None, "16-shot ImageNet prompt learning, no test-time adaptation", (71.51, 49.71, 64.20, 75.21, 47.99)),
    ("CoCoOp", "cocoop", B16, None, "16-shot ImageNet conditional prompts, no test-time adaptation", (71.02, 50.63, 64.07, 76.18, 48.75)),
    ("TPT", "tpt-prompt", B16, None, "", (68.98, 54.77, 63.45, 77.06, 47.94)),
    ("TPT + CoOp", "tpt-prompt", B16, None, "CoOp init", (73.61, 57.95, 66.83, 77.27, 49.29)),
    ("TPT + CoOp + KD", "kd-prompt", B16, None, "CoOp init; TPT plus distillation from CLIP-ViT-L/14", (71.40, 63.25, 65.28, 82.70, 55.78)),
    ("RLCF", "rlcf-prompt", B16, L14, "", (73.23, 65.45, 69.77, 83.35, 54.74)),
    ("RLCF + CoOp", "rlcf-prompt", B16, L14, "CoOp init", (76.05, 69.74, 70.62, 84.51, 56.49)),
    ("RLCF-S + CoOp", "rlcf-prompt", B16, RLCF_S, "CoOp init", (76.50, 71.11, 70.92, 84.73, 56.97)),
    ("Pseudo-label", "pseudo-label-image", B16, None, "image-encoder tuning", (69.11, 62.15, 63.56, 80.03, 49.45)),
    ("TPT (backbone)", "tpt-image", B16, None, "image-encoder tuning", (69.42, 61.62, 63.70, 79.74, 49.47)),
    ("RLCF (tune)", "rlcf-image", B16, L14, "image-encoder tuning", (74.85, 73.71, 69.77, 86.19, 57.10)),
    ("RLCF-S (tune)", "rlcf-image", B16, RLCF_S, "image-encoder tuning", (75.34, 75.00, 70.08, 86.97, 57.75)),
    ("RLCF-S-M (tune)", "rlcf-image", B16, RLCF_S, "image-encoder tuning with the momentum buffer (momentum option)",
     (75.48, 75.16, 70.42, 87.23, 57.73)),
)

RETRIEVAL_COLUMNS = (
    ("coco-retrieval", "t2i_r1"), ("coco-retrieval", "t2i_r5"), ("coco-retrieval", "t2i_r10"),
    ("coco-retrieval", "i2t_r1"), ("coco-retrieval", "i2t_r5"), ("coco-retrieval", "i2t_r10"),
    ("flickr30k-retrieval", "t2i_r1"), ("flickr30k-retrieval", "t2i_r5"), ("flickr30k-retrieval", "t2i_r10"),
    ("flickr30k-retrieval", "i2t_r1"), ("flickr30k-retrieval", "i2t_r5"), ("flickr30k-retrieval", "i2t_r10"),
)
RETRIEVAL: tuple[_Row, ...] = (
    ("CLIP-ViT-B/16", "zero-shot", B16, None, "", (33.0, 58.2, 68.9, 52.5, 76.8, 84.6, 62.2, 85.7, 91.8, 81.2, 96.4, 98.5)),
    ("CLIP-ViT-L/14", "zero-shot", L14, None, "", (36.1, 60.9, 71.1, 56.2, 78.9, 86.9, 64.6, 87.1, 92.1, 85.3, 97.2, 99.1)),
    ("CLIP-ViT-L/14-336", "zero-shot", L14_336, None, "", (36.6, 60.9, 71.0, 57.3, 80.6, 87.8, 67.1, 88.9, 93.2, 86.6, 98.0, 99.1)),
    ("Pseudo-label", "pseudo-label", B16, None, "", (33.0, 57.8, 68.2, 52.4, 72.4, 81.8, 62.2, 85.3, 91.7, 81.1, 93.2, 97.8)),
    ("KD (3 steps)", "kd", B16, None, "3 steps, distillation from CLIP-ViT-L/14", (37.6, 61.0, 70.7, 57.0, 79.0, 86.3, 66.9, 87.9, 92.9, 85.3, 97.5, 98.5)),
    ("KD (5 steps)", "kd", B16, None, "5 steps, distillation from CLIP-ViT-L/14", (34.6, 59.7, 69.8, 53.7, 76.6, 84.5, 61.4, 86.0, 91.7, 83.1, 95.9, 97.9)),
    ("RLCF", "rlcf", B16, L14, "", (37.3, 62.7, 71.5, 59.1, 80.1, 86.9, 67.1, 89.1, 93.2, 87.3, 97.2, 98.8)),
    ("RLCF-S", "rlcf", B16, RLCF_S, "", (38.3, 63.4, 72.5, 60.8, 80.8, 87.5, 68.5, 90.0, 93.7, 88.3, 97.7, 98.9)),
    ("RLCF-S-M", "rlcf", B16, RLCF_S, "with the momentum buffer (momentum option)",
     (38.4, 63.5, 72.6, 60.8, 80.5, 87.6, 68.5, 90.2, 93.7, 88.1, 97.7, 98.9)),
)

CAPTIONING_COLUMNS = (
    ("nocaps-in", "bleu4"), ("nocaps-in", "cider"), ("nocaps-in", "spice"),
    ("nocaps-near", "bleu4"), ("nocaps-near", "cider"), ("nocaps-near", "spice"),
    ("nocaps-out", "bleu4"), ("nocaps-out", "cider"), ("nocaps-out", "spice"),
    ("flickr30k-captions", "bleu4"), ("flickr30k-captions", "cider"), ("flickr30k-captions", "spice"),
    ("flickr30k-captions", "refclipscore"),
)
_NA = None
CAPDEC = "capdec-coco"
CLIPCAP = "clipcap-coco"
CAPTIONING: tuple[_Row, ...] = (
    ("MAGIC", "magic", "magic", None, "other zero-shot captioner, for comparison",
     (_NA, _NA, _NA, _NA, _NA, _NA, _NA, _NA, _NA, 5.2, 18.3, 5.7, _NA)),
    ("DeCap", "decap", "decap", None, "other zero-shot captioner, for comparison",
     (_NA, 72.7, _NA, _NA, 61.9, _NA, _NA, 43.9, _NA, 17.7, 42.0, 13.8, _NA)),
    ("CapDec", "zero-shot", CAPDEC, None, "COCO-trained CapDec, no adaptation",
     (32.4, 62.6, 10.3, 29.2, 54.0, 9.6, 17.2, 31.7, 6.4, 19.3, 37.0, 11.7, 74.1)),
    ("CapDec + RLCF", "rlcf", CAPDEC, L14, "COCO-trained CapDec",
     (33.3, 68.0, 10.7, 30.3, 57.9, 10.3, 17.6, 35.5, 6.9, 20.3, 41.9, 12.7, 75.7)),
    ("CapDec + RLCF-S", "rlcf", CAPDEC, RLCF_S, "COCO-trained CapDec",
     (34.0, 68.3, 10.8, 30.3, 58.5, 10.3, 17.7, 35.3, 6.9, 20.1, 41.6, 12.7, 75.7)),
    ("ClipCap", "zero-shot", CLIPCAP, None, "COCO-trained ClipCap (cross-domain), no adaptation",
     (36.3, 76.9, 11.9, 34.8, 73.5, 11.0, 22.5, 54.6, 8.6, 21.8, 49.3, 13.1, 76.7)),
    ("ClipCap + RLCF", "rlcf", CLIPCAP, L14, "COCO-trained ClipCap",
     (38.6, 84.0, 12.5, 36.1, 79.6, 11.8, 24.7, 63.8, 9.6, 23.3, 56.6, 14.5, 79.4)),
    ("ClipCap + RLCF-S", "rlcf", CLIPCAP, RLCF_S, "COCO-trained ClipCap",
     (38.7, 84.7, 12.6, 35.8, 79.7, 11.8, 24.2, 63.1, 9.5, 23.6, 57.8, 14.6, 79.4)),
)


def _expand(task: str, topic: str, asset: str, columns: Sequence[tuple[str, str]], rows: Sequence[_Row],
            unit: str) -> list[ReferenceResult]:
    out: list[ReferenceResult] = []
    for label, method, model, reward, note, values in rows:
        if len(values) != len(columns):  # pragma: no cover - guarded by a test
            raise ValueError(f"{topic} row {label!r}: {len(values)} values for {len(columns)} columns")
        full_note = "; ".join(x for x in (note, f"paper row {label!r}", unit) if x)
        for (dataset, metric), value in zip(columns, values):
            if value is None:
                continue
            out.append(ReferenceResult(task=task, dataset=dataset, method=method, model=model, metric=metric,
                                       value=float(value), source=_source(topic, label, asset),
                                       reward_model=reward, note=full_note))
    return out


def reference_rows() -> list[ReferenceResult]:
    """Every reported number of the paper's tables as a :class:`ReferenceResult`."""
    cls_columns = tuple((d, "top1") for d in CLASSIFICATION_DATASETS)
    return [
        *_expand("classification", "classification", "classification", cls_columns, CLASSIFICATION,
                 f"top-1 accuracy, {PERCENT}; policy and prompts as in the paper"),
        *_expand("retrieval", "retrieval", "retrieval", RETRIEVAL_COLUMNS, RETRIEVAL,
                 f"Recall@K, {PERCENT}; COCO 5k / Flickr30k 1k Karpathy test"),
        *_expand("captioning", "captioning", "caption", CAPTIONING_COLUMNS, CAPTIONING,
                 f"BLEU-4 / CIDEr / SPICE / RefCLIPScore x100, {PERCENT}; captioner policy on CLIP-ViT-B/16"),
    ]


@hookimpl
def rlcfb_register_references() -> list[ReferenceResult]:
    return reference_rows()
