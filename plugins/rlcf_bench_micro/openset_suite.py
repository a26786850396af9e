"""The micro suite's open-set part of the ``protocols`` suite (``rlcf-bench run --suite
protocols``; ``docs/open-set.md``): every registered classification method, episodic and online,
on ``micro-openset`` (the 500 in-domain photo test images mixed with 500 images of novel shapes)
with the ``open-set`` task, the default suite's protocol (32 views) and stream orders, and the
reward model's zero-shot as a reference row. Kept out of the default run, whose time and embedded
reference stay unchanged.

``protocols`` is a suite several plugins add parts to (the stream protocols add theirs): this
part is registered ``shared`` (:class:`~rlcf_bench.SuiteSpec`). A per-batch method meets the
open-set stream in batches of ``online_batch=16``, as in the batched part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rlcf_bench import SuiteRun, SuiteSpec, hookimpl

from .protocols_suite import ONLINE_BATCH
from .suite import CLASSIFICATION_N, COMPARISONS, ONLINE_ORDERS, PROTOCOL, REWARD, STUDENT

SUITE = "protocols"
OPENSET_DATASET = "micro-openset"
OPENSET_TASK = "open-set"


def openset_runs(methods: Sequence[Any]) -> list[SuiteRun]:
    """Each classification method on the open-set stream (the student), then the reward model's zero-shot."""
    params = (("n", CLASSIFICATION_N),)

    def protocol(m: Any) -> tuple[tuple[str, Any], ...]:  # a per-batch method meets the stream in batches
        return (*PROTOCOL, ("online_batch", ONLINE_BATCH)) if getattr(m, "adapts_per", "sample") == "batch" else PROTOCOL

    runs = [SuiteRun(OPENSET_TASK, OPENSET_DATASET, m.name, STUDENT, REWARD if "reward_model" in m.requires else None,
                     dataset_params=params, protocol_overrides=protocol(m))
            for m in methods if "classification" in m.tasks]
    if any(r.method == "zero-shot" for r in runs):
        runs.append(SuiteRun(OPENSET_TASK, OPENSET_DATASET, "zero-shot", REWARD, dataset_params=params,
                             protocol_overrides=PROTOCOL))
    return runs


@hookimpl
def rlcfb_register_suites() -> list[SuiteSpec]:
    spec = SuiteSpec(SUITE, "settings beyond the default run; here: open-set streams (micro-openset, ID top-1, "
                     "AUROC and FPR95 of the OOD score)", openset_runs, orders=ONLINE_ORDERS, comparisons=COMPARISONS)
    return [dataclasses.replace(spec, shared=True)]
