"""What a new user sees: the compact table at the end of ``run``, reuse marked, the one default
leaderboard wherever the command runs, and ``report --layout paper``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import rlcf_bench
from rlcf_bench.runner import RunRequest
from rlcf_bench.store import default_db_path, resolve_db_url


def test_run_ends_with_the_runs_just_executed_then_marks_reuse(tmp_path: Path) -> None:
    from rlcf_bench.cli import GlobalOptions, build_cli, build_host

    opts = GlobalOptions()  # with the micro suite, which declares the comparisons (every method vs zero-shot)
    opts.autoload = False
    opts.plugins = ["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_fixtures", "rlcf_bench_models", "rlcf_bench_micro"]
    cli = build_cli(build_host(opts))
    db = tmp_path / "lb.sqlite"
    args = ["run", "--task", "classification", "--dataset", "tiny-colors", "--method", "zero-shot", "--method",
            "tpt-prompt", "--model", "tiny-clip", "--limit", "4", "--db", str(db), "-j", "1"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    text = out.output
    table = _summary_rows(text)
    assert sorted(table) == ["tpt-prompt", "zero-shot"]  # methods as rows, by value
    assert "· n=4 per dataset ·" in text  # n is what --limit scored
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert "tiny-colors" in header and "Δ vs zero-shot" in header  # the declared reference
    assert "How to read this report" not in text and "All metrics" not in text  # not the full leaderboard
    assert f"leaderboard: {db.resolve()}" in text and f"rlcf-bench report --db {db} --layout full" in text
    assert "reused" not in text
    assert "n=4" in text  # the run header counts the limited samples

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    table = _summary_rows(again.output)
    assert len(table) == 2 and all("reused" in notes for notes in table.values())
    assert again.output.count("— reused: finished earlier") == 2

    paper = CliRunner().invoke(cli, ["report", "--db", str(db), "--layout", "paper", "--format", "latex"])
    assert paper.exit_code == 0, paper.output
    assert r"\toprule" in paper.output and "tiny-colors" in paper.output
    assert "Zero-shot &" in paper.output and "TPT (prompt) &" in paper.output  # the methods' declared display names
    bad = CliRunner().invoke(cli, ["report", "--db", str(db), "--format", "latex"])
    assert bad.exit_code == 2 and "--layout paper" in bad.output


def _summary_rows(text: str) -> dict[str, str]:
    """The end-of-run matrix's rows: method -> notes."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method")) + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[-1]
    return rows


def test_report_on_an_empty_store_says_so(cli, tmp_path: Path) -> None:
    from rlcf_bench.store import Store

    db = tmp_path / "empty.sqlite"
    Store(str(db))
    out = CliRunner().invoke(cli, ["report", "--db", str(db)])
    assert out.exit_code == 0
    assert f"leaderboard: {db.resolve()}" in out.output and "holds no finished run" in out.output


def test_the_default_leaderboard_does_not_depend_on_the_working_directory(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLCF_BENCH_DB", raising=False)
    first = resolve_db_url(None)
    monkeypatch.chdir(tmp_path)
    assert resolve_db_url(None) == first
    repo = Path(rlcf_bench.__file__).resolve().parent.parent
    assert default_db_path() == repo / "leaderboard" / "leaderboard.sqlite"  # a checkout: its leaderboard/
    assert not (tmp_path / "leaderboard").exists()


def test_run_header_counts_the_limited_samples() -> None:
    base = dict(task="classification", dataset="micro-sketch", method="zero-shot", model="micro-student",
                dataset_params=(("n", 200),))
    assert "n=200" in RunRequest(**base).describe()
    limited = RunRequest(**base, protocol_overrides=(("limit", 20),)).describe()
    assert "n=20 " in limited and "200" not in limited
    assert "limit=5" in RunRequest(task="t", dataset="d", method="m", model="x",
                                   protocol_overrides=(("limit", 5),)).describe()


def _commands(group, path=()):
    import click

    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


def test_every_help_screen_has_an_example_and_every_option_a_help_text() -> None:
    from rlcf_bench.cli import GlobalOptions, build_cli, build_host

    cli = build_cli(build_host(GlobalOptions()))  # with every installed plugin's commands
    screens = [((), cli), *_commands(cli)]
    assert len(screens) > 10
    for path, _cmd in screens:
        out = CliRunner().invoke(cli, [*path, "--help"])
        assert out.exit_code == 0, (path, out.output)
        assert "Example" in out.output and "rlcf-bench " + " ".join(path) in out.output, path
    report = cli.commands["report"]
    assert all(p.help for p in report.params if p.name != "help"), [p.name for p in report.params if not p.help]
    text = CliRunner().invoke(cli, ["report", "--help"]).output
    assert "default: markdown" in text and "default: summary" in text


def test_ls_alone_lists_every_kind_and_suites_have_no_stray_version(cli) -> None:
    out = CliRunner().invoke(cli, ["ls"])
    assert out.exit_code == 0, out.output
    for kind in ("tasks:", "datasets:", "methods:", "models:", "reward-models:", "suites:"):
        assert kind in out.output.splitlines()
    from rlcf_bench.cli import GlobalOptions, build_cli, build_host

    full = build_cli(build_host(GlobalOptions()))  # every installed plugin: the suites too
    suites = CliRunner().invoke(full, ["ls", "suites"]).output.splitlines()
    assert suites and all(" v " not in line and not line.split()[1] == "v" for line in suites)
