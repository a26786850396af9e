"""Parity with the official code: golden outputs recorded from each method's official repository.

Each ``golden/<name>.safetensors`` holds the tensors one recording script of ``tools/parity/``
wrote by running the official code at a pinned commit on tiny deterministic inputs, and in its
metadata where they came from (``repository``, ``commit``, ``script``). The official code itself
is never committed; ``tools/parity/README.md`` says how to fetch it and re-record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from parity_files import load_golden, official_clip_helper, tools_module  # noqa: F401  (re-exported for tests)


@pytest.fixture
def golden() -> Callable[[str], tuple[dict[str, Any], dict[str, str]]]:
    return load_golden


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
