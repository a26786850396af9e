"""Silent surprises in reports (issue 28): two versions of a method are told apart in every
format, and a second view seed never silently replaces the first in the paper table.

Constructed store: micro-hard, 20 samples; zero-shot right on s00-s09; tpt version 1 on s00-s11,
version 2 (same configuration) on s00-s14; then ``run --seed 1`` of both methods (another
protocol hash) with other results.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from report_store import add_run, cls_metrics, correct_on, render, render_paper

from rlcf_bench.store import Store

SEED0 = {"seed": 0, "params": {}}
SEED1 = {"seed": 1, "params": {}}
P_SEED1 = "s1" + "1" * 14


def _cls(store: Store, method: str, hits: set[int], **kw: object) -> int:
    sc = correct_on(20, hits)
    return add_run(store, task="classification", kind="classification", dataset="micro-hard", method=method,
                   scores=sc, metrics=cls_metrics(sc), **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'versions.sqlite'}")
    _cls(s, "zero-shot", set(range(10)), protocol=SEED0)
    _cls(s, "tpt", set(range(12)), protocol=SEED0, method_version="1")
    _cls(s, "tpt", set(range(15)), protocol=SEED0, method_version="2")
    return s


def test_method_version_in_every_format(store: Store) -> None:
    md = render(store, "markdown")
    assert "| tpt v1 |" in md.replace("  ", " ") and "| tpt v2 |" in md.replace("  ", " ")  # the ranked table
    assert "| run | method | method version | model |" in md  # and every run's version in the metrics table
    html = render(store, "html")
    assert "tpt v1" in html and "tpt v2" in html and "method version" in html
    rows = list(csv.DictReader(io.StringIO(render(store, "csv"))))
    assert sorted(r["method_version"] for r in rows if r["method"] == "tpt") == ["1", "2"]
    items = [i for i in json.loads(render(store, "json")) if i.get("method") == "tpt"]
    assert sorted(i["method_version"] for i in items) == ["1", "2"]
    paper = render_paper(store, "markdown")
    assert "| tpt v1 |" in paper and "| tpt v2 |" in paper


def test_one_version_shows_no_version_mark(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'one.sqlite'}")
    _cls(s, "zero-shot", set(range(10)))
    _cls(s, "tpt", set(range(12)))
    md = render(s, "markdown")
    assert " v1 |" not in md and "| tpt " in md


def test_a_second_seed_never_replaces_the_first_in_the_paper_table(store: Store) -> None:
    before = render_paper(store, "markdown")
    _cls(store, "zero-shot", set(range(5)), protocol=SEED1, protocol_hash=P_SEED1)
    _cls(store, "tpt", set(range(4)), protocol=SEED1, protocol_hash=P_SEED1, method_version="1")
    _cls(store, "tpt", set(range(3)), protocol=SEED1, protocol_hash=P_SEED1, method_version="2")
    after = render_paper(store, "markdown")
    rows = [line for line in after.splitlines() if line.startswith("| zero-shot") or line.startswith("| tpt")]
    assert rows == [line for line in before.splitlines() if line.startswith("| zero-shot") or line.startswith("| tpt")]
    assert "| zero-shot | 50.00" in after.replace("**", "")  # seed 0's numbers, not seed 1's 25.00
    assert "Protocol seed 0, one run per cell" in after  # the table says which seed it shows
    full = render(store, "markdown")
    assert "2 view seeds: top1 37.50" in full  # zero-shot: seed 0 (50.00) and seed 1 (25.00) folded, not replaced


def test_an_equal_group_of_another_seed_does_not_become_the_main_group(tmp_path: Path) -> None:
    """Seed 0 for zero-shot and tpt, then ``--seed 1`` for two other methods only (no twin to fold
    into): two groups of equal size; the seed-0 group stays the one the paper table shows."""
    s = Store(f"sqlite:///{tmp_path / 'tie.sqlite'}")
    _cls(s, "zero-shot", set(range(10)), protocol=SEED0)
    _cls(s, "tpt", set(range(12)), protocol=SEED0)
    _cls(s, "mta", set(range(18)), protocol=SEED1, protocol_hash=P_SEED1)
    _cls(s, "zero", set(range(17)), protocol=SEED1, protocol_hash=P_SEED1)
    paper = render_paper(s, "markdown")
    assert "| zero-shot |" in paper and "| tpt |" in paper and "| mta |" not in paper
    assert "Protocol seed 0, one run per cell" in paper
