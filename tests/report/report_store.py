"""A leaderboard store filled with known runs, for the report tests (fixture in conftest.py).

Classification, imagenet-a, model ViT-B-16@openai, protocol P1 (40 samples s00..s39):
  zero-shot   correct on s00-s19            -> 50.0   (the group's zero-shot)
  tpt         correct on s00-s29            -> 75.0   vs zero-shot: b=10, c=0 -> significant
  rlcf        correct on s00-s09, s20-s29   -> 50.0   vs zero-shot: b=c=10 -> not significant;
              reward model ViT-L-14@openai, whose zero-shot (s00-s29, 75.0) it is BELOW
  EVIL        method "<script>alert(1)</script>", correct on s00-s23 -> 60.0, no stored CI
Same dataset, ViT-B-16@openai, protocol P2 (apart): tpt correct on s00-s35 -> 90.0 (must never
be ranked above the P1 runs).
Same dataset, ViT-L-14@openai, protocol P1: zero-shot correct on s00-s29 -> 75.0 (reward model ref).
Retrieval, flickr30k (30 queries): zero-shot hit@1 on q00-q09 (33.33), rlcf on q00-q19 (66.67).
Captioning, nocaps (20 captions): zero-shot clipscore 0.60+0.01*i, rlcf the same +0.05.
Reference: RLCF top1 on imagenet-a (ViT-B-16, ViT-L-14 reward) = 65.45, "RLCF Table 1".
The three tasks' metric metadata is recorded as the runner records it (from the task plugins).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlcf_bench import Comparisons, MethodFamily, report
from rlcf_bench.report.render import ClaimOptions
from rlcf_bench.stats import wilson_interval
from rlcf_bench.store import Metric, Reference, Run, SampleResult, Store

EVIL = "<script>alert(1)</script>"
B16 = "ViT-B-16@openai"
L14 = "ViT-L-14@openai"
P1 = "p1" + "a" * 14
P2 = "p2" + "b" * 14

_keys = itertools.count(1)


def add_run(store: Store, *, task: str, kind: str, dataset: str, method: str, model: str = B16,
            reward_model: str | None = None, protocol_hash: str = P1, scores: dict[str, float],
            metrics: dict[str, tuple[float, float | None, float | None]] | None = None,
            ms: tuple[float, float, float] = (10.0, 9.0, 15.0), adapt: float = 6.0, predict: float = 4.0,
            reward_ms: float | None = None, peak_mb: float = 512.0, status: str = "finished",
            key: str | None = None, attempt: int = 1, official: bool = True,
            protocol: dict[str, Any] | None = None, method_version: str = "1",
            extras: dict[str, dict[str, float]] | None = None) -> int:
    """Insert one run with every non-null column set, its sample rows (``extras``: a sample's
    ``extra`` by id) and metrics (and the first-party tasks' metric metadata, as the runner
    records it)."""
    record_tasks(store)
    with store.session() as s, s.begin():
        run = Run(
            key=key or f"k{next(_keys):04d}", attempt=attempt, task=task, task_version="1", task_kind=kind,
            dataset=dataset, dataset_version="1", dataset_params={}, method=method, method_version=method_version,
            method_config={}, config_hash="c" * 16, model=model, model_version="1", reward_model=reward_model,
            reward_model_version="1" if reward_model else None, protocol=protocol or {"seed": 0},
            protocol_hash=protocol_hash, seed=int((protocol or {}).get("seed", 0)), device="cpu",
            device_name="test-cpu", bench_version="0.1.0", provenance={}, plugins=[],
            official=official, status=status, n_total=len(scores), n_done=len(scores),
            ms_per_sample_mean=ms[0], ms_per_sample_p50=ms[1], ms_per_sample_p95=ms[2], adapt_ms_mean=adapt,
            predict_ms_mean=predict, reward_ms_mean=reward_ms, warmup_samples=0, peak_memory_mb=peak_mb,
            memory_kind="rss",
        )
        s.add(run)
        s.flush()
        for i, (sid, score) in enumerate(scores.items()):
            s.add(SampleResult(run_id=run.id, sample_id=sid, idx=i, prediction=None, target=None, score=score,
                               extra=dict((extras or {}).get(sid, {})), adapt_ms=adapt, predict_ms=predict, reward_ms=reward_ms, batch_size=1,
                               warmup=False))
        for name, (value, lo, hi) in (metrics or {}).items():
            s.add(Metric(run_id=run.id, name=name, value=value, ci_low=lo, ci_high=hi, n=len(scores)))
        return run.id


def correct_on(n: int, hits: set[int], prefix: str = "s") -> dict[str, float]:
    return {f"{prefix}{i:02d}": 1.0 if i in hits else 0.0 for i in range(n)}


def cls_metrics(scores: dict[str, float], with_ci: bool = True) -> dict[str, tuple[float, float | None, float | None]]:
    n = len(scores)
    k = int(sum(scores.values()))
    lo, hi = wilson_interval(k, n)
    top1 = (100.0 * k / n, 100 * lo if with_ci else None, 100 * hi if with_ci else None)
    return {"top1": top1, "top5": (min(100.0, top1[0] + 20.0), None, None), "ece": (5.0 + k / 10, 2.0, 9.0)}


@dataclass
class KnownStore:
    store: Store
    ids: dict[str, int]
    path: Path


def record_tasks(store: Store) -> None:
    """Record the first-party tasks' metric metadata, as a run of each would."""
    from rlcf_bench_tasks import captioning, classification, retrieval

    for module in (classification, retrieval, captioning):
        for spec in module.rlcfb_register_tasks():
            store.record_task(spec.name, spec.version, spec.metrics.as_dict())


