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
    host = PluginHost(autoload=False, extra=["rlcf_bench_baselines"], plugins_dirs=[tmp_path])
    with pytest.raises(RegistryError) as err:
        host.registry("methods")
    assert "rlcf_bench_baselines.zero_shot" in str(err.value) and "plugins_dir.clash" in str(err.value)


def test_broken_plugin_file_says_which_file(tmp_path):
    (tmp_path / "bad.py").write_text("import does_not_exist_anywhere\n")
    with pytest.raises(PluginError, match="bad.py"):
        PluginHost(autoload=False, plugins_dirs=[tmp_path])


def test_unknown_name_suggests_close_matches(host):
    with pytest.raises(RegistryError, match="did you mean 'zero-shot'"):
        host.registry("methods").get("zero-shoot")


def test_managers_are_per_session():
    a, b = PluginHost(autoload=False), PluginHost(autoload=False, extra=["rlcf_bench_baselines"])
    assert "zero-shot" in b.registry("methods") and "zero-shot" not in a.registry("methods")


def test_registration_imports_no_torch_model_code():
    import subprocess
    import sys

    code = ("import sys; from rlcf_bench.plugins import PluginHost; h = PluginHost(); "
            "[h.registry(k) for k in ('tasks','datasets','methods','models','reward-models','suites')]; "
            "print(sorted(m for m in ('open_clip','transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


ONE_FILE_BACKEND = textwrap.dedent('''
    from rlcf_bench import ModelSpec, hookimpl

    @hookimpl
    def rlcfb_register_models():
        return [ModelSpec(name="{name}", version="1", load=lambda n, d: None,
                          accepts=lambda n: n.startswith("{prefix}"))]
''')


@pytest.mark.parametrize("files", [("a_first", "z_last"), ("z_last", "a_first")])
def test_a_model_name_two_backends_accept_is_an_error_naming_both(tmp_path, files):
    """Whichever file loads first, a name both backends claim is refused on one line naming both;
    names only one claims still resolve to it."""
    first, second = files
    (tmp_path / f"{first}.py").write_text(ONE_FILE_BACKEND.format(name="wide", prefix="shared@"))
    (tmp_path / f"{second}.py").write_text(ONE_FILE_BACKEND.format(name="narrow", prefix="shared@only-narrow"))
    models = PluginHost(autoload=False, plugins_dirs=[tmp_path]).registry("models")
    with pytest.raises(RegistryError) as err:
        models.get("shared@only-narrow/x")
    message = str(err.value)
    assert "\n" not in message and "accepted by two backends" in message
    assert "'wide'" in message and "'narrow'" in message
    assert f"plugins_dir.{first}" in message and f"plugins_dir.{second}" in message
    assert models.get("shared@other").name == "wide"


def test_first_party_backends_do_not_overlap():
    """open_clip declines the captioner prefixes; it keeps names close to its architectures (for
    its misspelling hint) and config paths."""
    models = PluginHost(autoload=False, extra=["rlcf_bench_models"]).registry("models")
    assert models.get("clipcap@/some/dir").name == "clipcap" and models.get("capdec@/d").name == "capdec"
    assert models.get("ViT-B-16@openai").name == "open_clip" and models.get("ViT-B-61@openai").name == "open_clip"
    assert models.get("/cfg/x.json@/w/x.safetensors").name == "open_clip"
    assert models.get("hf:openai/clip-vit-base-patch16").name == "hf-clip"


def test_a_dataset_name_two_plugins_resolve_is_an_error_naming_both(tmp_path):
    resolver = textwrap.dedent('''
        from rlcf_bench import DatasetSpec, hookimpl

        @hookimpl
        def rlcfb_resolve_dataset(name, params):
            if name.startswith("dup:"):
                return DatasetSpec(name=name, version="1", task_kinds=frozenset({"classification"}),
                                   build=lambda root: None)
            return None
    ''')
    for stem in ("one", "two"):
        (tmp_path / f"{stem}.py").write_text(resolver)
    host = PluginHost(autoload=False, plugins_dirs=[tmp_path])
    with pytest.raises(RegistryError, match="'dup:x' is resolved by two plugins: 'plugins_dir.(one|two)' and "
                                            "'plugins_dir.(one|two)'"):
        host.dataset("dup:x")
