"""The default suite, ``micro``: what ``rlcf-bench run`` runs with no arguments.

Every registered classification method on every ImageNet-analogue shift of the embedded suite
(sketch, rendition, hard, resampled, and Gaussian noise at severity 3 as the ImageNet-C analogue),
the reward model's own zero-shot as a reference row, and the retrieval and captioning methods on
a captioned shifted domain. Sizes are chosen so the whole suite fits in about 10 minutes on two
CPU cores (measured: docs/micro-suite.md#reference-result-committed-leaderboardreference-micro);
the protocol is the paper's except for 32 views instead of 64 (3 confident views instead of 6),
the same for every method. Online methods (TDA, DMN-ZS, DPE, BoostAdapter) run three stream orders
each; the classification runs share order seed 0 (``rlcf_bench.online_protocol``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlcf_bench import Comparisons, DatasetAverage, MethodFamily, SuiteRun, SuiteSpec, hookimpl

STUDENT, REWARD, CAPTIONER = "micro-student", "micro-reward", "micro-captioner"
CLASSIFICATION_DOMAINS = ("micro-sketch", "micro-rendition", "micro-hard", "micro-resampled", "micro-noise")
CLASSIFICATION_N = 500
RETRIEVAL_DOMAIN, RETRIEVAL_N = "micro-rendition", 60
CAPTIONING_DOMAIN, CAPTIONING_N = "micro-rendition", 60
PROTOCOL = (("n_views", 32),)
ONLINE_ORDERS = 3  # stream orders per online method (order seeds 0, 1, 2); episodic methods run once

#: What the reports compare: every method with zero-shot (and a reward-model user with the reward
#: model's own zero-shot), and each method with its family's baseline: the prompt tuners with TPT on
#: the prompt, the image-encoder tuners (RLCF's and the distillation baselines) with TPT on the image
#: encoder, the cache-based online methods with TDA (which BoostAdapter and DPE extend).
COMPARISONS = Comparisons(
    reference="zero-shot",
    families=(
        MethodFamily("prompt tuning", "tpt-prompt", ("rlcf-prompt", "c-tpt", "r-tpt", "tps")),
        MethodFamily("image-encoder tuning", "tpt-image", ("rlcf-image", "kd", "dkd", "atkd")),
        MethodFamily("online caches", "tda", ("boostadapter", "dpe", "dmn-zs")),
    ),
)


def _supports(method: Any, kind: str) -> bool:
    """``method`` serves ``kind`` in this suite; per-batch online methods (Tent, SAR, ETA, LAME) need a
    batched stream and run in the ``protocols`` suite (``protocols_suite``)."""
    return kind in method.tasks and getattr(method, "adapts_per", "sample") != "batch"


def micro_runs(methods: Sequence[Any]) -> list[SuiteRun]:
    """The suite's runs, in the order ``run -j N`` hands them to its workers: the single long
    retrieval and captioning runs first, then the classification runs method by method, each
    method over all domains in turn (so that parallel workers start on different domains and
    rarely compute the same shared view features at once, ``docs/performance.md``), the reward
    model's zero-shot rows last."""
    runs: list[SuiteRun] = []
    for m in methods:
        if _supports(m, "retrieval"):
            reward = REWARD if "reward_model" in m.requires else None
            runs.append(SuiteRun("retrieval", RETRIEVAL_DOMAIN, m.name, STUDENT, reward,
                                 dataset_params=(("n", RETRIEVAL_N),)))
    if any(_supports(m, "retrieval") and m.name == "zero-shot" for m in methods):  # the reward model's own row
        runs.append(SuiteRun("retrieval", RETRIEVAL_DOMAIN, "zero-shot", REWARD, dataset_params=(("n", RETRIEVAL_N),)))
    for m in methods:
        if _supports(m, "captioning"):
            reward = REWARD if "reward_model" in m.requires else None
            runs.append(SuiteRun("captioning", CAPTIONING_DOMAIN, m.name, CAPTIONER, reward,
                                 dataset_params=(("n", CAPTIONING_N),)))
    params = (("n", CLASSIFICATION_N),)
    for m in (m for m in methods if _supports(m, "classification")):
        reward = REWARD if "reward_model" in m.requires else None
        runs.extend(SuiteRun("classification", ds, m.name, STUDENT, reward, dataset_params=params,
                             protocol_overrides=PROTOCOL) for ds in CLASSIFICATION_DOMAINS)
    runs.extend(SuiteRun("classification", ds, "zero-shot", REWARD, dataset_params=params, protocol_overrides=PROTOCOL)
                for ds in CLASSIFICATION_DOMAINS)
    return runs


@hookimpl
def rlcfb_register_suites() -> list[SuiteSpec]:
    return [SuiteSpec("micro", "the embedded suite: generated shifts, micro CLIP zoo; CPU, minutes", micro_runs,
                      orders=ONLINE_ORDERS, averages=(DatasetAverage("OOD avg", CLASSIFICATION_DOMAINS, "classification"),),
                      comparisons=COMPARISONS)]


@hookimpl
def rlcfb_display_names() -> dict[str, str]:
    """The shifted domains as a paper's table heads them."""
    return {"micro-sketch": "Sketch", "micro-rendition": "Rendition", "micro-hard": "Hard",
            "micro-resampled": "Resampled", "micro-noise": "Noise"}
