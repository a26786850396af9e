"""Discovery inside a plugin package: a public submodule is a plugin when it defines an ``rlcfb_``
hook implementation, so a public module of shared code is not one; private modules are not scanned."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import textwrap
import types
from pathlib import Path

import pytest

from rlcf_bench.plugins import PluginError, PluginHost, defines_hooks

HOOK = textwrap.dedent('''
    from rlcf_bench import ModelSpec, hookimpl

    @hookimpl
    def rlcfb_register_models():
        return [ModelSpec(name="{name}", version="1", load=lambda n, d: None)]
''')


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a package ``name`` with ``files`` (relative path -> source) on a fresh sys.path entry."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, files: dict[str, str]) -> str:
        for rel, text in {"__init__.py": "", **files}.items():
            path = tmp_path / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        written.append(name)
        importlib.invalidate_caches()
        return name

    yield write
    for name in written:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def _names(host: PluginHost, prefix: str) -> list[str]:
    return sorted(i.name for i in host.plugin_infos() if i.name == prefix or i.name.startswith(prefix + "."))


def test_only_public_submodules_that_define_a_hook_are_plugins(package):
    pkg = package("disc_pkg", {
        "method_a.py": HOOK.format(name="a"),
        "shared.py": "HELPER = 1\n",  # public shared code: not a plugin
        "reexport.py": "from .method_a import rlcfb_register_models  # noqa: F401\n",  # imported, not defined
        "_private.py": HOOK.format(name="private"),  # private: never scanned
        "sub/__init__.py": "",
        "sub/deep.py": HOOK.format(name="deep"),
    })
    host = PluginHost(autoload=False, extra=[pkg])
    assert _names(host, pkg) == ["disc_pkg", "disc_pkg.method_a", "disc_pkg.sub.deep"]
    assert host.registry("models").names() == ["a", "deep"]
    assert f"{pkg}._private" not in sys.modules  # not even imported


def test_blocking_a_subpackage_blocks_what_is_under_it(package):
    pkg = package("disc_block", {"sub/__init__.py": "", "sub/deep.py": HOOK.format(name="deep"),
                                 "top.py": HOOK.format(name="top")})
    host = PluginHost(autoload=False, blocked=[f"{pkg}.sub"], extra=[pkg])
    assert host.registry("models").names() == ["top"]
    assert f"{pkg}.sub.deep" not in sys.modules


def test_a_hook_function_without_hookimpl_is_an_error_not_a_silent_skip(package):
    pkg = package("disc_unmarked", {"forgot.py": "def rlcfb_register_models():\n    return []\n"})
    with pytest.raises(PluginError, match=r"plugin 'disc_unmarked.forgot' — rlcfb_register_models lacks @hookimpl"):
        PluginHost(autoload=False, extra=[pkg])


def test_defines_hooks_looks_at_the_module_s_own_functions():
    own = types.ModuleType("own")
    exec("def rlcfb_register_models():\n    return []\n", own.__dict__)
    borrowed = types.ModuleType("borrowed")
    borrowed.rlcfb_register_models = own.rlcfb_register_models
    assert defines_hooks(own) and not defines_hooks(borrowed) and not defines_hooks(types.ModuleType("empty"))


FIRST_PARTY = ["rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_tasks", "rlcf_bench_datasets", "rlcf_bench_micro",
               "rlcf_bench_models", "rlcf_bench_fixtures"]


def _public_modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    return sorted(info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
                  if not any(part.startswith("_") for part in info.name.split(".")[1:]))


def test_first_party_plugins_are_exactly_their_public_modules_with_hooks():
    host = PluginHost(autoload=False, extra=FIRST_PARTY)
    registered = {i.name for i in host.plugin_infos()}
    for package in FIRST_PARTY:
        for module in _public_modules(package):
            assert (module in registered) == defines_hooks(importlib.import_module(module)), module
    # Every registered submodule answers at least one hook.
    assert all(info.hooks for info in host.plugin_infos() if "." in info.name)
