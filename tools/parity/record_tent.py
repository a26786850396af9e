"""Record Tent's golden outputs from the official code (DequanWang/tent, ``tent.py``).

Runs the official ``configure_model``, ``collect_params`` and ``Tent`` (``steps`` 1 and 3,
``episodic=False``) on the tiny BatchNorm CNN and the stream of ``tests/parity/batch_inputs.py``,
with the official default optimiser (``conf.py``: Adam, lr 1e-3, betas (0.9, 0.999), weight decay
0; the Adam branch of ``cifar10c.setup_optimizer`` is mirrored here because ``conf.py`` needs
yacs and iopath), and writes per batch the outputs Tent returns and the BatchNorm affine
parameters after the batch.

    git clone https://github.com/DequanWang/tent /tmp/official-tent
    .venv/bin/python tools/parity/record_tent.py --official /tmp/official-tent
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from record_online_common import import_official, official_commit, parse_args, write_golden

sys.path.insert(0, str(Path(__file__).parents[2] / "tests" / "parity"))
from batch_inputs import TENT_DESCRIPTION, norm_params, tent_model, tent_stream  # noqa: E402

REPOSITORY = "https://github.com/DequanWang/tent"
PINNED = "e9e926a668d85244c66a6d5c006efbd2b82e83e8"


def run_official(tent: object, steps: int) -> dict[str, torch.Tensor]:
    model = tent.configure_model(tent_model())  # type: ignore[attr-defined]
    params, _ = tent.collect_params(model)  # type: ignore[attr-defined]
    optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
    tented = tent.Tent(model, optimizer, steps=steps, episodic=False)  # type: ignore[attr-defined]
    outputs, states = [], []
    for x in tent_stream():
        outputs.append(tented(x).detach().clone())
        states.append(norm_params(model).clone())
    return {f"steps{steps}_outputs": torch.stack(outputs), f"steps{steps}_norm_params": torch.stack(states)}


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    tent = import_official(args.official, "tent")
    torch.set_num_threads(1)
    tensors = {**run_official(tent, 1), **run_official(tent, 3), "initial_norm_params": norm_params(tent_model())}
    write_golden("tent", args.out, tensors, repository=REPOSITORY, commit=commit, script=Path(__file__).name,
                 inputs=TENT_DESCRIPTION, may_write=may_write)


if __name__ == "__main__":
    main()