def fill(store: Store) -> dict[str, int]:
    ids: dict[str, int] = {}
    cls = {"task": "classification", "kind": "classification", "dataset": "imagenet-a"}
    sc = correct_on(40, set(range(20)))
    ids["zs"] = add_run(store, **cls, method="zero-shot", scores=sc, metrics=cls_metrics(sc), ms=(5.0, 4.0, 6.0),
                        adapt=0.0, predict=5.0, peak_mb=300.0)
    sc = correct_on(40, set(range(30)))
    ids["tpt"] = add_run(store, **cls, method="tpt", scores=sc, metrics=cls_metrics(sc), ms=(120.0, 110.0, 180.0),
                         adapt=100.0, predict=20.0, peak_mb=900.0)
    sc = correct_on(40, set(range(10)) | set(range(20, 30)))
    ids["rlcf"] = add_run(store, **cls, method="rlcf", reward_model=L14, scores=sc, metrics=cls_metrics(sc),
                          ms=(400.0, 380.0, 520.0), adapt=360.0, predict=40.0, reward_ms=100.0, peak_mb=2400.0)
    sc = correct_on(40, set(range(24)))
    ids["evil"] = add_run(store, **cls, method=EVIL, scores=sc, metrics=cls_metrics(sc, with_ci=False),
                          ms=(50.0, 45.0, 70.0), peak_mb=700.0)
    sc = correct_on(40, set(range(36)))
    ids["apart"] = add_run(store, **cls, method="tpt", protocol_hash=P2, scores=sc, metrics=cls_metrics(sc))
    sc = correct_on(40, set(range(30)))
    ids["rm_zs"] = add_run(store, **cls, method="zero-shot", model=L14, scores=sc, metrics=cls_metrics(sc),
                           ms=(20.0, 18.0, 25.0), peak_mb=1200.0)
    # A failed run is never reported.
    add_run(store, **cls, method="broken", scores=correct_on(40, set()), status="failed")

    ret = {"task": "retrieval", "kind": "retrieval", "dataset": "flickr30k"}
    sc = correct_on(30, set(range(10)), prefix="q")
    ids["ret_zs"] = add_run(store, **ret, method="zero-shot", scores=sc,
                            metrics={"t2i_r1": (100 * 10 / 30, None, None), "t2i_r5": (60.0, 50.0, 70.0)})
    sc = correct_on(30, set(range(20)), prefix="q")
    ids["ret_rlcf"] = add_run(store, **ret, method="rlcf", reward_model=L14, scores=sc,
                              metrics={"t2i_r1": (100 * 20 / 30, None, None), "t2i_r5": (80.0, 70.0, 90.0)},
                              reward_ms=30.0, ms=(90.0, 85.0, 120.0))

    cap = {"task": "captioning", "kind": "captioning", "dataset": "nocaps"}
    base = {f"c{i:02d}": 0.60 + 0.01 * i for i in range(20)}
    ids["cap_zs"] = add_run(store, **cap, method="zero-shot", scores=base,
                            metrics={"cider": (50.0, 45.0, 55.0), "clipscore": (sum(base.values()) / 20, None, None)})
    better = {k: v + 0.05 for k, v in base.items()}
    ids["cap_rlcf"] = add_run(store, **cap, method="rlcf", reward_model=L14, scores=better,
                              metrics={"cider": (57.0, 52.0, 62.0), "clipscore": (sum(better.values()) / 20, None, None)})

    with store.session() as s, s.begin():
        s.add(Reference(task="classification", dataset="imagenet-a", method="rlcf", model=B16, reward_model=L14,
                        metric="top1", value=65.45, source="RLCF Table 1", note=""))
        s.add(Reference(task="classification", dataset="imagenet-a", method="tpt", model="RN50@openai",
                        reward_model="", metric="top1", value=40.0, source="other model: must not match", note=""))
    return ids


