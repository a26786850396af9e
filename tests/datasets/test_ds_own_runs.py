"""End to end: ``rlcf-bench run --dataset SCHEME:... --method tpt-prompt --model micro-student --limit 4``
on data written by the test, for every scheme; reports show these datasets like any other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlcf_bench.cli import GlobalOptions, build_cli, build_host

PLUGINS = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_micro", "rlcf_bench_models", "rlcf_bench_datasets"]


@pytest.fixture(scope="module")
def cli() -> Any:
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = list(PLUGINS)
    return build_cli(build_host(opts))


def run(cli: Any, db: Path, dataset: str, *extra: str, methods: tuple[str, ...] = ("zero-shot", "tpt-prompt")) -> list[dict[str, Any]]:
    args = ["run", "--dataset", dataset, *[a for m in methods for a in ("--method", m)], "--model", "micro-student",
            "--limit", "4", "--db", str(db), "-j", "1", "-q", *extra]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    report = CliRunner().invoke(cli, ["report", "--format", "json", "--db", str(db)])
    return [r for r in json.loads(report.output) if r["dataset"] == dataset]


def assert_paired_runs(rows: list[dict[str, Any]], task: str = "classification") -> None:
    assert sorted(r["method"] for r in rows) == ["tpt-prompt", "zero-shot"]
    assert all(r["task"] == task and r["n_samples"] == 4 and r["dataset_version"].startswith("own1-") for r in rows)
    tpt = next(r for r in rows if r["method"] == "tpt-prompt")
    assert tpt["vs_reference"]["n_shared"] == 4  # the paired test matched every sample id


def _folder(own: Any, base: Path) -> Path:
    return own.tree(base, {"circle": 3, "square": 3})


def test_folder_runs_resumes_and_a_changed_folder_is_a_new_dataset(cli, own, tmp_path):
    tree = _folder(own, tmp_path / "my <b>data</b> & more")  # reports must escape the path
    db = tmp_path / "lb.sqlite"
    name = f"folder:{tree}"
    rows = run(cli, db, name)
    assert_paired_runs(rows)
    assert run(cli, db, name) == rows  # same content: the finished runs are reused, nothing re-run
    html = CliRunner().invoke(cli, ["report", "--format", "html", "--db", str(db)]).output
    assert "my &lt;b&gt;data&lt;/b&gt; &amp; more" in html and "<b>data</b>" not in html
    (tree / "square" / "0.png").write_bytes(own.png((0, 255, 0)))
    after = run(cli, db, name)
    new = [r for r in after if r["run_id"] not in {o["run_id"] for o in rows}]
    assert len(new) == 2 and {r["dataset_version"] for r in new}.isdisjoint({r["dataset_version"] for r in rows})
    assert {r["group"] for r in new}.isdisjoint({r["group"] for r in rows})  # never ranked with the old folder


def test_csv_runs_classification_and_retrieval(cli, own, tmp_path):
    tree = _folder(own, tmp_path / "img")
    rows = [{"image": f"img/{c}/{k}.png", "label": c, "caption": f"a {c} number {k}"}
            for c in ("circle", "square") for k in range(3)]
    manifest = own.manifest(tmp_path / "m.csv", rows)
    assert tree.is_dir()
    db = tmp_path / "lb.sqlite"
    assert_paired_runs(run(cli, db, f"csv:{manifest}"))
    retrieval = run(cli, db, f"csv:{manifest}", "--task", "retrieval", methods=("zero-shot",))
    got = [r for r in retrieval if r["task"] == "retrieval"]
    assert len(got) == 1 and {"t2i_r1", "i2t_r1"} <= set(got[0]["metrics"])


def test_jsonl_runs(cli, own, tmp_path):
    _folder(own, tmp_path / "img")
    rows = [{"image": f"img/{c}/{k}.png", "label": i} for i, c in enumerate(("circle", "square")) for k in range(3)]
    manifest = own.manifest(tmp_path / "m.jsonl", rows)
    (tmp_path / "classnames.txt").write_text("circle\nsquare\n")
    assert_paired_runs(run(cli, tmp_path / "lb.sqlite", f"csv:{manifest}"))


def test_wds_runs(cli, own, tmp_path):
    samples = [{"__key__": f"k{i}", "png": own.png((60 * i, 0, 90)), "cls": str(i % 2)} for i in range(6)]
    pattern = own.shards(tmp_path / "shards", [samples[:3], samples[3:]])
    (tmp_path / "shards" / "classnames.txt").write_text("circle\nsquare\n")
    assert_paired_runs(run(cli, tmp_path / "lb.sqlite", f"wds:{pattern}"))


def test_hf_runs(cli, own, tmp_path):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["circle", "square"])})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": own.png((50 * i, 9, 9)), "path": None} for i in range(6)],
                                     "label": [i % 2 for i in range(6)]}, features=features)
    ds.save_to_disk(str(tmp_path / "hf"))
    assert_paired_runs(run(cli, tmp_path / "lb.sqlite", f"hf:{tmp_path / 'hf'}"))


def test_bad_names_and_parameters_fail_before_anything_runs(cli, own, tmp_path):
    tree = _folder(own, tmp_path / "t")
    db = tmp_path / "lb.sqlite"
    out = CliRunner().invoke(cli, ["run", "--dataset", f"folder:{tree}", "--data-param", "colour=red", "--method",
                                   "zero-shot", "--model", "micro-student", "--db", str(db)])
    assert out.exit_code != 0 and "has no parameter 'colour'" in out.output and "Traceback" not in out.output
    (tree / "empty").mkdir()
    out = CliRunner().invoke(cli, ["run", "--dataset", f"folder:{tree}", "--method", "zero-shot", "--model",
                                   "micro-student", "--db", str(db), "-j", "1", "-q"])
    assert out.exit_code == 2 and "empty class folder" in out.output  # refused by the pre-flight check
    assert not db.exists()  # nothing was written
