"""The micro suite's part of the shared ``protocols`` suite (``rlcf-bench run --suite protocols``):
the stream protocols of ``rlcf_bench.streams`` on the embedded domains. Other plugins add their
own parts under the same name (``SuiteSpec.shared``); no list names them.

* **continual**: every per-sample online method (TDA, DMN-ZS, DPE, BoostAdapter, and any added
  later) and zero-shot (the reference) on one continual stream of the five shifted domains
  (``stream=continual``: the planner makes the five datasets one run per method), three domain
  orders per online method;
* **dirichlet**: the same methods on each shifted domain with a label-correlated order
  (``stream=dirichlet:0.1``, TTAB's strongest setting), three orders;
* **batched**: every per-batch online method (Tent, SAR, ETA, LAME) and zero-shot in batches of 16
  (``online_batch=16``) on each shifted domain, three orders.

``PROTOCOL_N`` samples per domain (the default suite's 500 would make the continual stream 2500
samples long per method and order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlcf_bench import SuiteRun, SuiteSpec, hookimpl

from .suite import CLASSIFICATION_DOMAINS, COMPARISONS, ONLINE_ORDERS, PROTOCOL, STUDENT

PROTOCOL_N = 200
DIRICHLET = "dirichlet:0.1"
ONLINE_BATCH = 16


def _classification(m: Any) -> bool:
    return "classification" in m.tasks and "reward_model" not in m.requires


def protocol_runs(methods: Sequence[Any]) -> list[SuiteRun]:
    """The runs of this part (see the module docstring)."""
    params = (("n", PROTOCOL_N),)
    usable = [m for m in methods if _classification(m)]
    per_sample = [m.name for m in usable if not m.episodic and getattr(m, "adapts_per", "sample") != "batch"]
    per_batch = [m.name for m in usable if getattr(m, "adapts_per", "sample") == "batch"]
    reference = ["zero-shot"] if any(m.name == "zero-shot" for m in usable) else []
    settings = [((("stream", "continual"),), per_sample), ((("stream", DIRICHLET),), per_sample),
                ((("online_batch", ONLINE_BATCH),), per_batch)]
    runs: list[SuiteRun] = []
    for extra, names in settings:
        if not names:
            continue
        protocol = tuple(sorted((*PROTOCOL, *extra)))
        runs.extend(SuiteRun("classification", ds, name, STUDENT, dataset_params=params, protocol_overrides=protocol)
                    for name in (*names, *reference) for ds in CLASSIFICATION_DOMAINS)
    return runs


@hookimpl
def rlcfb_register_suites() -> list[SuiteSpec]:
    return [SuiteSpec("protocols", "stream protocols and other settings beyond the default run: continual and "
                      "label-correlated streams, batched online adaptation (parts from several plugins)",
                      protocol_runs, orders=ONLINE_ORDERS, comparisons=COMPARISONS, shared=True)]
