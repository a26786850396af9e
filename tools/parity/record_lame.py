"""Record LAME's golden outputs from the official code (fiveai/LAME, ``src/adaptation/lame.py``).

Runs the official affinities (``kNN_affinity``, ``rbf_affinity``, ``linear_affinity``) and
``laplacian_optimization`` as the official ``LAME.run_step`` does (unary ``-log(p + 1e-10)``,
L2-normalised features, the official defaults: RBF, knn 5, λ 1, no symmetrisation; also kNN and
linear) on the batches of ``tests/parity/batch_inputs.py``, and writes Y per batch and affinity.
The module is loaded alone, its framework imports (``.non_adaptive``, ``.build``) replaced by
stand-ins: the functions compared use none of them.

    git clone https://github.com/fiveai/LAME /tmp/official-lame
    .venv/bin/python tools/parity/record_lame.py --official /tmp/official-lame
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from record_online_common import official_commit, parse_args, write_golden

sys.path.insert(0, str(Path(__file__).parents[2] / "tests" / "parity"))
from batch_inputs import LAME_DESCRIPTION, lame_stream  # noqa: E402

REPOSITORY = "https://github.com/fiveai/LAME"
PINNED = "d2e5f63090bc1c8129bf7cbd781029a5955e1a67"
AFFINITIES = ("rbf", "knn", "linear")


def load_official(checkout: Path) -> Any:
    package = types.ModuleType("lame_official")
    package.__path__ = []  # a package, so the relative imports resolve to the stand-ins below
    non_adaptive = types.ModuleType("lame_official.non_adaptive")
    non_adaptive.NonAdaptiveMethod = object  # type: ignore[attr-defined]
    build = types.ModuleType("lame_official.build")
    build.ADAPTER_REGISTRY = types.SimpleNamespace(register=lambda: (lambda cls: cls))  # type: ignore[attr-defined]
    sys.modules.update({"lame_official": package, "lame_official.non_adaptive": non_adaptive,
                        "lame_official.build": build})
    spec = importlib.util.spec_from_file_location("lame_official.lame", checkout / "src" / "adaptation" / "lame.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_official(lame: Any, affinity: str) -> torch.Tensor:
    official_name = {"knn": "kNN"}.get(affinity, affinity)  # the official config's LAME_AFFINITY spelling
    kernel_of = getattr(lame, f"{official_name}_affinity")(sigma=1.0, knn=5)
    out = []
    for probs, feats in zip(*lame_stream()):
        unary = -torch.log(probs + 1e-10)
        kernel = kernel_of(F.normalize(feats, p=2, dim=-1))
        out.append(lame.laplacian_optimization(unary, kernel))
    return torch.stack(out)


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    lame = load_official(args.official)
    torch.set_num_threads(1)
    tensors = {f"{a}_labels": run_official(lame, a) for a in AFFINITIES}
    probs, _ = lame_stream()
    changed = {a: int((tensors[f"{a}_labels"].argmax(-1) != probs.argmax(-1)).sum()) for a in AFFINITIES}
    print("predictions changed by LAME:", changed)
    write_golden("lame", args.out, tensors, repository=REPOSITORY, commit=commit, script=Path(__file__).name,
                 inputs=LAME_DESCRIPTION, may_write=may_write,
                 changed=", ".join(f"{a} {n}" for a, n in changed.items()))


if __name__ == "__main__":
    main()
