"""Where a result came from: library versions and the git state of the code that produced it."""

from __future__ import annotations

import functools
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path
from typing import Any

_DISTS = {"torch": "torch", "torchvision": "torchvision", "open_clip": "open_clip_torch",
          "transformers": "transformers", "rlcf_bench": "rlcf-bench", "sqlalchemy": "sqlalchemy"}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_state(path: str | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding rlcf_bench, or (None, None) outside git."""
    where = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def provenance() -> dict[str, Any]:
    commit, dirty = git_state()
    info: dict[str, Any] = {key: _version(dist) for key, dist in _DISTS.items()}
    info.update(python=platform.python_version(), platform=platform.platform(), git_commit=commit, git_dirty=dirty)
    return info
