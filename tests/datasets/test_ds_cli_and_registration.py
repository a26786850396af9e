"""`rlcf-bench data check/list`, data-root resolution, registration and import cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from rlcf_bench.datasets import DATA_ROOT_ENV


@pytest.fixture()
def cli(host: Any) -> click.Group:
    @click.group()
    def root() -> None:
        """A stand-in for the host's group."""

    host.add_commands(root)  # our rlcfb_add_commands adds the `data` group
    return root


def invoke(cli: click.Group, host: Any, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), obj=host, catch_exceptions=False)


def make_eurosat(root: Path, helpers: Any) -> None:
    test = []
    for label in range(10):
        helpers.image(root / "eurosat" / "2750" / f"C{label}" / "a.jpg")
        test.append([f"C{label}/a.jpg", label, f"C{label}"])
    helpers.json(root / "eurosat" / "split_zhou_EuroSAT.json", {"test": test})


def test_data_check_ok_and_problems(tmp_path: Path, cli: click.Group, host: Any, helpers: Any) -> None:
    make_eurosat(tmp_path, helpers)
    ok = invoke(cli, host, "data", "check", "eurosat", "--data-root", str(tmp_path))
    assert ok.exit_code == 0, ok.output
    assert "dataset 'eurosat'" in ok.output and ": OK" in ok.output
    (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").write_text(json.dumps({"train": []}))
    bad = invoke(cli, host, "data", "check", "eurosat", "--data-root", str(tmp_path))
    assert bad.exit_code == 1
    assert "missing key 'test'" in bad.output and "expected:" in bad.output


def test_data_check_params_and_usage_errors(tmp_path: Path, cli: click.Group, host: Any) -> None:
    out = invoke(cli, host, "data", "check", "imagenet-c", "--data-root", str(tmp_path), "--param", "severity=9")
    assert out.exit_code == 2 and "severity='9': must be ≤ 5" in out.output  # the declared range, before any check
    unknown = invoke(cli, host, "data", "check", "imagenet-c", "--data-root", str(tmp_path), "--param", "level=2")
    assert unknown.exit_code == 2 and "has no parameter 'level'" in unknown.output
    typo = invoke(cli, host, "data", "check", "imagenet-b", "--data-root", str(tmp_path))
    assert typo.exit_code == 2 and "did you mean" in typo.output
    malformed = invoke(cli, host, "data", "check", "nocaps", "--param", "domain")
    assert malformed.exit_code == 2 and "expected key=value" in malformed.output


def test_data_root_resolution_order(tmp_path: Path, cli: click.Group, host: Any, helpers: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    make_eurosat(tmp_path / "env_root", helpers)
    config = helpers.json(tmp_path / "config.json", {"data_root": str(tmp_path / "config_root")})
    monkeypatch.setenv("RLCF_BENCH_CONFIG", str(config))
    from_config = invoke(cli, host, "data", "check", "eurosat")
    assert from_config.exit_code == 1 and str(tmp_path / "config_root") in from_config.output
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env_root"))
    assert invoke(cli, host, "data", "check", "eurosat").exit_code == 0
    flag = invoke(cli, host, "data", "check", "eurosat", "--data-root", str(tmp_path / "elsewhere"))
    assert flag.exit_code == 1 and "elsewhere" in flag.output


def test_data_check_without_any_root(cli: click.Group, host: Any) -> None:
    out = invoke(cli, host, "data", "check", "imagenet")
    assert out.exit_code == 1 and "no data root configured" in out.output


def test_data_list(tmp_path: Path, cli: click.Group, host: Any, helpers: Any) -> None:
    make_eurosat(tmp_path, helpers)
    (tmp_path / "dtd").mkdir()
    (tmp_path / "imagenet-v2").mkdir()  # an accepted alias of the V2 folder
    out = invoke(cli, host, "data", "list", "--data-root", str(tmp_path))
    assert out.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.output.splitlines()[1:]}
    assert rows["eurosat"] == "present" and rows["dtd"] == "present" and rows["imagenet-v2"] == "present"
    assert rows["imagenet"] == "missing" and rows["nocaps"] == "missing"
    full = invoke(cli, host, "data", "list", "--data-root", str(tmp_path), "--check")
    rows = {line.split()[0]: line.split()[1] for line in full.output.splitlines()[1:]}
    assert rows["eurosat"] == "ok" and rows["dtd"] == "PROBLEMS" and rows["imagenet"] == "missing"


# ------------------------------------------------------------------------------------ registration
EXPECTED = {
    "imagenet", "imagenet-a", "imagenet-r", "imagenet-v2", "imagenet-sketch", "imagenet-c",
    "flower102", "dtd", "pets", "cars", "ucf101", "caltech101", "food101", "sun397", "aircraft", "eurosat",
    "coco-retrieval", "flickr30k-retrieval", "coco-captions", "flickr30k-captions",
    "nocaps", "nocaps-in", "nocaps-near", "nocaps-out",
}


def test_every_dataset_registered_with_check_and_root(host: Any) -> None:
    specs = {s.name: s for s in host.registry("datasets")}
    assert EXPECTED <= set(specs)
    for name in EXPECTED:
        s = specs[name]
        assert s.check is not None and s.root_name and s.provider.startswith("rlcf_bench_datasets.")
        assert s.augmix == (s.provider.endswith(".finegrained")), name
    assert specs["imagenet-v2"].root_name == "imagenetv2-matched-frequency-format-val"
    assert specs["coco-retrieval"].task_kinds == frozenset({"retrieval"})
    assert specs["nocaps"].task_kinds == frozenset({"captioning"})


def test_private_helpers_are_not_plugins(host: Any) -> None:
    names = {info.name for info in host.plugin_infos()}
    assert "rlcf_bench_datasets.imagenet" in names and "rlcf_bench_datasets.commands" in names
    assert not any(n.endswith("._common") for n in names)


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys\n"
        "from rlcf_bench.plugins import PluginHost\n"
        "h = PluginHost(autoload=False, extra=['rlcf_bench_datasets'])\n"
        "h.datasets(); h.references()\n"
        "heavy = [m for m in ('torch', 'open_clip', 'timm', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
