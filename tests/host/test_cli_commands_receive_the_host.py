"""The built-in commands are module-level click commands that receive the session's host as click's
context object, the way a plugin's ``rlcfb_add_commands`` commands do; each host gets its own group,
so one session's plugin commands never appear in another's."""

from __future__ import annotations

from typing import Any

import click
from click.testing import CliRunner

from rlcf_bench import cli as cli_module
from rlcf_bench.hookspecs import hookimpl
from rlcf_bench.plugins import PluginHost


class _AddsACommand:
    seen: list[Any] = []

    @hookimpl
    def rlcfb_add_commands(self, cli: click.Group) -> None:
        @cli.command("whoami-x")
        @click.pass_obj
        def whoami(host: PluginHost) -> None:
            _AddsACommand.seen.append(host)
            click.echo(f"{len(host.registry('methods'))} methods")


def test_a_plugin_command_receives_the_host_as_the_builtin_ones_do(make_host: Any) -> None:
    host = make_host(_AddsACommand())
    group = cli_module.build_cli(host)
    out = CliRunner().invoke(group, ["whoami-x"])
    assert out.exit_code == 0, out.output
    assert _AddsACommand.seen == [host] and out.output == "0 methods\n"
    assert group.commands["ls"] is cli_module.ls_cmd  # the built-in command itself, not a per-host copy
    assert CliRunner().invoke(group, ["ls", "methods"]).exit_code == 0  # it found its host in ctx.obj


def test_each_host_has_its_own_group(make_host: Any) -> None:
    with_plugin = cli_module.build_cli(make_host(_AddsACommand()))
    without = cli_module.build_cli(make_host())
    assert "whoami-x" in with_plugin.commands and "whoami-x" not in without.commands
    assert set(cli_module.BUILTIN_COMMANDS) <= set(without.commands.values())
    out = CliRunner().invoke(without, ["whoami-x"])
    assert out.exit_code == 2 and "No such command" in out.output
