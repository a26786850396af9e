"""Runs a method of the TPT/RLCF family through its public path (setup, then per batch reset →
adapt → predict → after_predict, as ``rlcf_bench.runner`` does) on the inputs a golden file's
metadata describes (``tools/parity/tpt_family.py``): the tiny CLIP of
``tools/parity/official_clip.py``, seeded views fed as they are (view generation is out of the
comparison), fp32 on the CPU."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

#: fp32 on the CPU, one thread: the two code bases run the same operations in different orders
#: (cached view features, truncated prompts, per-sample copies of the image tower), so the logits
#: agree to float rounding, amplified a little by the tuning steps.
LOGITS_ATOL = 5e-3
TUNED_ATOL = 2e-5


@dataclass
class OurRun:
    logits: torch.Tensor  # [N, C]
    selected: torch.Tensor  # [N, n_selected], sorted
    tuned: list[torch.Tensor]  # per sample, what the golden's "tuned" holds


def described(meta: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(meta["inputs"]))


def views(helper: Any, spec: dict[str, Any]) -> torch.Tensor:
    n, v = spec["n_samples"], spec["n_views"]
    return helper.tiny_images(n * v, spec["views_seed"]).view(n, v, 3, helper.IMAGE_SIZE, helper.IMAGE_SIZE)


def check_weights(helper: Any, spec: dict[str, Any]) -> None:
    """The tiny CLIPs rebuilt here are the ones the golden file was recorded with."""
    for key, seed in (("weights", spec["policy_seed"]), ("reward_weights", spec["reward_seed"])):
        assert helper.weights_fingerprint(helper.tiny_state_dict(seed)) == spec[key], \
            f"the tiny CLIP of seed {seed} rebuilt here differs from the recorded one (torch/open_clip changed?)"


def reward_model(helper: Any, spec: dict[str, Any], policy: Any) -> Any:
    """The reward model the golden file was recorded with: the seed-``reward_seed`` tiny CLIP, or,
    when ``reward_members`` lists (seed, official weight) pairs, the RLCF-S ensemble with the
    weights this project registers for ``rlcf-s`` (which must be the official ones)."""
    from rlcf_bench.tta.reward import CLIPReward

    members = spec.get("reward_members")
    if not members:
        return CLIPReward([(helper.tiny_vlm(spec["reward_seed"]), 1.0)], name="tiny-reward",
                          policy_mean=policy.mean, policy_std=policy.std)
    from rlcf_bench_rlcf.reward_models import RLCF_S_MEMBERS

    ours = [w for _, w in RLCF_S_MEMBERS]
    assert ours == [w for _, w in members], f"rlcf-s weights {ours} differ from the official {members}"
    return CLIPReward([(helper.tiny_vlm(seed), w) for seed, w in members], name="tiny-rlcf-s",
                      policy_mean=policy.mean, policy_std=policy.std)


def context(helper: Any, spec: dict[str, Any]) -> Any:
    from rlcf_bench.device import AmpHelper, SectionTimer
    from rlcf_bench.types import MethodContext, RunProtocol

    device = torch.device("cpu")
    policy = helper.tiny_vlm(spec["policy_seed"])
    reward = reward_model(helper, spec, policy)
    protocol = RunProtocol(seed=0, n_views=spec["n_views"], selection_ratio=spec["selection_p"], precision="fp32")
    ctx = MethodContext(task="classification", protocol=protocol, device=device, amp=AmpHelper(device, "fp32"),
                        model=policy, reward_model=reward, classnames=tuple(spec["classnames"]),
                        templates=("a photo of a {}.",))
    ctx.timer = SectionTimer(device)
    return ctx


def run_method(method_cls: Any, options: dict[str, Any], helper: Any, meta: dict[str, str], batch_size: int,
               tuned: Any = None) -> OurRun:
    """Our method on the golden file's inputs, ``batch_size`` samples per batch. ``tuned(method)``
    returns, after a batch's ``adapt``, its per-sample tuned state ``[B, ...]``."""
    from rlcf_bench.types import Batch

    spec = described(meta)
    check_weights(helper, spec)
    all_views = views(helper, spec)
    method = method_cls(method_cls.config_cls(**options))
    method.setup(context(helper, spec))
    logits, selected, states = [], [], []
    for start in range(0, spec["n_samples"], batch_size):
        chunk = all_views[start : start + batch_size]
        idx = tuple(range(start, start + len(chunk)))
        batch = Batch(sample_ids=tuple(f"s{i}" for i in idx), indices=idx, images=chunk[:, 0].clone(),
                      view_fn=lambda chunk=chunk: chunk)
        method.reset()
        method.adapt(batch)
        if tuned is not None:
            states.extend(tuned(method))
        logits.append(method.predict(batch).logits.detach())
        method.after_predict(batch)
        last = getattr(method, "last_selected", None)
        if last is not None:
            selected.append(last.sort(dim=-1).values)
    method.reset()
    return OurRun(torch.cat(logits), torch.cat(selected) if selected else torch.empty(0), states)


def tower_delta_norms(method: Any) -> list[torch.Tensor]:
    """Per sample of the batch just adapted, ``‖θ − θ₀‖`` of each image-tower tensor, sorted by
    name (the golden's ``tuned`` of the image-encoder tuners)."""
    tuner = method.tuner
    prefix = "model.visual."
    order = sorted(range(len(tuner.names)), key=lambda i: tuner.names[i].removeprefix(prefix))
    assert all(tuner.names[i].startswith(prefix) for i in order), "an image-tower tensor outside model.visual"
    b = tuner.state[0].shape[0]
    return [torch.stack([(tuner.state[i][row].detach() - tuner.initial[i]).float().norm() for i in order])
            for row in range(b)]


def tower_noise_mask(helper: Any) -> torch.Tensor:
    """Which of the sorted image-tower tensors to compare: all but ``attn.in_proj_bias``. A third
    of it is the key bias, whose gradient is mathematically zero (a key bias adds the same
    ``q·b`` to every logit of a query row, which the softmax ignores); its float-noise gradient
    (~1e-12) becomes an AdamW step of ±lr in either code base, a different one in each."""
    names = sorted(n.removeprefix("visual.") for n in helper.tiny_state_dict() if n.startswith("visual."))
    return torch.tensor([not n.endswith("attn.in_proj_bias") for n in names])


def assert_matches(ours: OurRun, golden: dict[str, torch.Tensor], *, logits_atol: float = LOGITS_ATOL,
                   tuned_atol: float = TUNED_ATOL, tuned_rtol: float = 0.0, tuned_mask: torch.Tensor | None = None,
                   ) -> None:
    """Per sample: the same confident views, logits within ``logits_atol``, the same prediction,
    and the tuned state within ``tuned_atol + tuned_rtol·|official|`` (only the columns
    ``tuned_mask`` keeps, when given)."""
    if "selected" in golden:
        assert torch.equal(ours.selected.long(), golden["selected"].long()), \
            f"confident views differ:\n ours {ours.selected.tolist()}\n official {golden['selected'].tolist()}"
    diff = (ours.logits.float() - golden["logits"].float()).abs()
    assert diff.max() <= logits_atol, f"max |Δ logits| {diff.max():.3g} per sample {diff.amax(-1).tolist()}"
    assert torch.equal(ours.logits.argmax(-1), golden["logits"].argmax(-1)), "predictions differ"
    if ours.tuned:
        tuned, official = torch.stack([t.float() for t in ours.tuned]), golden["tuned"].float()
        if tuned_mask is not None:
            tuned, official = tuned[:, tuned_mask], official[:, tuned_mask]
        excess = (tuned - official).abs() - (tuned_atol + tuned_rtol * official.abs())
        assert excess.max() <= 0, f"tuned state differs: max |Δ| {(tuned - official).abs().max():.3g}"