def row_by_run(rows: list[Any], run_id: int) -> Any:
    return next(r for r in rows if r.run_id == run_id)


def connor_n(delta: float, psi: float) -> float:
    """Connor's (1987) McNemar sample size for a difference ``delta`` at discordance ``psi``
    (5% two-sided, 80% power), written out from the paper's formula."""
    from scipy.stats import norm

    za, zb = norm.ppf(0.975), norm.ppf(0.80)
    return (za * psi ** 0.5 + zb * (psi - delta * delta) ** 0.5) ** 2 / (delta * delta)


def connor_mdd(b: int, c: int, n: int) -> float:
    """The ``delta`` (percentage points) at which Connor's sample size equals ``n``, by bisection:
    an independent check of the closed form the report uses."""
    psi = (b + c) / n
    lo, hi = 1e-9, psi  # connor_n decreases in delta on (0, psi]
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if connor_n(mid, psi) < n else (mid, hi)
    return 100.0 * (lo + hi) / 2


#: What a suite would declare for the known store: every method against zero-shot, RLCF against TPT.
KNOWN_COMPARISONS = Comparisons(reference="zero-shot", families=(MethodFamily("tuning", "tpt", ("rlcf",)),))
KNOWN_CLAIMS = ClaimOptions(comparisons=KNOWN_COMPARISONS)


def _claims(kw: dict[str, Any]) -> dict[str, Any]:
    """The known store's declared comparisons where no plugin host declares them."""
    if kw.get("host") is None:
        kw.setdefault("claims", KNOWN_CLAIMS)
    return kw


def render(store: Store, fmt: str, **kw: Any) -> str:
    """:func:`rlcf_bench.report.render` with the known store's comparisons (no host)."""
    return report.render(store, fmt, **_claims(kw))


def render_paper(store: Store, fmt: str, **kw: Any) -> str:
    return report.render_paper(store, fmt, **_claims(kw))


def write_report(store: Store, out_dir: Any, *args: Any, **kw: Any) -> list[Path]:
    return report.write_report(store, out_dir, *args, **_claims(kw))


def build_report(store: Store, **kw: Any) -> report.Report:
    kw.setdefault("comparisons", KNOWN_COMPARISONS)
    return report.build_report(store, **kw)


def build_rows(store: Store, **kw: Any) -> list[report.LeaderboardRow]:
    kw.setdefault("comparisons", KNOWN_COMPARISONS)
    return report.build_rows(store, **kw)
