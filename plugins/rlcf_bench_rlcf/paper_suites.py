"""Suites that reproduce the RLCF paper's tables on real data (``docs/paper-numbers.md``), runnable
as soon as the
data (``--data-root``) and weights (open_clip cache or ``ARCH@/path`` files) are present:
``paper-table1`` (+ ``paper-table1-coop``), ``paper-finegrained``, ``paper-table2`` (retrieval) and
``paper-table3`` (captioning).

Every row of a table is one run under the same protocol; the reward model's own zero-shot is a
run too, so the report can show whether a method beats the model that rewards it. The CoOp rows
need the 16-shot ImageNet CoOp context file (``RLCF_BENCH_COOP_CTX=/path/to/ctx.pth``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rlcf_bench import Comparisons, DatasetAverage, MethodFamily, SuiteRun, SuiteSpec, hookimpl

POLICY = "ViT-B-16@openai"
REWARD = "ViT-L-14@openai"
ENSEMBLE = "rlcf-s"
IMAGENET_FAMILY = ("imagenet", "imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch")
#: The paper's "OOD avg" column of Table 1: the four shifted ImageNet variants (not ImageNet itself).
OOD_AVERAGE = DatasetAverage("OOD avg", IMAGENET_FAMILY[1:], "classification")
#: The paper's comparisons: every row against zero-shot CLIP, each RLCF variant against the TPT
#: variant that tunes the same parameters (the paper's claim is about both pairs).
PAPER_COMPARISONS = Comparisons(reference="zero-shot", families=(
    MethodFamily("prompt tuning", "tpt-prompt", ("rlcf-prompt",)),
    MethodFamily("image-encoder tuning", "tpt-image", ("rlcf-image",)),
))
FINE_GRAINED = ("caltech101", "cars", "pets", "flower102", "aircraft", "food101", "sun397", "dtd", "eurosat", "ucf101")
COOP_ENV = "RLCF_BENCH_COOP_CTX"
CAPTIONER_ENVS = {"clipcap": "RLCF_BENCH_CLIPCAP_DIR", "capdec": "RLCF_BENCH_CAPDEC_DIR"}
RETRIEVAL_SETS = ("coco-retrieval", "flickr30k-retrieval")
CAPTION_SETS = ("flickr30k-captions", "nocaps-in", "nocaps-near", "nocaps-out")


def _classification_rows(datasets: Sequence[str], rows: Sequence[tuple[str, str | None, dict[str, Any], str]]) -> list[SuiteRun]:
    return [
        SuiteRun(task="classification", dataset=ds, method=method, model=model, reward_model=reward,
                 method_options=tuple(sorted(config.items())))
        for ds in datasets for method, reward, config, model in rows
    ]


def table1(methods: Sequence[Any]) -> list[SuiteRun]:
    """Table 1 (ImageNet and its OOD variants): zero-shot B/16 and L/14 (the reward model),
    TPT and RLCF with prompt tuning and image-encoder tuning, RLCF-S and RLCF-S-M."""
    rows: list[tuple[str, str | None, dict[str, Any], str]] = [
        ("zero-shot", None, {}, POLICY),
        ("zero-shot", None, {}, REWARD),
        ("tpt-prompt", None, {}, POLICY),
        ("rlcf-prompt", REWARD, {}, POLICY),
        ("tpt-image", None, {}, POLICY),
        ("rlcf-image", REWARD, {}, POLICY),
        ("rlcf-image", ENSEMBLE, {}, POLICY),
        ("rlcf-image", ENSEMBLE, {"momentum": True}, POLICY),
    ]
    return _classification_rows(IMAGENET_FAMILY, rows)


def table1_coop(methods: Sequence[Any]) -> list[SuiteRun]:
    """The "+ CoOp" rows of Table 1: TPT, RLCF and RLCF-S prompt tuning from CoOp's context."""
    coop = os.environ.get(COOP_ENV)
    if not coop:
        raise ValueError(f"suite paper-table1-coop needs the CoOp context file: set {COOP_ENV}=/path/to/"
                         "coop_16shots_nctx4_cscFalse_ctpend_vitb16_seed1 checkpoint)")
    rows: list[tuple[str, str | None, dict[str, Any], str]] = [
        ("tpt-prompt", None, {"coop": coop}, POLICY),
        ("rlcf-prompt", REWARD, {"coop": coop}, POLICY),
        ("rlcf-prompt", ENSEMBLE, {"coop": coop}, POLICY),
    ]
    return _classification_rows(IMAGENET_FAMILY, rows)


