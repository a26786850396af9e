"""Discovery: entry points (the example distribution), --plugins-dir, blocking, duplicates."""

from __future__ import annotations

import textwrap

import pytest

from rlcf_bench.plugins import PluginError, PluginHost
from rlcf_bench.registry import RegistryError

ONE_FILE_METHOD = textwrap.dedent('''
    from dataclasses import dataclass
    from rlcf_bench import Method, MethodSpec, Predictions, hookimpl

    @dataclass(frozen=True)
    class Cfg:
        scale: float = 1.0

    class Echo(Method[Cfg]):
        name = "{name}"
        config_cls = Cfg
        def setup(self, ctx):
            self.ctx = ctx
        def predict(self, batch):
            import torch
            return Predictions(logits=torch.zeros(len(batch), len(self.ctx.classnames)))

    @hookimpl
    def rlcfb_register_methods():
        return [MethodSpec.from_method(Echo)]
''')


def test_entry_point_plugin_of_the_example_distribution_is_discovered():
    host = PluginHost(autoload=True)
    spec = host.registry("methods").get("confident-view-ensemble")
    assert spec.provider == "example"
    info = {i.name: i for i in host.plugin_infos()}["example"]
    assert info.distribution == "rlcf-bench-example" and info.version == "0.1.0"
    assert "rlcfb_register_methods" in info.hooks


def test_first_party_plugins_come_through_the_same_entry_point_group():
    host = PluginHost(autoload=True)
    providers = {s.name: s.provider for s in host.methods()}
    assert providers["zero-shot"] == "baselines.zero_shot"
    assert {i.name: i.distribution for i in host.plugin_infos()}["baselines.zero_shot"] == "rlcf-bench"


def test_autoload_can_be_switched_off_by_flag_and_environment(monkeypatch):
    assert "confident-view-ensemble" not in PluginHost(autoload=False).registry("methods")
    monkeypatch.setenv("RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "confident-view-ensemble" not in PluginHost(autoload=True).registry("methods")


def test_blocking_a_plugin_and_a_package_of_plugins():
    assert "confident-view-ensemble" not in PluginHost(blocked=["example"]).registry("methods")
    host = PluginHost(blocked=["baselines"])
    assert "zero-shot" not in host.registry("methods")
    assert "baselines.zero_shot" not in {i.name for i in host.plugin_infos()}
    host = PluginHost(blocked=["baselines.zero_shot"])
    assert "zero-shot" not in host.registry("methods")


def test_plugins_dir_loads_one_file_plugins(tmp_path):
    (tmp_path / "echo.py").write_text(ONE_FILE_METHOD.format(name="echo"))
    host = PluginHost(autoload=False, plugins_dirs=[tmp_path])
    assert host.registry("methods").get("echo").provider == "plugins_dir.echo"
    assert "echo" not in PluginHost(autoload=False, plugins_dirs=[tmp_path], blocked=["echo"]).registry("methods")


def test_duplicate_component_name_names_both_providers(tmp_path):
    (tmp_path / "clash.py").write_text(ONE_FILE_METHOD.format(name="zero-shot"))
    host = PluginHost(autoload=False, extra=["baselines"], plugins_dirs=[tmp_path])
    with pytest.raises(RegistryError) as err:
        host.registry("methods")
    assert "baselines.zero_shot" in str(err.value) and "plugins_dir.clash" in str(err.value)


def test_broken_plugin_file_says_which_file(tmp_path):
    (tmp_path / "bad.py").write_text("import does_not_exist_anywhere\n")
    with pytest.raises(PluginError, match="bad.py"):
        PluginHost(autoload=False, plugins_dirs=[tmp_path])


def test_unknown_name_suggests_close_matches(host):
    with pytest.raises(RegistryError, match="did you mean 'zero-shot'"):
        host.registry("methods").get("zero-shoot")


def test_managers_are_per_session():
    a, b = PluginHost(autoload=False), PluginHost(autoload=False, extra=["baselines"])
    assert "zero-shot" in b.registry("methods") and "zero-shot" not in a.registry("methods")


def test_registration_imports_no_torch_model_code():
    import subprocess
    import sys

    code = ("import sys; from rlcf_bench.plugins import PluginHost; h = PluginHost(); "
            "[h.registry(k) for k in ('tasks','datasets','methods','models','reward-models','suites')]; "
            "print(sorted(m for m in ('open_clip','transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
