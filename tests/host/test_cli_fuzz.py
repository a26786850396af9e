"""Fuzz the command line with bad values for every numeric or enumerated option: the user sees one
``error:`` line (never a traceback), the exit code is 2, and no store file is written."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PLUGINS = ["--disable-plugin-autoload", "-p", "rlcf_bench_tasks", "-p", "baselines", "-p", "rlcf_bench_fixtures",
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
    assert ranged == {"limit", "orders", "seed", "views", "batch_size", "jobs"}
