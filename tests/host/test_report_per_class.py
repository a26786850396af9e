"""``report --per-class RUN``: per-class accuracy with Wilson intervals, balanced accuracy, the
collapse share and the confusion matrix, recomputed here from the stored rows."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from rlcf_bench.runner import RunRequest
from rlcf_bench.stats import wilson_interval


@pytest.fixture
def classification_run(runner, store):
    result = runner.run(RunRequest("classification", "tiny-colors", "zero-shot", "tiny-clip",
                                   protocol_overrides=(("limit", 12),)))
    return result.run_id


def test_per_class_json_matches_the_stored_rows(cli, store, classification_run):
    out = CliRunner().invoke(cli, ["report", "--per-class", str(classification_run), "--format", "json",
                                   "--db", store.url])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output[out.output.index("{"):])
    rows = [(r.target, r.prediction) for r in store.sample_rows(classification_run)]
    assert data["n"] == len(rows) == 12
    assert [c["name"] for c in data["classes"]] == ["red", "green", "blue", "yellow"]  # from the dataset
    for c in data["classes"]:
        mine = [(t, p) for t, p in rows if t == c["index"]]
        correct = sum(t == p for t, p in mine)
        assert (c["n"], c["correct"]) == (len(mine), correct)
        assert (c["ci_low"], c["ci_high"]) == pytest.approx(wilson_interval(correct, len(mine)))
        assert c["predicted"] == sum(p == c["index"] for _, p in rows)
        assert data["confusion"][c["index"]] == [sum(1 for t, p in mine if p == k) for k in range(4)]
    recalls = [c["correct"] / c["n"] for c in data["classes"] if c["n"]]
    assert data["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
    top, count = Counter(p for _, p in rows).most_common(1)[0]
    assert (data["collapse_class"], data["collapse_share"]) == (top, pytest.approx(count / 12))
    assert data["top1"] == pytest.approx(sum(t == p for t, p in rows) / 12)


def test_per_class_markdown_and_csv(cli, store, classification_run):
    md = CliRunner().invoke(cli, ["report", "--per-class", str(classification_run), "--db", store.url])
    assert md.exit_code == 0 and "balanced accuracy" in md.output and "| true \\ predicted | red |" in md.output
    csv_out = CliRunner().invoke(cli, ["report", "--per-class", str(classification_run), "--format", "csv",
                                       "--db", store.url])
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0].startswith("class,name,n,correct,accuracy")


def test_per_class_refuses_what_it_cannot_show(cli, store, classification_run):
    missing = CliRunner().invoke(cli, ["report", "--per-class", "999", "--db", store.url])
    assert missing.exit_code == 2 and "no run with id 999" in missing.output
    html = CliRunner().invoke(cli, ["report", "--per-class", str(classification_run), "--format", "html",
                                    "--db", store.url])
    assert html.exit_code == 2 and "markdown, csv or json" in html.output


def test_per_class_refuses_a_retrieval_run(cli, runner, store):
    result = runner.run(RunRequest("retrieval", "tiny-captions", "zero-shot", "tiny-clip",
                                   protocol_overrides=(("limit", 4),)))
    out = CliRunner().invoke(cli, ["report", "--per-class", str(result.run_id), "--db", store.url])
    assert out.exit_code == 2 and "is a retrieval run" in out.output
