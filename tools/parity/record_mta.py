"""Record MTA's golden logits from the official code (MaxZanella/MTA).

    git clone https://github.com/MaxZanella/MTA /tmp/official-mta
    git -C /tmp/official-mta checkout cafafdfa2918d3e9e45eb711f6aed8e3582fcb8d
    .venv/bin/python tools/parity/record_mta.py --official /tmp/official-mta

The official ``mta.solve_mta`` runs unchanged (its ``main.py`` defaults: λ_y = 0.2, λ_q = 4) on
the fixed inputs of ``tests/parity/episodic_inputs.py``; its model call ``model(inputs,
features=True)`` returns the fixed features with the official normalisation (``x / ‖x‖``) and
``exp(logit_scale)``. Writes ``tests/parity/golden/mta.safetensors``: ``logits`` ``[N, C]``.
"""

from __future__ import annotations

import zoo_recording as rec

REPOSITORY = "MaxZanella/MTA"
PINNED = "cafafdfa2918d3e9e45eb711f6aed8e3582fcb8d"


def official_logits() -> object:
    import argparse

    import torch
    from episodic_inputs import LOG_SCALE, fixed_features
    from mta import solve_mta

    text, views = fixed_features()
    scale = torch.tensor(LOG_SCALE, dtype=torch.float32).exp()

    def model(inputs: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert features  # as custom_clip.ClipTestTimeTuning.inference(features=True)
        return inputs / inputs.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True), scale

    args = argparse.Namespace(lambda_y=0.2, lambda_q=4)
    return torch.cat([solve_mta(model, sample, args) for sample in views])


def main() -> None:
    _, commit, record = rec.official_checkout(REPOSITORY, PINNED, __doc__.splitlines()[0])
    import warnings

    import torch
    from episodic_inputs import DESCRIPTION, run_method

    from rlcf_bench_baselines.mta import MTA

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.cuda.amp.autocast(): deprecated, and a no-op on the CPU
        logits = official_logits()
    for batch_size in (4, 1):
        rec.report(f"mta, batch {batch_size}", logits, run_method(MTA, batch_size=batch_size))
    if record:
        rec.write_golden("mta", {"logits": logits}, repository=REPOSITORY, commit=commit, script="record_mta.py",
                         inputs=DESCRIPTION + "; official solve_mta, lambda_y 0.2, lambda_q 4")


if __name__ == "__main__":
    main()
