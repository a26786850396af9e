"""Fuzz the command line with bad values for every numeric or enumerated option: the user sees one
``error:`` line (never a traceback), the exit code is 2, and no store file is written."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

PLUGINS = ["--disable-plugin-autoload", "-p", "rlcf_bench_tasks", "-p", "rlcf_bench_baselines", "-p", "rlcf_bench_fixtures",
           "-p", "rlcf_bench_rlcf"]
BASE = ["run", *PLUGINS, "--task", "classification", "--dataset", "tiny-colors", "--model", "tiny-clip", "-q"]

junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=12)
non_positive = st.integers(max_value=0).map(str)
negative = st.integers(max_value=-1).map(str)
not_an_int = junk.filter(lambda s: not s.strip().lstrip("+-").isdigit())
bad_float = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999", "", "x", "--1"])


def _bad_option(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [f"{flag}={v}"])


BAD_ARGS = st.one_of(
    _bad_option("--limit", non_positive | not_an_int),
    _bad_option("--batch-size", non_positive | not_an_int),
    _bad_option("--jobs", non_positive | not_an_int),
    _bad_option("--orders", non_positive | not_an_int),
    _bad_option("--seeds", non_positive | not_an_int),
    _bad_option("--views", non_positive | not_an_int),
    _bad_option("--seed", negative | not_an_int),
    _bad_option("--precision", junk.filter(lambda s: s not in {"auto", "fp32", "tf32", "amp-fp16", "amp-bf16"})),
    _bad_option("--on-corrupt", junk.filter(lambda s: s not in {"fail", "skip"})),
    _bad_option("--device", st.sampled_from(["gpu", "cuda:x", "tpu", "", "cpu:-1x", "meta", "mps:0"])),
    st.tuples(st.sampled_from(["tpt-prompt", "rlcf-prompt"]), st.sampled_from(["steps", "sample_k"]),
              negative | not_an_int).map(lambda t: ["--method", t[0], "--reward-model", "tiny-clip", "-m", f"{t[1]}={t[2]}"]),
    st.tuples(st.sampled_from(["tpt-prompt", "tpt-image"]), st.sampled_from(["lr", "weight_decay"]),
              bad_float | st.floats(max_value=-1e-9, allow_nan=False).map(repr))
      .map(lambda t: ["--method", t[0], "-m", f"{t[1]}={t[2]}"]),
    st.sampled_from([["-m", "nosuch=1"], ["-m", "=1"], ["-m", "steps"], ["--method", "no-such-method"],
                     ["--data-param", "x"], ["--limit"], ["--nosuch"]]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=BAD_ARGS)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path_factory, capsys, bad):
    from rlcf_bench.cli import main

    folder = tmp_path_factory.mktemp("fuzz")
    db = folder / "lb.sqlite"
    with pytest.raises(SystemExit) as info:
        main([*BASE, *bad, "--db", str(db)])
    err = capsys.readouterr().err
    assert info.value.code == 2, (bad, err)
    assert "Traceback" not in err, (bad, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (bad, err)
    assert list(folder.iterdir()) == [], bad


def test_the_table_covers_every_numeric_run_option():
    """A new numeric option of ``run`` must get a range (and a row in BAD_ARGS)."""
    import click

    from rlcf_bench.cli import build_cli, build_host, split_global_options

    opts, _ = split_global_options(PLUGINS)
    run = build_cli(build_host(opts)).commands["run"]
    numeric = {p.name for p in run.params if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType))}
    ranged = {p.name for p in run.params if isinstance(p.type, (click.IntRange, click.FloatRange))}
    assert numeric == ranged, numeric - ranged
    assert ranged == {"limit", "orders", "seeds", "seed", "views", "batch_size", "jobs"}


# ------------------------------------------------------------------ own data (issue 31, case 5)
OWN_PLUGINS = [*PLUGINS, "-p", "rlcf_bench_datasets"]


def _image(fmt: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((24, 24), 40).convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG = _image("PNG"), _image("JPEG")
CONTENTS = {"png": PNG, "jpeg": JPEG, "truncated-jpeg": JPEG[: len(JPEG) // 2], "truncated-png": PNG[:-40],
            "empty": b"", "garbage": b"\x89PNG not really"}
# any bytes a Linux name may hold (no "/", no NUL), Latin-1 and invalid UTF-8 included
fs_name = st.binary(min_size=1, max_size=6).map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_").lstrip(b".")) \
    .filter(bool)
# mostly good images, so that most examples reach a passing check and a run
kinds = st.one_of(*[st.just("png")] * 4, st.just("jpeg"), st.sampled_from(sorted(CONTENTS)))
own_file = st.tuples(fs_name, st.one_of(st.just(".png"), st.just(".jpg"), st.just(".png"),
                                        st.sampled_from([".JPEG", ".txt"])), kinds)
good_tree = st.dictionaries(fs_name, st.lists(own_file, min_size=1, max_size=3), min_size=1, max_size=3)
own_tree = st.one_of(good_tree, good_tree, good_tree, st.dictionaries(fs_name, st.lists(own_file, max_size=2),
                                                                      max_size=2))
encoding = st.just([]) | st.just(["--data-param", "name_encoding=latin-1"]) | \
    st.sampled_from([[], ["--data-param", "name_encoding=nope"], ["--data-param", "label_column=other"]])
columns = st.just(["image", "label"]) | st.just(["image", "label", "caption"]) | \
    st.lists(st.sampled_from(["image", "label", "caption", "other"]), unique=True, max_size=4)


def _write_tree(root: bytes, tree: dict[bytes, list[tuple[bytes, str, str]]]) -> None:
    import os

    for cls, files in tree.items():
        os.makedirs(root + b"/" + cls, exist_ok=True)
        for stem, ext, kind in files:
            with open(root + b"/" + cls + b"/" + stem + ext.encode(), "wb") as fh:
                fh.write(CONTENTS[kind])


def _write_manifest(folder: bytes, tree: dict[bytes, list[tuple[bytes, str, str]]], cols: list[str]) -> str:
    """A CSV manifest over the tree's files with the drawn columns (some may be missing)."""
    import csv
    import os

    path = os.fsdecode(folder + b"/m.csv")
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for cls, files in tree.items():
            for stem, ext, _ in files:
                rel = os.fsdecode(b"tree/" + cls + b"/" + stem + ext.encode())
                cells = {"image": rel, "label": os.fsdecode(cls), "caption": f"a photo of {rel}", "other": "x"}
                writer.writerow([cells[c] for c in cols])
    return "csv:" + path


