"""Record C-TPT's golden outputs from the official code (hee-suk-yoon/C-TPT), 1 and 3 steps.

    git clone https://github.com/hee-suk-yoon/C-TPT /tmp/official-c-tpt
    git -C /tmp/official-c-tpt checkout 085e6c2e3d2da647ca42dcef163e0cbd4bf30a67
    .venv/bin/python tools/parity/record_c_tpt.py --official /tmp/official-c-tpt

Runs the official per-sample loop ``tpt_classification.test_time_adapt_eval`` (and its
``test_time_tuning``) as it is, set up as its ``main_worker``: ``get_coop`` with ``ctx_init``
"a_photo_of_a" (4 context tokens), everything but the prompt learner frozen, AdamW lr 5e-3,
``--run_type tpt_ctpt --lambda_term 50`` (the fine-grained scripts' λ, which is also ours for a
dataset that is no ImageNet variant), ``--selection_p 0.1``. Its ``clip.load`` returns the tiny CLIP
of ``official_clip.py``; the inputs are those of ``tests/parity/episodic_inputs.py`` (views fed
as they are). ``ipdb``, imported but never called by the loop, is stubbed.

Golden ``c_tpt.safetensors``, for 1 and 3 steps (suffix ``_steps1``/``_steps3``): ``logits``
``[N, C]`` (the prediction on view 0), ``selected`` ``[N, 6]`` (the confident views, sorted),
``tuned`` ``[N, 4, 128]`` (the context after tuning).
"""

from __future__ import annotations

import sys
import types

import zoo_recording as rec

REPOSITORY = "hee-suk-yoon/C-TPT"
PINNED = "085e6c2e3d2da647ca42dcef163e0cbd4bf30a67"
LAMBDA = 50.0


def official_run(official: object, steps: int) -> dict[str, object]:
    import torch
    from episodic_inputs import PROMPT_CLASSNAMES, SELECTION_RATIO, prompt_labels, prompt_views

    helper = rec.use_tiny_clip(official)
    sys.modules.setdefault("ipdb", types.ModuleType("ipdb"))
    module = helper.import_official("tpt_classification", official)
    args = types.SimpleNamespace(gpu=0, tpt=True, cocoop=False, tta_steps=steps, selection_p=SELECTION_RATIO,
                                 run_type="tpt_ctpt", lambda_term=LAMBDA, two_step=False, arch="tiny",
                                 print_freq=10**9)
    with rec.cpu_cuda_calls():
        model = module.get_coop("tiny", "I", "cpu", 4, "a_photo_of_a")
        optimizer, optim_state = rec.tune_prompt_only(model)
        scaler = torch.cuda.amp.GradScaler(init_scale=1000)
        model.reset_classnames(list(PROMPT_CLASSNAMES), "tiny")
        capture = rec.LoopCapture(module, lambda: model.prompt_learner.ctx)
        results: dict[str, list[object]] = {"max_confidence": [], "prediction": [], "label": []}
        module.test_time_adapt_eval(rec.official_loader(prompt_views(helper), prompt_labels()), model, None,
                                    optimizer, optim_state, scaler, args, results)
    return capture.tensors()


def main() -> None:
    from rlcf_bench_baselines.c_tpt import CTPT

    rec.record_prompt_tuner("c-tpt", CTPT, official_run, repository=REPOSITORY, pinned=PINNED,
                            description=__doc__.splitlines()[0],
                            inputs=f"official test_time_adapt_eval, run_type tpt_ctpt, lambda {LAMBDA:g}, AdamW lr "
                                   "5e-3, selection_p 0.1, tta_steps 1 and 3")


if __name__ == "__main__":
    main()
