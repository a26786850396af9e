"""Shared plumbing of the episodic-zoo recording scripts (``record_{zero,mta,tps,c_tpt,r_tpt}.py``):
the command line, the pinned-commit check, the fixed inputs of ``tests/parity/episodic_inputs.py``
and writing a golden file with its metadata (``tests/parity/conftest.py`` says what it must hold)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "parity" / "golden"


def official_checkout(repository: str, pinned: str, description: str) -> tuple[Path, str, bool]:
    """Parse ``--official DIR [--allow-other-commit]``; put DIR (a git checkout of ``repository``)
    and ``tests/parity`` on ``sys.path``. Returns ``(dir, commit, record)``: ``record`` is False when
    the checkout is at another commit than ``pinned`` and ``--allow-other-commit`` was given (the
    script then compares without writing); another commit without that flag is an error."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--official", required=True, type=Path,
                        help=f"a git checkout of https://github.com/{repository} at {pinned[:7]}")
    parser.add_argument("--allow-other-commit", action="store_true",
                        help="run against another commit of the official code without recording")
    args = parser.parse_args()
    official = args.official.resolve()
    if not official.is_dir():
        parser.error(f"--official {official}: no such folder")
    try:
        commit = subprocess.run(["git", "-C", str(official), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        parser.error(f"--official {official}: not a git checkout (clone it: tools/parity/README.md)")
    if commit != pinned and not args.allow_other_commit:
        parser.error(f"--official is at {commit}, not the pinned {pinned} (--allow-other-commit to compare "
                     "without recording)")
    sys.path[:0] = [str(official), str(ROOT / "tests" / "parity")]
    return official, commit, commit == pinned


def write_golden(name: str, tensors: dict[str, Any], *, repository: str, commit: str, script: str,
                 inputs: str) -> Path:
    """``tests/parity/golden/<name>.safetensors`` with the official outputs and where they came from."""
    from safetensors.torch import save_file

    GOLDEN.mkdir(parents=True, exist_ok=True)
    path = GOLDEN / f"{name}.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata={"repository": repository, "commit": commit, "script": script, "inputs": inputs})
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")
    return path


def report(name: str, official: Any, ours: Any) -> None:
    """Print how far this project's outputs are from the official ones (per-sample max |Δ|, argmax)."""
    diff = (official.float() - ours.float()).abs()
    same = (official.argmax(-1) == ours.argmax(-1)).sum().item()
    print(f"{name}: max |Δ| {diff.max().item():.3g}, identical predictions {same}/{len(official)}")