def _check_and_run(main_args: list[str], dataset: str, extra: list[str], folder, capsys) -> None:
    """``data check`` and ``run`` on one dataset: no traceback, exit codes as documented, nothing
    written on refusal, and never a check that passes where the run then fails."""
    from rlcf_bench.cli import main

    def call(args: list[str]) -> tuple[int, str]:
        with pytest.raises(SystemExit) as info:
            main(args)
            raise SystemExit(0)
        out = capsys.readouterr()
        return int(info.value.code or 0), out.out + out.err

    params = [a.replace("--data-param", "--param") for a in extra]
    check_code, check_out = call(["data", "check", dataset, *OWN_PLUGINS, "--workers", "2", *params])
    db = folder / "lb.sqlite"
    run_code, run_out = call([*main_args, "--dataset", dataset, *extra, "--db", str(db)])
    event(f"check exit {check_code}, run exit {run_code}")
    assert "Traceback" not in check_out + run_out, (check_out, run_out)
    assert check_code in (0, 1, 2) and run_code in (0, 1, 2), (check_code, run_code, run_out)
    assert not (check_code == 0 and run_code != 0), ("check passed, run failed", check_out, run_out)
    if run_code == 2:
        assert not db.exists(), run_out  # a refusal writes nothing
        errors = [line for line in run_out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, run_out


OWN_RUN = ["run", *OWN_PLUGINS, "--task", "classification", "--method", "zero-shot", "--model", "tiny-clip",
           "--device", "cpu", "-q", "-j", "1"]


def _own_data_case(tmp_path_factory, capsys, tree, enc, cols, manifest: bool) -> None:
    import os

    folder = tmp_path_factory.mktemp("own")
    root = os.fsencode(folder) + b"/tree"
    _write_tree(root, tree)
    dataset = _write_manifest(os.fsencode(folder), tree, cols) if manifest else "folder:" + os.fsdecode(root)
    _check_and_run(OWN_RUN, dataset, enc, folder, capsys)


OWN_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=4, **OWN_SETTINGS)  # type: ignore[arg-type]
@given(tree=own_tree, enc=encoding, cols=columns, manifest=st.booleans())
def test_own_data_check_agrees_with_the_run(tmp_path_factory, capsys, tree, enc, cols, manifest):
    _own_data_case(tmp_path_factory, capsys, tree, enc, cols, manifest)


@pytest.mark.slow
@settings(max_examples=60, **OWN_SETTINGS)  # type: ignore[arg-type]
@given(tree=own_tree, enc=encoding, cols=columns, manifest=st.booleans())
def test_own_data_check_agrees_with_the_run_many(tmp_path_factory, capsys, tree, enc, cols, manifest):
    _own_data_case(tmp_path_factory, capsys, tree, enc, cols, manifest)
