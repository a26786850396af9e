"""``caption train --preset NAME`` finds its presets on the session's plugins (the micro suite
offers ``micro``), so the package of the caption commands (rlcf_bench_models) imports no suite."""

from __future__ import annotations

import click
from click.testing import CliRunner

from rlcf_bench.cli import GlobalOptions, build_cli, build_host
from rlcf_bench.plugins import PluginHost
from rlcf_bench_micro import captioner
from rlcf_bench_models.clipcap_commands import caption_presets


def test_the_micro_suite_offers_its_preset_and_blocking_it_removes_it():
    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_micro"])
    assert caption_presets(host) == {"micro": captioner.train_preset}
    blocked = PluginHost(autoload=False, blocked=["rlcf_bench_micro"], extra=["rlcf_bench_tasks", "rlcf_bench_micro"])
    assert caption_presets(blocked) == {}


def test_two_plugins_offering_one_preset_is_an_error_naming_both():
    class Other:
        CAPTION_PRESETS = {"micro": captioner.train_preset}

    host = PluginHost(autoload=False, extra=["rlcf_bench_micro"])
    host.register(Other(), name="other")
    try:
        caption_presets(host)
    except click.UsageError as exc:
        assert "'micro' is offered by plugins" in str(exc) and "'other'" in str(exc)
        assert "rlcf_bench_micro.captioner" in str(exc)
    else:
        raise AssertionError("two offers of one preset were accepted")


def test_an_unknown_preset_is_a_usage_error_listing_the_installed_ones(tmp_path):
    opts = GlobalOptions()
    opts.autoload = False
    opts.plugins = ["rlcf_bench_models", "rlcf_bench_micro"]
    result = CliRunner().invoke(build_cli(build_host(opts)),
                                ["caption", "train", "--preset", "nosuch", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert "unknown preset 'nosuch' (installed: micro)" in result.output
    assert not (tmp_path / "c").exists()
