"""Retrieval rows: ``n`` is the primary metric's own count (t2i R@1: the text queries), and the
paired test of t2i R@1 runs on the t2i hits only, not on hit@1 pooled over both directions."""

from __future__ import annotations

import csv
import io

import pytest
from report_store import KnownStore, add_run, build_rows, render
from scipy.stats import binomtest
from sqlalchemy import update

from rlcf_bench.stats import wilson_interval
from rlcf_bench.store import Metric


def _queries(i2t_hits: range, t2i_hits: range) -> dict[str, float]:
    """10 images (i2t) and 40 captions (t2i), hit@1 on the given indices."""
    out = {f"i2t:{i:03d}": float(i in i2t_hits) for i in range(10)}
    out.update({f"t2i:{i:03d}": float(i in t2i_hits) for i in range(40)})
    return out


def _metrics(scores: dict[str, float]) -> dict[str, tuple[float, float | None, float | None]]:
    out = {}
    for d in ("t2i", "i2t"):
        hits = [v for k, v in scores.items() if k.startswith(d)]
        lo, hi = wilson_interval(int(sum(hits)), len(hits))
        out[f"{d}_r1"] = (100.0 * sum(hits) / len(hits), 100 * lo, 100 * hi)
    return out


ZS = _queries(range(10), range(10))  # i2t: zero-shot far better (10 vs 0 hits) ...
RL = _queries(range(0), range(30))  # ... t2i: rlcf better (30 vs 10); pooled they nearly cancel


def _two_runs(known: KnownStore) -> tuple[int, int]:
    ret = {"task": "retrieval", "kind": "retrieval", "dataset": "coco"}
    zs_id = add_run(known.store, **ret, method="zero-shot", scores=ZS, metrics=_metrics(ZS))
    rl_id = add_run(known.store, **ret, method="rlcf", scores=RL, metrics=_metrics(RL))
    return zs_id, rl_id


def test_retrieval_n_and_test_follow_the_primary_direction(known: KnownStore) -> None:
    zs_id, rl_id = _two_runs(known)
    zs, rl = ZS, RL
    for mid in (zs_id, rl_id):  # add_run stores n = all samples; the task stores n per direction
        with known.store.session() as s, s.begin():
            s.execute(update(Metric).where(Metric.run_id == mid, Metric.name == "t2i_r1").values(n=40))
            s.execute(update(Metric).where(Metric.run_id == mid, Metric.name == "i2t_r1").values(n=10))
    rows = {r.run_id: r for r in build_rows(known.store, dataset="coco")}
    row = rows[rl_id]
    assert row.primary_metric == "t2i_r1" and row.primary_n == 40 and row.n_samples == 50
    comp = row.vs_reference
    assert comp is not None and comp.n_shared == 40 and comp.on_primary
    t2i = sorted(k for k in zs if k.startswith("t2i:"))
    b = sum(rl[k] == 1.0 and zs[k] == 0.0 for k in t2i)  # exact McNemar on the t2i queries' hits only
    c = sum(rl[k] == 0.0 and zs[k] == 1.0 for k in t2i)
    assert comp.test == "mcnemar-exact" and comp.p_value == pytest.approx(binomtest(min(b, c), b + c).pvalue)
    assert comp.significant
    assert comp.delta == 100.0 * (30 - 10) / 40
    md = render(known.store, "markdown", dataset="coco")
    line = next(x for x in md.splitlines() if x.startswith(f"| 1 | {rl_id} | rlcf |"))
    assert line.split(" | ")[5] == "40"
    by_csv = {int(r["run_id"]): r for r in csv.DictReader(io.StringIO(render(known.store, "csv", dataset="coco")))}
    assert by_csv[rl_id]["primary_n"] == "40" and by_csv[rl_id]["n_samples"] == "50"


def test_compare_tests_retrieval_on_the_primary_direction(known: KnownStore) -> None:
    from rlcf_bench.report import compare_runs

    b, a = _two_runs(known)
    c = compare_runs(known.store, a, b)
    assert c.n_shared == 40 and c.test.diff == 100.0 * (30 - 10) / 40 and c.metric == "t2i_r1"
