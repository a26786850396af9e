"""Report filters that do not lie (issue 28): ``--method`` / ``--dataset`` are repeatable, a
filtered paper table keeps the unfiltered best marks and says so, and a dataset filter never
reports a filtered-out run as missing nor changes an adjusted p-value.

Constructed store: three domains d1..d3 of a declared group, 20 samples each; zero-shot right on
s00-s09, tpt-prompt on s00-s10, rlcf-prompt on s00-s14 (best everywhere); "lonely" ran on d1 and
d2 only (its missing d3 is real, so the unfiltered report notes it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_store import add_run, cls_metrics, correct_on, render, render_paper

from rlcf_bench import Comparisons, DatasetAverage, MethodFamily, SuiteSpec, hookimpl
from rlcf_bench.cli import GlobalOptions, build_cli, build_host
from rlcf_bench.plugins import PluginHost
from rlcf_bench.report import build_for
from rlcf_bench.store import Store

DOMAINS = ("d1", "d2", "d3")
HITS = {"zero-shot": set(range(10)), "tpt-prompt": set(range(11)), "rlcf-prompt": set(range(15))}
COMPARISONS = Comparisons(reference="zero-shot", families=(MethodFamily("prompt", "tpt-prompt", ("rlcf-prompt",)),))


class _Suite:
    @hookimpl
    def rlcfb_register_suites(self) -> list[SuiteSpec]:
        return [SuiteSpec("constructed", "three domains", lambda methods: [],
                          averages=(DatasetAverage("OOD avg", DOMAINS),), comparisons=COMPARISONS)]


def _cls(store: Store, dataset: str, method: str, hits: set[int]) -> int:
    sc = correct_on(20, hits)
    return add_run(store, task="classification", kind="classification", dataset=dataset, method=method, scores=sc,
                   metrics=cls_metrics(sc))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'filters.sqlite'}")
    for d in DOMAINS:
        for method, hits in HITS.items():
            _cls(s, d, method, hits)
    _cls(s, "d1", "lonely", HITS["zero-shot"])
    _cls(s, "d2", "lonely", HITS["zero-shot"])
    return s


@pytest.fixture
def host() -> PluginHost:
    return PluginHost(autoload=False, extra=[_Suite()])


def _json_methods(text: str) -> set[tuple[str, str]]:
    return {(r["method"], r["dataset"]) for r in json.loads(text) if r.get("row_kind", "run") == "run"}


def test_method_and_dataset_filters_compose_and_repeat(store: Store, host: PluginHost) -> None:
    both = _json_methods(render(store, "json", host=host, method=("tpt-prompt", "lonely"), dataset=("d1", "d3")))
    assert both == {("tpt-prompt", "d1"), ("tpt-prompt", "d3"), ("lonely", "d1")}
    assert _json_methods(render(store, "json", host=host, method="zero-shot")) == {("zero-shot", d) for d in DOMAINS}


def test_cli_repeats_method_and_dataset(store: Store, tmp_path: Path) -> None:
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = ["rlcf_bench_tasks"]
    db = str(tmp_path / "filters.sqlite")
    result = CliRunner().invoke(build_cli(build_host(opts)),
                                ["report", "--format", "json", "--db", db, "--method", "tpt-prompt",
                                 "--method", "rlcf-prompt", "--dataset", "d2", "--dataset", "d3"])
    assert result.exit_code == 0, result.output
    got = _json_methods(result.stdout)
    assert got == {(m, d) for m in ("tpt-prompt", "rlcf-prompt") for d in ("d2", "d3")}  # not only the last of each


def test_filtered_paper_table_keeps_the_unfiltered_best_and_says_so(store: Store, host: PluginHost) -> None:
    md = render_paper(store, "markdown", host=host, method="tpt-prompt")
    row = next(line for line in md.splitlines() if line.startswith("| tpt-prompt |"))
    assert "**" not in row  # rlcf-prompt is best in every column, even where it is not shown
    assert not any(line.startswith("| rlcf-prompt |") for line in md.splitlines())
    assert "best marks are those of the unfiltered report" in md
    full = render_paper(store, "markdown", host=host)
    assert "**" in next(line for line in full.splitlines() if line.startswith("| rlcf-prompt |"))
    assert "Filtered to" not in full
    latex = render_paper(store, "latex", host=host, method="tpt-prompt")
    assert "textbf" not in latex.split("tpt-prompt", 2)[-1].split("\\\\")[0]  # its LaTeX row has no bold cell


def test_dataset_filter_never_reports_a_filtered_run_missing(store: Store, host: PluginHost) -> None:
    unfiltered = render(store, "markdown", host=host)
    assert "no comparable run on d3" in unfiltered  # lonely really has no d3 run
    md = render(store, "markdown", host=host, dataset="d1")
    assert "no comparable run" not in md
    assert "OOD avg: not shown, the dataset filter leaves out d2, d3" in md
    assert md.count("not shown, the dataset filter") == 1
    # the whole group kept: its average rows and its true notes stay
    kept = build_for(store, host, dataset=DOMAINS)
    assert {a.method for a in kept.averages} == set(HITS)
    assert any("no comparable run on d3" in n for n in kept.average_notes)


def test_a_filter_changes_no_adjusted_p_value(store: Store, host: PluginHost) -> None:
    full = {r.run_id: r for r in build_for(store, host).rows}
    for kw in ({"dataset": "d2"}, {"method": ("rlcf-prompt", "tpt-prompt")}, {"dataset": "d2", "method": "lonely"}):
        shown = build_for(store, host, **kw).rows  # type: ignore[arg-type]
        assert shown
        for row in shown:
            ref, base = row.vs_reference, full[row.run_id].vs_reference
            assert (ref is None) == (base is None)
            if ref is not None and base is not None:
                assert (ref.p_value, ref.p_adjusted) == (base.p_value, base.p_adjusted)
            assert row.rank == full[row.run_id].rank
