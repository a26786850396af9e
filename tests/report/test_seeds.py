"""``--seeds N``: N protocol (view) seeds per run, a protocol hash each, and reports that show the
spread over seeds (and stream orders) in the row of the first seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_store import add_run, build_rows, cls_metrics, correct_on, render

from rlcf_bench.planning import expand_seeds, plan_runs
from rlcf_bench.plugins import PluginHost
from rlcf_bench.store import Run, Store


def _seed(req: object) -> int | None:
    return dict(req.protocol_overrides).get("seed")  # type: ignore[attr-defined]


def test_plan_runs_every_run_with_n_seeds() -> None:
    host = PluginHost()
    one = plan_runs(host, suite="micro", datasets=["micro-noise"], methods=["tpt-prompt"])
    two = plan_runs(host, suite="micro", datasets=["micro-noise"], methods=["tpt-prompt"], seeds=2)
    assert len(two) == 2 * len(one) and two[0] == one[0]  # the first seed is the plain plan, hash and all
    assert [_seed(r) for r in two] == [None, 1]
    fixed = plan_runs(host, suite="micro", datasets=["micro-noise"], methods=["tpt-prompt"], seeds=3,
                      overrides={"seed": 5})
    assert [_seed(r) for r in fixed] == [5, 6, 7]
    with pytest.raises(ValueError, match="--seeds must be"):
        expand_seeds(one, 0, lambda r: 0)


def _seeded(store: Store, method: str, seed: int, hits: set[int]) -> int:
    sc = correct_on(40, hits)
    rid = add_run(store, task="classification", kind="classification", dataset="imagenet-a", method=method,
                  protocol_hash=f"s{seed}" + "h" * 14, scores=sc, metrics=cls_metrics(sc))
    with store.session() as s, s.begin():
        run = s.get(Run, rid)
        assert run is not None
        run.protocol = {"seed": seed}
    return rid


def test_report_shows_the_spread_over_seeds(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'seeds.sqlite'}")
    first = _seeded(store, "tpt", 0, set(range(20)))
    second = _seeded(store, "tpt", 1, set(range(24)))
    _seeded(store, "zero-shot", 0, set(range(18)))
    _seeded(store, "zero-shot", 1, set(range(18)))
    rows = build_rows(store)
    assert {r.run_id for r in rows if r.method == "tpt"} == {first}  # the other seed is folded into the spread
    spread = next(r for r in rows if r.method == "tpt").orders
    assert spread is not None and spread.view_seeds == (0, 1) and spread.run_ids == (first, second)
    assert spread.values == pytest.approx((50.0, 60.0)) and spread.sd == pytest.approx(7.0710678, rel=1e-6)
    assert "2 view seeds: top1 55.00 ± 7.07 (sd; min 50.00, max 60.00)" in render(store, "markdown")
    item = next(r for r in json.loads(render(store, "json")) if r.get("run_id") == first)
    assert item["orders"]["view_seeds"] == [0, 1] and item["orders"]["over"] == "2 view seeds"
    zs = next(r for r in rows if r.method == "zero-shot").orders
    assert zs is not None and zs.sd == 0.0  # a method the views do not change: no spread


@pytest.mark.slow
def test_seeds_2_on_a_narrowed_run_reports_the_spread(tmp_path: Path) -> None:
    db = tmp_path / "lb.sqlite"
    cmd = [sys.executable, "-m", "rlcf_bench", "run", "--method", "tpt-prompt", "--method", "zero-shot",
           "--dataset", "micro-noise", "--limit", "4", "--seeds", "2", "--db", str(db), "-j", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 view seeds: top1" in done.stdout  # the end-of-run table's notes
    rows = json.loads(subprocess.run([sys.executable, "-m", "rlcf_bench", "report", "--format", "json", "--db",
                                      str(db)], capture_output=True, text=True, check=True).stdout)
    tpt = next(r for r in rows if r.get("method") == "tpt-prompt")
    assert tpt["orders"]["view_seeds"] == [0, 1] and len(tpt["orders"]["run_ids"]) == 2
