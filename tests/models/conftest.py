"""Fixtures for the model backends: tiny open_clip / OpenAI-style / Hugging Face CLIPs written to disk
in the real formats, and the public model registry they are loaded back through."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from models_helpers import tiny_config


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RLCF_BENCH_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("RLCF_BENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)


@pytest.fixture(scope="session")
def models_registry() -> Any:
    """The public registry, with entry-point autoload on (as a user's ``--model NAME`` sees it)."""
    from rlcf_bench.plugins import PluginHost

    return PluginHost(autoload=True).registry("models")


@pytest.fixture(scope="session")
def load(models_registry: Any) -> Any:
    def _load(name: str) -> Any:
        return models_registry.get(name).load(name, "cpu")

    return _load


@pytest.fixture(scope="session")
def tiny_clip() -> Any:
    """A random open_clip ``CLIP`` of ``TINY_CLIP_CONFIG`` (seeded; logit scale moved off its init)."""
    from open_clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(**tiny_config()).eval()
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    return model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny_clip: Any) -> Path:
    """``tiny.json`` (bare open_clip model config) beside ``tiny.safetensors``."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny.json").write_text(json.dumps(tiny_config()))
    save_file({k: v.contiguous() for k, v in tiny_clip.state_dict().items()}, str(d / "tiny.safetensors"))
    return d
