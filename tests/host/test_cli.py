"""The command line, through click's runner and (for the global options) ``main``."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from rlcf_bench.cli import split_global_options


def test_global_options_are_taken_from_anywhere():
    opts, rest = split_global_options(["ls", "-p", "no:example", "methods", "--plugins-dir=/x", "-pfoo",
                                       "--disable-plugin-autoload"])
    assert rest == ["ls", "methods"] and opts.blocked == ["example"] and opts.plugins == ["foo"]
    assert opts.plugins_dirs == ["/x"] and opts.autoload is False


def test_ls_lists_components_with_versions_and_providers(cli):
    out = CliRunner().invoke(cli, ["ls", "methods"])
    assert out.exit_code == 0
    assert "zero-shot" in out.output and "[rlcf_bench_baselines.zero_shot]" in out.output and "tasks=classification" in out.output
    out = CliRunner().invoke(cli, ["ls", "datasets", "tiny-col*"])
    assert out.output.startswith("tiny-colors") and "zero-shot" not in out.output


def test_plugins_lists_hooks(cli):
    out = CliRunner().invoke(cli, ["plugins", "--json"])
    infos = {i["name"]: i for i in json.loads(out.output)}
    assert "rlcfb_register_methods" in infos["rlcf_bench_baselines.zero_shot"]["hooks"]
    assert "rlcfb_run_step" in infos["terminal"]["hooks"]


def test_validate_passes_on_a_consistent_plugin_set(cli):
    out = CliRunner().invoke(cli, ["validate"])
    assert out.exit_code == 0, out.output
    assert "ok    methods" in out.output


def test_run_then_report_json(cli, tmp_path):
    db = str(tmp_path / "lb.sqlite")
    args = ["run", "--task", "classification", "--dataset", "tiny-colors", "--method", "zero-shot", "--model",
            "tiny-clip", "--limit", "4", "--db", db, "--quiet"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(cli, ["report", "--format", "json", "--db", db])
    rows = json.loads(out.output)
    assert len(rows) == 1
    row = rows[0]
    assert (row["task"], row["dataset"], row["method"], row["model"]) == ("classification", "tiny-colors", "zero-shot", "tiny-clip")
    assert row["n_samples"] == 4 and "top1" in json.dumps(row) and row["latency"]["ms_per_sample_mean"] > 0


def test_dry_run_and_unknown_names(cli):
    out = CliRunner().invoke(cli, ["run", "--task", "classification", "--dataset", "tiny-colors", "--method",
                                   "zero-shot", "--model", "tiny-clip", "-m", "templates=ensemble", "--dry-run"])
    assert out.exit_code == 0 and "templates=ensemble" in out.output
    out = CliRunner().invoke(cli, ["run", "--dataset", "tiny-colors", "--method", "zero-shoot", "--model", "tiny-clip",
                                   "--task", "classification", "--dry-run"])
    assert out.exit_code == 2 and "did you mean 'zero-shot'" in out.output


def test_ls_imports_no_model_library():
    """Registration is cheap: ``rlcf-bench ls`` imports neither torch nor any model library (method
    modules defer torch through ``rlcf_bench.lazy``)."""
    out = subprocess.run([sys.executable, "-c", "import sys\nsys.argv=['rlcf-bench','ls','methods']\n"
                          "from rlcf_bench import cli\ntry:\n    cli.main()\nexcept SystemExit:\n    pass\n"
                          "print(sorted(m for m in ('torch', 'open_clip', 'transformers', 'timm') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout
