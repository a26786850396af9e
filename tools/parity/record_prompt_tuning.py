"""Record tpt-prompt (TPT, azshue/TPT) and rlcf-prompt (RLCF, mzhaoshuai/RLCF ``TPT/tpt_cls_rl.py``).

    .venv/bin/python tools/parity/record_prompt_tuning.py tpt-prompt --official /tmp/official-TPT
    .venv/bin/python tools/parity/record_prompt_tuning.py rlcf-prompt --official /tmp/official-RLCF
    .venv/bin/python tools/parity/record_prompt_tuning.py rlcf-prompt-options --official /tmp/official-RLCF
    .venv/bin/python tools/parity/record_prompt_tuning.py rlcf-prompt-ensemble --official /tmp/official-RLCF

Runs the official per-sample loop ``test_time_adapt_eval`` (and its ``test_time_tuning``) as it
is, on the inputs of ``tpt_family.py``; the set-up mirrors the official ``main_worker``: the
prompt learner of ``get_coop`` with ``ctx_init`` "a_photo_of_a" (4 context tokens), everything
else frozen, AdamW on the prompt learner, the class names reset, and for RLCF the reward model of
``clip_reward.get_reward_model`` (a second tiny CLIP) with the policy's tokenised prompts as class
texts. Three steps (``-m steps=3`` on our side). Extra packages: none beyond this project's.

Golden ``<method>.safetensors``: ``logits`` [N, C] (prediction on view 0 after tuning),
``selected`` [N, 6] (the confident views, sorted), ``tuned`` [N, 4, 128] (the context after the
steps).
"""

from __future__ import annotations

import copy
from pathlib import Path

import official_clip
import torch
import tpt_family as fam

SETTINGS = {  # method → (repository, official folder holding clip/, module, our -m options, official args)
    "tpt-prompt": (fam.TPT, ".", "tpt_classification", {"steps": 3, "lr": 5e-3},
                   {"lr": 5e-3}),
    "rlcf-prompt": (fam.RLCF, "TPT", "tpt_cls_rl", {"steps": 3, "lr": 7e-3, "weight_decay": 5e-4, "sample_k": 3},
                    {"lr": 7e-3, "weight_decay": 5e-4, "sample_k": 3, "reward_arch": fam.REWARD_ARCH,
                     "reward_amplify": 0, "reward_process": 1, "process_batch": 0, "multiple_reward_models": 0}),
    # the reward options: std-normalised rewards, baseline over the sample's N·K pairs, entropy term
    "rlcf-prompt-options": (fam.RLCF, "TPT", "tpt_cls_rl",
                            {"steps": 3, "lr": 7e-3, "weight_decay": 5e-4, "sample_k": 3, "reward_std": True,
                             "baseline": "sample", "entropy_reg": 0.1},
                            {"lr": 7e-3, "weight_decay": 5e-4, "sample_k": 3, "reward_arch": fam.REWARD_ARCH,
                             "reward_amplify": 1, "reward_process": 1, "process_batch": 1, "multiple_reward_models": 0,
                             "min_entropy_reg": 1, "min_entropy_w": 0.1}),
    # RLCF-S: the three-member reward ensemble with its confidence weights (``--multiple_reward_models 1``)
    "rlcf-prompt-ensemble": (fam.RLCF, "TPT", "tpt_cls_rl", {"steps": 3, "lr": 7e-3, "weight_decay": 5e-4, "sample_k": 3},
                             {"lr": 7e-3, "weight_decay": 5e-4, "sample_k": 3, "reward_amplify": 0, "reward_process": 1,
                              "process_batch": 0, "multiple_reward_models": 1, "weighted_scores": 1}),
}


def main() -> None:
    p = fam.parser(__doc__.split("\n\n")[0])
    p.add_argument("method", choices=sorted(SETTINGS))
    a = p.parse_args()
    (repository, pinned), folder, module_name, ours, values = SETTINGS[a.method]
    commit, record = fam.checkout_commit(a.official, pinned, a.allow_other_commit)
    torch.set_num_threads(1)
    parent = a.official / folder
    official_clip.use_tiny_clip(parent, fam.tiny_clip_seeds())
    module = official_clip.import_official(module_name, parent)
    args = fam.official_args(**values)
    extra: dict[str, object] = {}

    with fam.cpu_cuda_calls():
        model = module.get_coop("tiny", "I", "cpu", 4, "a_photo_of_a")
        for name, param in model.named_parameters():
            if "prompt_learner" not in name:
                param.requires_grad_(False)
        optimizer = torch.optim.AdamW(model.prompt_learner.parameters(), args.lr,
                                      **({"weight_decay": args.weight_decay} if hasattr(args, "weight_decay") else {}))
        optim_state = copy.deepcopy(optimizer.state_dict())
        scaler = torch.cuda.amp.GradScaler(init_scale=1000)
        model.reset_classnames(list(fam.CLASSNAMES), "tiny")
        capture = fam.Capture(model, lambda: model.prompt_learner.ctx, [module])
        if a.method == "tpt-prompt":  # TPT's loop takes a model state (CoCoOp) and no reward model
            module.test_time_adapt_eval(fam.loader(fam.views()), model, None, optimizer, optim_state, scaler, args)
        else:
            reward_model = official_clip.import_official("clip_reward", parent).get_reward_model("cpu", args)
            reward_model.set_class_features(tokenized_classes=model.prompt_learner.tokenized_prompts)
            module.test_time_adapt_eval(fam.loader(fam.views()), model, optimizer, optim_state, scaler, args,
                                        device="cpu", reward_model=reward_model)
            if args.multiple_reward_models:  # the members (seed, official weight) our ensemble must equal
                extra["reward_members"] = [[seed, w] for (_, seed), w in zip(fam.ENSEMBLE, reward_model.weights)]
    tensors = capture.tensors()
    fam.report_and_record(a, tensors, repository=repository, commit=commit, record=record,
                          script=Path(__file__).name, options=ours, **extra)


if __name__ == "__main__":
    main()
