"""Record TPS's golden logits from the official code (elaine-sui/TPS), 1 and 3 steps.

    git clone https://github.com/elaine-sui/TPS /tmp/official-tps
    git -C /tmp/official-tps checkout 556db0fe310f029fc7b796ffa83eaa64c578b505
    PYTHONPATH=<setuptools<70> .venv/bin/python tools/parity/record_tps.py --official /tmp/official-tps

The official ``shift_classification.test_time_tuning`` (confident views selected again at every
step) and the final ``model(image, test=True)`` run unchanged on the fixed inputs of
``tests/parity/episodic_inputs.py``, per sample as the official loop does (``model.reset()``,
the optimizer's initial state reloaded, tuning, prediction on view 0), with the official model
``TestTimeShiftTuning`` and its per-class ``Shifter``: only its CLIP is replaced by the fixed
features (image tower = identity; the class embeddings = the fixed class features). Options as
the README's example script: ``--per_label --do_shift --text_shift``, AdamW lr 5e-3,
``--selection_p 0.1``. Writes ``tests/parity/golden/tps.safetensors``: ``logits_steps1`` and
``logits_steps3`` ``[N, C]``.
"""

from __future__ import annotations

import zoo_recording as rec

REPOSITORY = "elaine-sui/TPS"
PINNED = "556db0fe310f029fc7b796ffa83eaa64c578b505"
STEPS = (1, 3)


def official_logits(steps: int) -> object:
    import argparse
    from copy import deepcopy

    import torch
    from episodic_inputs import LOG_SCALE, N_CLASSES, SELECTION_RATIO, fixed_features
    from model.learnable_shift import TestTimeShiftTuning
    from shift_classification import test_time_tuning

    text, views = fixed_features()

    class IdentityEncoder(torch.nn.Module):
        dtype = torch.float32

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    model = TestTimeShiftTuning.__new__(TestTimeShiftTuning)  # its __init__ loads CLIP and embedding files
    torch.nn.Module.__init__(model)
    model.device, model.text_embeds, model.image_encoder = torch.device("cpu"), text, IdentityEncoder()
    model.logit_scale = torch.tensor(LOG_SCALE, dtype=torch.float32)
    model.num_classes, model.init_concepts, model.class2concepts = N_CLASSES, False, None
    model.text_shift, model.do_shift, model.do_scale, model.do_film = True, True, False, False
    model.text_shifter = model.load_shifter(embed_dim=text.shape[1], per_label=True)
    args = argparse.Namespace(tta_steps=steps, selection_p=SELECTION_RATIO)
    optimizer = torch.optim.AdamW(list(model.text_shifter.parameters()), 5e-3)
    optim_state = deepcopy(optimizer.state_dict())
    scaler = torch.cuda.amp.GradScaler(init_scale=1e3)  # disabled on the CPU, as autocast
    out = []
    for sample in views:  # shift_classification.test_time_adapt_eval, one sample
        with torch.no_grad():
            model.reset()
        optimizer.load_state_dict(optim_state)
        test_time_tuning(model, sample, optimizer, scaler, args)
        with torch.no_grad():
            out.append(model(sample[:1], test=True))
    return torch.cat(out)


def main() -> None:
    _, commit, record = rec.official_checkout(REPOSITORY, PINNED, __doc__.splitlines()[0])
    import warnings

    import torch
    from episodic_inputs import DESCRIPTION, run_method

    from rlcf_bench_baselines.tps import TPS

    torch.set_num_threads(1)
    golden = {}
    for steps in STEPS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.cuda.amp: deprecated, and disabled on the CPU
            golden[f"logits_steps{steps}"] = logits = official_logits(steps)
        for batch_size in (4, 1):
            rec.report(f"tps, {steps} step(s), batch {batch_size}", logits,
                       run_method(TPS, {"steps": steps}, batch_size=batch_size))
    if record:
        rec.write_golden("tps", golden, repository=REPOSITORY, commit=commit, script="record_tps.py",
                         inputs=DESCRIPTION + "; official test_time_tuning, per-class shift, AdamW lr 5e-3, "
                                              "selection_p 0.1, tta_steps 1 and 3")


if __name__ == "__main__":
    main()
