"""``data check`` and ``run`` agree on your own data (issue 31, cases 1 and 2).

Case 1: the check decodes every image with the run's own loader, so no file passes the check and
then stops the run — tested on each kind of bad file a scraped tree holds, in ``folder:``,
``csv:``, ``wds:`` and ``hf:`` datasets, by running both commands and comparing. Case 2: file and
class names are whatever bytes the file system holds (Latin-1, invalid UTF-8): check, run, store
and every report format work, and the names are stored as text (``\\xNN`` for bytes that are not
UTF-8, or decoded with a declared ``name_encoding``).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlcf_bench.cli import build_cli, build_host, split_global_options

PLUGINS = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_datasets"]


@pytest.fixture(scope="module")
def cli() -> Any:
    opts, _ = split_global_options(["--disable-plugin-autoload", *(a for p in PLUGINS for a in ("-p", p))])
    return build_cli(build_host(opts))


def check(cli: Any, dataset: str, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["data", "check", dataset, "--workers", "2", *extra])


def run(cli: Any, db: Path, dataset: str, *extra: str, method: str = "zero-shot") -> Any:
    return CliRunner().invoke(cli, ["run", "--task", "classification", "--dataset", dataset, "--method", method,
                                    "--model", "tiny-clip", "--device", "cpu", "-j", "1", "-q", "--db", str(db), *extra])


def noise(fmt: str, size: int = 48) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((size, size), 60).convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


def bomb() -> bytes:
    """A small PNG whose header declares more pixels than PIL's decompression-bomb limit."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")
    return buf.getvalue()


# name, (file name, writer of the bad entry), whether a run stops on it
def _truncated_jpeg(path: Path) -> None:
    path.write_bytes(noise("JPEG")[:-300])


def _truncated_png(path: Path) -> None:
    path.write_bytes(noise("PNG")[:-300])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _bomb(path: Path) -> None:
    path.write_bytes(bomb())


def _symlink_out_dangling(path: Path) -> None:
    os.symlink(path.parents[3] / "gone.png", path)  # out of the tree, to nothing


def _symlink_out_valid(path: Path) -> None:
    target = path.parents[3] / "outside.png"
    target.write_bytes(noise("PNG"))
    os.symlink(target, path)  # out of the tree, to a good image: read like any file


BAD_FILES: dict[str, tuple[str, Callable[[Path], None], bool]] = {
    "truncated-jpeg": ("bad.jpg", _truncated_jpeg, True),
    "truncated-png": ("bad.png", _truncated_png, True),
    "zero-bytes": ("bad.jpg", _zero_bytes, True),
    "decompression-bomb": ("bad.png", _bomb, True),
    "symlink-out-of-tree-dangling": ("bad.png", _symlink_out_dangling, True),
    "symlink-out-of-tree-valid": ("bad.png", _symlink_out_valid, False),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_folder_check_fails_exactly_where_the_run_stops(cli, own, tmp_path, case):
    fname, write, stops = BAD_FILES[case]
    tree = own.tree(tmp_path / "a" / "b" / "tree", {"circle": 2, "square": 2})
    write(tree / "circle" / fname)
    name = f"folder:{tree}"
    checked, ran = check(cli, name), run(cli, tmp_path / "lb.sqlite", name)
    assert "Traceback" not in checked.output + ran.output
    assert (checked.exit_code != 0) == (ran.exit_code != 0) == stops, (case, checked.output, ran.output)
    if stops:  # the check names the file the run stops on
        assert f"circle/{fname}" in checked.output and f"circle/{fname}" in ran.output, checked.output


def _manifest_dataset(own: Any, base: Path, bad: bytes) -> str:
    own.tree(base / "img", {"circle": 2, "square": 2})
    (base / "img" / "circle" / "bad.jpg").write_bytes(bad)
    rows = [{"image": f"img/{c}/{k}.png", "label": c} for c in ("circle", "square") for k in range(2)]
    rows.append({"image": "img/circle/bad.jpg", "label": "circle"})
    return f"csv:{own.manifest(base / 'm.csv', rows)}"


def _wds_dataset(own: Any, base: Path, bad: bytes) -> str:
    samples: list[dict[str, Any]] = [{"__key__": f"k{i}", "png": own.png((60 * i, 0, 90)), "cls": str(i % 2)}
                                     for i in range(4)]
    samples.append({"__key__": "bad", "jpg": bad, "cls": "0"})
    pattern = own.shards(base / "shards", [samples[:2], samples[2:]])
    (base / "shards" / "classnames.txt").write_text("circle\nsquare\n")
    return f"wds:{pattern}"


def _hf_dataset(own: Any, base: Path, bad: bytes) -> str:
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["circle", "square"])})
    images = [{"bytes": own.png((50 * i, 9, 9)), "path": None} for i in range(4)] + [{"bytes": bad, "path": None}]
    ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0, 1, 0]}, features=features)
    ds.save_to_disk(str(base / "hf"))
    return f"hf:{base / 'hf'}"


@pytest.mark.parametrize("scheme", ["csv", "wds", "hf"])
def test_manifest_and_shard_entries_are_decoded_by_the_check(cli, own, tmp_path, scheme):
    """A truncated JPEG listed in a manifest, packed in a shard or stored in an Arrow cell: the
    header reads, so only a full decode (the run's) finds it; the check names the entry."""
    if scheme in ("wds", "hf"):
        pytest.importorskip({"wds": "webdataset", "hf": "datasets"}[scheme])
    make = {"csv": _manifest_dataset, "wds": _wds_dataset, "hf": _hf_dataset}[scheme]
    name = make(own, tmp_path, noise("JPEG")[:-300])
    checked, ran = check(cli, name), run(cli, tmp_path / "lb.sqlite", name)
    assert checked.exit_code == 1 and ran.exit_code == 1, (checked.output, ran.output)
    assert "1 image(s) cannot be decoded" in checked.output and "truncated" in checked.output
    where = {"csv": "img/circle/bad.jpg", "wds": "000001.tar:bad.jpg", "hf": "row 4"}[scheme]
    assert where in checked.output and where in ran.output, checked.output


