"""``make gpu-check ARGS=--dry-run``: the GPU check script runs its steps on the CPU with tiny
sizes and reports every step ok (docs/gpu.md#the-check). Slow: minutes of tiny runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_check_dry_run_passes_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--dry-run", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["ok"] and summary["dry_run"]
    names = [s["step"] for s in summary["steps"]]
    assert names == ["gpu-marked tests", "paper-size episode per main method", "CPU vs CUDA fp32 (TF32 off, on)",
                     "fp16 batch invariance and determinism"]
    assert all(m in summary["steps"][1]["detail"] for m in ("zero-shot", "tpt-prompt", "rlcf-prompt", "tpt-image",
                                                            "rlcf-image"))
    assert "all ok" in done.stdout
