"""Record ETA's golden outputs from the official code (mr-eggplant/EATA, ``eata.py``).

Runs the official ``configure_model``, ``collect_params`` and ``EATA`` without Fisher
regulariser (``fishers=None``: the ``--algorithm eta`` branch of ``main.py``, SGD with momentum
0.9) on the sharpened tiny CNN and the stream of ``tests/parity/batch_inputs.py`` (E₀, ε and lr
there: chosen so that both filters select some samples of these inputs), and writes per batch the
outputs, the BatchNorm affine parameters after the batch, the moving average of the selected
softmaxes and the counts of reliable and selected samples.

    git clone https://github.com/mr-eggplant/EATA /tmp/official-eata
    .venv/bin/python tools/parity/record_eta.py --official /tmp/official-eata
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from record_online_common import import_official, official_commit, parse_args, write_golden

sys.path.insert(0, str(Path(__file__).parents[2] / "tests" / "parity"))
from batch_inputs import (  # noqa: E402
    ETA_D_MARGIN,
    ETA_E_MARGIN,
    ETA_LR,
    SHARP_DESCRIPTION,
    norm_params,
    sharp_model,
    tent_stream,
)

REPOSITORY = "https://github.com/mr-eggplant/EATA"
PINNED = "f739b3668cc7617e9b9f1979c1a358497a3472c3"


def main() -> None:
    args = parse_args(__doc__)
    commit, may_write = official_commit(args.official, PINNED, args.allow_other_commit)
    eata = import_official(args.official, "eata")
    torch.set_num_threads(1)
    model = eata.configure_model(sharp_model())
    params, _ = eata.collect_params(model)
    optimizer = torch.optim.SGD(params, ETA_LR, momentum=0.9)
    adapted = eata.EATA(model, optimizer, e_margin=ETA_E_MARGIN, d_margin=ETA_D_MARGIN)
    outputs, states, averages, counts = [], [], [], []
    for x in tent_stream():
        before = (adapted.num_samples_update_1, adapted.num_samples_update_2)
        outputs.append(adapted(x).detach().clone())
        states.append(norm_params(model).clone())
        averages.append(adapted.current_model_probs.detach().clone())
        counts.append([adapted.num_samples_update_1 - before[0], adapted.num_samples_update_2 - before[1]])
    tensors = {"outputs": torch.stack(outputs), "norm_params": torch.stack(states), "averages": torch.stack(averages),
               "counts": torch.tensor(counts)}
    print("reliable / selected per batch:", counts)
    write_golden("eta", args.out, tensors, repository=REPOSITORY, commit=commit, script=Path(__file__).name,
                 inputs=SHARP_DESCRIPTION, may_write=may_write)


if __name__ == "__main__":
    main()