def finegrained(methods: Sequence[Any]) -> list[SuiteRun]:
    """The 10 cross-dataset sets (AugMix views): zero-shot B/16 and L/14, TPT, RLCF (5 steps, as
    ``rlcf-prompt-fine.sh``)."""
    rows: list[tuple[str, str | None, dict[str, Any], str]] = [
        ("zero-shot", None, {}, POLICY),
        ("zero-shot", None, {}, REWARD),
        ("tpt-prompt", None, {}, POLICY),
        ("rlcf-prompt", REWARD, {"steps": 5}, POLICY),
    ]
    return _classification_rows(FINE_GRAINED, rows)


def table2(methods: Sequence[Any]) -> list[SuiteRun]:
    """Table 2 (retrieval, COCO 5k and Flickr30k 1k, both directions): zero-shot B/16 and L/14,
    RLCF, RLCF-S and RLCF-S-M (K for image→text follows the dataset: 20 COCO, 16 Flickr)."""
    rows: list[tuple[str, str | None, dict[str, Any], str]] = [
        ("zero-shot", None, {}, POLICY),
        ("zero-shot", None, {}, REWARD),
        ("rlcf", REWARD, {}, POLICY),
        ("rlcf", ENSEMBLE, {}, POLICY),
        ("rlcf", ENSEMBLE, {"momentum": True}, POLICY),
    ]
    return [SuiteRun(task="retrieval", dataset=ds, method=m, model=model, reward_model=reward,
                     method_options=tuple(sorted(config.items())))
            for ds in RETRIEVAL_SETS for m, reward, config, model in rows]


def table3(methods: Sequence[Any]) -> list[SuiteRun]:
    """Table 3 (captioning, COCO-trained ClipCap and CapDec on Flickr30k and NoCaps in/near/out):
    zero-shot decoding, RLCF and RLCF-S. Needs the trained checkpoint folders."""
    runs: list[SuiteRun] = []
    for kind, env in CAPTIONER_ENVS.items():
        folder = os.environ.get(env)
        if not folder:
            raise ValueError(f"suite paper-table3 needs the COCO-trained {kind} folder: set {env}=/path/to/dir "
                             f"(train it with `rlcf-bench caption train --kind {kind}`, see CAPTIONING.md)")
        for ds in CAPTION_SETS:
            lr = {"clipcap": 2e-6, "capdec": 3e-6 if ds.startswith("nocaps") else 5e-6}[kind]
            for method, reward in (("zero-shot", None), ("rlcf", REWARD), ("rlcf", ENSEMBLE)):
                config = (("lr", lr),) if method == "rlcf" else ()
                runs.append(SuiteRun(task="captioning", dataset=ds, method=method, model=f"{kind}@{folder}",
                                     reward_model=reward, method_options=config))
    return runs


@hookimpl
def rlcfb_register_suites() -> list[SuiteSpec]:
    return [
        SuiteSpec("paper-table1", "RLCF Table 1: ImageNet + A/V2/R/Sketch, ViT-B/16 policy, ViT-L/14 reward", table1,
                  averages=(OOD_AVERAGE,), comparisons=PAPER_COMPARISONS),
        SuiteSpec("paper-table1-coop", f"RLCF Table 1 '+ CoOp' rows (needs ${COOP_ENV})", table1_coop,
                  averages=(OOD_AVERAGE,), comparisons=PAPER_COMPARISONS),
        SuiteSpec("paper-finegrained", "the 10 fine-grained sets with CoOp splits (prompt tuning)", finegrained,
                  averages=(DatasetAverage("Average", FINE_GRAINED, "classification"),), comparisons=PAPER_COMPARISONS),
        SuiteSpec("paper-table2", "RLCF Table 2: COCO / Flickr30k retrieval, both directions", table2, comparisons=PAPER_COMPARISONS),
        SuiteSpec("paper-table3", "RLCF Table 3: ClipCap / CapDec captioning on Flickr30k and NoCaps "
                  f"(needs ${CAPTIONER_ENVS['clipcap']} and ${CAPTIONER_ENVS['capdec']})", table3,
                  comparisons=PAPER_COMPARISONS),
    ]
