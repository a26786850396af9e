"""Golden files of the parity tests and the ``tools/parity/`` helpers they rebuild inputs with.

A module of its own name (not ``conftest``), so a test imports it unambiguously whatever other
``conftest`` modules the whole suite has loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
