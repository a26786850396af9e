"""Record SAR's golden outputs from the official code (mr-eggplant/SAR, ``sar.py``, ``sam.py``).

Runs the official ``configure_model``, ``collect_params``, ``SAM`` around SGD (momentum 0.9, as
``main.py``) and ``SAR`` on the sharpened tiny CNN of ``tests/parity/batch_inputs.py``, its stream
played ``SAR_ROUNDS`` times (E₀ and lr there: a large lr, so the moving average of the second
loss falls below the official 0.2 and the model recovery runs), and writes per batch the outputs,
the BatchNorm affine parameters after the batch and the moving average (NaN after a reset).

    git clone https://github.com/mr-eggplant/SAR /tmp/official-sar
    .venv/bin/python tools/parity/record_sar.py --official /tmp/official-sar
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from record_online_common import import_official, official_commit, parse_args, write_golden

sys.path.insert(0, str(Path(__file__).parents[2] / "tests" / "parity"))
from batch_inputs import SAR_E_MARGIN, SAR_LR, SAR_ROUNDS, SHARP_DESCRIPTION, norm_params, sharp_model, tent_stream  # noqa: E402

REPOSITORY = "https://github.com/mr-eggplant/SAR"
PINNED = "20f6e24b17525f34503510afccedc0629b67b7c4"


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    sar = import_official(args.official, "sar")
    sam = import_official(args.official, "sam")
    torch.set_num_threads(1)
    model = sar.configure_model(sharp_model())
    params, _ = sar.collect_params(model)
    optimizer = sam.SAM(params, torch.optim.SGD, lr=SAR_LR, momentum=0.9)
    adapted = sar.SAR(model, optimizer, margin_e0=SAR_E_MARGIN)
    outputs, states, emas = [], [], []
    for _ in range(SAR_ROUNDS):
        for x in tent_stream():
            outputs.append(adapted(x).detach().clone())
            states.append(norm_params(model).clone())
            emas.append(math.nan if adapted.ema is None else float(adapted.ema))
    tensors = {"outputs": torch.stack(outputs), "norm_params": torch.stack(states),
               "ema": torch.tensor(emas, dtype=torch.float64)}
    print("moving average per batch (nan: reset):", [round(e, 4) for e in emas])
    write_golden("sar", args.out, tensors, repository=REPOSITORY, commit=commit, script=Path(__file__).name,
                 inputs=SHARP_DESCRIPTION, may_write=may_write)


if __name__ == "__main__":
    main()