def test_shards_decode_in_threads_in_any_order(own, tmp_path):
    """The check and retrieval decode shard members from several threads: each thread has its
    own cursor, so every index gets its own image."""
    from concurrent.futures import ThreadPoolExecutor

    from rlcf_bench.plugins import PluginHost

    pytest.importorskip("webdataset")
    samples = [{"__key__": f"k{i}", "png": own.png((20 * i, 0, 90)), "cls": str(i % 2)} for i in range(12)]
    pattern = own.shards(tmp_path / "shards", [samples[:6], samples[6:]])
    (tmp_path / "shards" / "classnames.txt").write_text("a\nb\n")
    data = PluginHost(autoload=False, extra=["rlcf_bench_datasets"]).dataset(f"wds:{pattern}").build()
    order = [11, 0, 5, 3, 7, 2, 10, 1, 9, 4, 8, 6] * 3
    with ThreadPoolExecutor(4) as pool:
        reds = list(pool.map(lambda i: int(data.load_image(i)[0, 0, 0]), order))
    assert reds == [20 * i for i in order]


# ------------------------------------------------------------------ case 2: names as the file system gives them
LATIN1_CLASS = b"caf\xe9"  # "café" written by a Latin-1 system: not UTF-8
BAD_UTF8_FILE = b"\xff\xfe-\xc3.png"  # no encoding at all


def _bytes_tree(own: Any, base: Path) -> Path:
    """A tree whose own path, a class folder and a file name are not UTF-8."""
    root = os.fsencode(base) + b"/d\xe9p\xf4t/tree"
    for cls in (LATIN1_CLASS, b"plain"):
        os.makedirs(root + b"/" + cls)
        for k in range(2):
            with open(root + b"/" + cls + b"/" + str(k).encode() + b".png", "wb") as fh:
                fh.write(own.png((90 * k, 40 if cls == b"plain" else 200, 30)))
    with open(root + b"/plain/" + BAD_UTF8_FILE, "wb") as fh:
        fh.write(own.png((1, 2, 3)))
    return Path(os.fsdecode(root))


def test_latin1_and_invalid_utf8_names_work_through_check_run_store_and_reports(cli, own, tmp_path):
    tree = _bytes_tree(own, tmp_path)
    name = f"folder:{tree}"
    checked = check(cli, name)
    assert checked.exit_code == 0, checked.output
    assert "2 classes: caf\\xe9, plain" in checked.output  # the bytes, shown as text
    db = tmp_path / "lb.sqlite"
    for method in ("zero-shot", "tpt-prompt"):
        ran = run(cli, db, name, method=method)
        assert ran.exit_code == 0, ran.output
    shown = "folder:" + os.fsencode(tree).decode("utf-8", "backslashreplace")
    con = sqlite3.connect(db)
    assert {r[0] for r in con.execute("select dataset from runs")} == {shown}
    ids = {r[0] for r in con.execute("select sample_id from sample_results")}
    con.close()
    assert ids == {"caf\\xe9/0.png", "caf\\xe9/1.png", "plain/0.png", "plain/1.png", "plain/\\xff\\xfe-\\xc3.png"}
    # lossless: the stored id is the file's bytes under the declared encoding's escapes
    assert {i.encode().decode("unicode_escape").encode("latin-1") for i in ids} >= {b"plain/" + BAD_UTF8_FILE}
    rerun = run(cli, db, name)  # resuming matches the stored ids: the finished run is reused
    assert rerun.exit_code == 0 and sqlite3.connect(db).execute("select count(*) from runs").fetchone() == (2,)
    for args in (["--format", "markdown"], ["--format", "csv"], ["--format", "json"], ["--format", "html"],
                 ["--layout", "paper", "--format", "latex"], ["--layout", "paper", "--format", "markdown"]):
        out = CliRunner().invoke(cli, ["report", *args, "--db", str(db)])
        assert out.exit_code == 0 and "Traceback" not in out.output, (args, out.output)
        assert "xe9p" in out.output and "xf4t" in out.output, args  # each format escapes the backslash its way
    rows = json.loads(CliRunner().invoke(cli, ["report", "--format", "json", "--db", str(db)]).stdout)
    assert {r["dataset"] for r in rows} == {shown}
    compare = CliRunner().invoke(cli, ["compare", "1", "2", "--db", str(db)])
    assert compare.exit_code == 0, compare.output


def test_a_declared_name_encoding_decodes_latin1_names(cli, own, tmp_path):
    tree = _bytes_tree(own, tmp_path)
    checked = check(cli, f"folder:{tree}", "--param", "name_encoding=latin-1")
    assert checked.exit_code == 0 and "2 classes: café, plain" in checked.output, checked.output
    ran = run(cli, tmp_path / "lb.sqlite", f"folder:{tree}", "--data-param", "name_encoding=latin-1")
    assert ran.exit_code == 0, ran.output
    con = sqlite3.connect(tmp_path / "lb.sqlite")
    assert "café/0.png" in {r[0] for r in con.execute("select sample_id from sample_results")}
    bad = check(cli, f"folder:{tree}", "--param", "name_encoding=klingon")
    assert bad.exit_code == 2 and "name_encoding='klingon' is not an encoding" in bad.output
