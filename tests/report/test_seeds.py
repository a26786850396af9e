"""``--seeds N``: N protocol (view) seeds per run, a protocol hash each, and reports that show the
spread over seeds (and stream orders) in the row of the first seed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_store import add_run, build_report, build_rows, cls_metrics, correct_on, render

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


def test_hierarchical_bootstrap_carries_the_spread_between_repetitions() -> None:
    import numpy as np

    from rlcf_bench.stats import hierarchical_paired_bootstrap, paired_bootstrap

    rng = np.random.default_rng(2)
    a = rng.normal(0.6, 0.1, 400)
    b = a - 0.02 + rng.normal(0, 0.05, 400)
    one = hierarchical_paired_bootstrap([(a, b)])
    plain = paired_bootstrap(a, b)
    width = plain.ci_high - plain.ci_low
    assert one.mean_diff == pytest.approx(plain.mean_diff)
    assert one.ci_low == pytest.approx(plain.ci_low, abs=0.1 * width)  # one repetition: the paired bootstrap
    assert one.ci_high == pytest.approx(plain.ci_high, abs=0.1 * width)
    # Two seeds whose differences disagree: the interval must cover the spread between them.
    shifted = hierarchical_paired_bootstrap([(a, b), (a, b + 0.06)])
    assert shifted.mean_diff == pytest.approx(((a - b).mean() + (a - b - 0.06).mean()) / 2)
    assert shifted.ci_high - shifted.ci_low > 3 * width
    assert shifted.ci_low <= (a - b - 0.06).mean() and shifted.ci_high >= (a - b).mean()


def test_spread_tests_compare_over_all_seeds(tmp_path: Path) -> None:
    from report_store import KNOWN_COMPARISONS

    from rlcf_bench.report.render import ClaimOptions

    store = Store(f"sqlite:///{tmp_path / 'seeds.sqlite'}")
    first = _seeded(store, "tpt", 0, set(range(20)))
    _seeded(store, "tpt", 1, set(range(30)))
    _seeded(store, "zero-shot", 0, set(range(18)))
    _seeded(store, "zero-shot", 1, set(range(18)))
    plain = {r.run_id: r for r in build_rows(store)}[first].vs_reference
    assert plain is not None and plain.repetitions == 1 and plain.delta == pytest.approx(5.0)  # seed 0 only
    spread = {r.run_id: r for r in build_report(store, spread_tests=True).rows}[first].vs_reference
    assert spread is not None and spread.test == "hierarchical-bootstrap" and spread.repetitions == 2
    assert spread.delta == pytest.approx((5.0 + 30.0) / 2)  # the Δ is the tested quantity: mean over the seeds
    assert spread.ci_low < spread.delta < spread.ci_high and not math.isnan(spread.p_adjusted)
    md = render(store, "markdown", claims=ClaimOptions(comparisons=KNOWN_COMPARISONS, spread_tests=True))
    assert "mean over 2 seeds/orders" in md
