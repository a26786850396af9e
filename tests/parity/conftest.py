"""Parity with the official code: golden outputs recorded from each method's official repository.

Each ``golden/<name>.safetensors`` holds the tensors one recording script of ``tools/parity/``
wrote by running the official code at a pinned commit on tiny deterministic inputs, and in its
metadata where they came from (``repository``, ``commit``, ``script``). The official code itself
is never committed; ``tools/parity/README.md`` says how to fetch it and re-record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "golden"
TOOLS = Path(__file__).parents[2] / "tools" / "parity"
REQUIRED_METADATA = ("repository", "commit", "script")


def load_golden(name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``(tensors, metadata)`` of ``golden/<name>.safetensors``; fails unless the metadata names the
    official repository, a full commit and a recording script that exists in ``tools/parity/``."""
    from safetensors import safe_open

    path = GOLDEN / f"{name}.safetensors"
    assert path.is_file(), f"no golden file {path.name}: record it with tools/parity/ (see its README)"
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    missing = [key for key in REQUIRED_METADATA if not meta.get(key)]
    assert not missing, f"{path.name}: metadata lacks {missing}"
    assert len(meta["commit"]) == 40 and all(c in "0123456789abcdef" for c in meta["commit"]), \
        f"{path.name}: commit must be a full 40-hex-digit hash, got {meta['commit']!r}"
    assert (TOOLS / meta["script"]).is_file(), f"{path.name}: recording script tools/parity/{meta['script']} is missing"
    return tensors, meta


@pytest.fixture
def golden() -> Callable[[str], tuple[dict[str, Any], dict[str, str]]]:
    return load_golden


def tools_module(file: str) -> Any:
    """A helper module of ``tools/parity/`` (e.g. ``"official_clip.py"``), imported by path; the
    helpers need no official code to rebuild the tiny models for a test."""
    import importlib.util
    import sys

    name = f"rlcf_bench_parity_{Path(file).stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TOOLS / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def official_clip_helper() -> Any:
    """``tools/parity/official_clip.py``: the tiny CLIP shared by the official code and ours."""
    return tools_module("official_clip.py")


@pytest.fixture
def tiny_official_clip() -> Any:
    """The helper module: ``tiny_vlm(seed)`` builds the tiny CLIP the golden files were recorded
    with; compare ``weights_fingerprint(tiny_state_dict(seed))`` with a golden file's metadata."""
    return official_clip_helper()


@pytest.fixture(autouse=True)
def _deterministic_one_thread():
    """Parity is checked at float tolerance: one intra-op thread removes the reduction-order noise
    that thread counts add (and keeps these tests cheap on a shared machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
