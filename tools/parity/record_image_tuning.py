"""Record the RLCF paper's image-encoder methods and zero-shot CLIP from mzhaoshuai/RLCF ``TPT/``:
tpt-image (``tune_cls_tpt.py``), rlcf-image and its momentum variant (``tune_cls_rl.py`` with ``tpt_cls_rl.test_time_tuning``
and ``clip_reward.py``), kd / dkd / atkd (``tune_cls_kd.py`` with ``utils/KD.py``, ``DKD.py``,
``ATKD.py``) and zero-shot (``zero_shot.py``).

    .venv/bin/python tools/parity/record_image_tuning.py METHOD --official /tmp/official-RLCF

Runs the official per-sample loop ``test_time_adapt_eval`` (and its ``test_time_tuning``) as it
is, on the inputs of ``tpt_family.py``; the set-up mirrors the official ``main_worker``:
``CLIPCLS_TTA`` with prompt prefix "a_photo_of_a" (the official literal, ``-m
underscore_prompt=true`` on our side), only the image tower trainable, AdamW over the model's
parameters (lr 1e-5, wd 5e-4, 3 steps, as ``rlcf-tune.sh``/``kd-tune.sh``; tpt-image as
``tpt-tune.sh``'s backbone rows), the reward/teacher model of ``clip_reward.get_reward_model`` (a
second tiny CLIP, K = 3) with the policy's tokenised prompts as class texts. ``tune_cls_tpt.py``
imports a module ``policy`` that the repository lacks (``docs/original-code.md``): an empty
stand-in is registered, as nothing of it is used. Extra packages: none beyond this project's.

Golden ``<method>.safetensors``: ``logits`` [N, C] (prediction on view 0 after tuning),
``selected`` [N, 6] (the confident views, sorted) and ``tuned`` [N, T] (‖θ − θ₀‖ of each of the
image tower's T tensors, sorted by name) for the tuners; zero-shot has ``logits`` only.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path
from typing import Any

import official_clip
import torch
import tpt_family as fam

TUNING = {"lr": 1e-5, "weight_decay": 5e-4, "steps": 3, "underscore_prompt": True}
REWARD = {"reward_arch": fam.REWARD_ARCH, "sample_k": 3, "reward_amplify": 0, "reward_process": 1,
          "process_batch": 0, "multiple_reward_models": 0}
SETTINGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {  # method → (module, our -m options, args)
    "tpt-image": ("tune_cls_tpt", TUNING, {}),
    "rlcf-image": ("tune_cls_rl", {**TUNING, "sample_k": 3}, REWARD),
    # the momentum start point ("-M"): a fast EMA (μ 0.5) refreshed every 3 samples, so 8 samples move it twice
    "rlcf-image-momentum": ("tune_cls_rl", {**TUNING, "sample_k": 3, "momentum": True, "momentum_mu": 0.5,
                                             "momentum_freq": 3, "momentum_w": 1.0},
                            {**REWARD, "momentum_update": 1, "tta_momentum": 0.5, "update_freq": 3, "update_w": 1.0}),
    "kd": ("tune_cls_kd", TUNING, {**REWARD, "kd_loss": "KD"}),
    "dkd": ("tune_cls_kd", TUNING, {**REWARD, "kd_loss": "DKD"}),
    "atkd": ("tune_cls_kd", {**TUNING, "swapped_std_mean": True}, {**REWARD, "kd_loss": "ATKD"}),  # the bug, reproduced
    "zero-shot": ("zero_shot", {"underscore_prompt": True}, {"tta_steps": 0}),
}


def main() -> None:
    p = fam.parser(__doc__.split("\n\n")[0])
    p.add_argument("method", choices=sorted(SETTINGS))
    a = p.parse_args()
    module_name, ours, values = SETTINGS[a.method]
    repository, pinned = fam.RLCF
    commit, record = fam.checkout_commit(a.official, pinned, a.allow_other_commit)
    torch.set_num_threads(1)
    parent = a.official / "TPT"
    official_clip.use_tiny_clip(parent, fam.tiny_clip_seeds())
    sys.modules.setdefault("policy", types.ModuleType("policy"))  # tune_cls_tpt imports it; unused
    if module_name == "tune_cls_tpt":
        sys.modules["policy"].get_reward_model = None  # type: ignore[attr-defined]
    module = official_clip.import_official(module_name, parent)
    args = fam.official_args(**{"lr": 1e-5, "weight_decay": 5e-4, "ctx_init": "a_photo_of_a", "tune_norm": 0,
                                "update_freq": 256, "update_w": 1.0, "tta_momentum": 0.9999, "momentum_update": 0,
                                **values})
    if a.method == "zero-shot":
        args.tpt = False

    with fam.cpu_cuda_calls():
        model = module.CLIPCLS_TTA("cpu", list(fam.CLASSNAMES), arch="tiny", prompt_prefix=args.ctx_init,
                                   only_visual=True, momentum_update=args.momentum_update,
                                   update_freq=args.update_freq, update_w=args.update_w,
                                   momentum=args.tta_momentum, only_norm=args.tune_norm)
        optimizer = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=args.weight_decay)
        optim_state = copy.deepcopy(optimizer.state_dict())
        scaler = torch.cuda.amp.GradScaler(init_scale=1000)
        reward_model = None
        if "reward_arch" in values:
            reward_model = official_clip.import_official("clip_reward", parent).get_reward_model("cpu", args)
        model.reset_classnames_and_state(list(fam.CLASSNAMES), "tiny")
        if reward_model is not None:
            reward_model.set_class_features(tokenized_classes=model.tokenized_prompts)
        start = copy.deepcopy(model.clip_model.visual.state_dict())
        selecting = [m for m in (module, sys.modules.get("tpt_cls_rl")) if m is not None
                     and hasattr(m, "select_confident_samples")]
        capture = fam.Capture(model, lambda: fam.delta_norms(model.clip_model.visual.state_dict(), start), selecting)
        if a.method == "zero-shot":
            loader = [(fam.views()[:, 0], torch.tensor(fam.labels()))]
        else:
            loader = fam.loader(fam.views())
        module.test_time_adapt_eval(loader, model, optimizer, optim_state, scaler, args, device="cpu",
                                    reward_model=reward_model)
    tensors = capture.tensors()
    if a.method == "zero-shot":
        tensors = {"logits": tensors["logits"]}
    fam.report_and_record(a, tensors, repository=repository, commit=commit, record=record,
                          script=Path(__file__).name, options=ours)


if __name__ == "__main__":
    main()
