"""The contract every registered reward model keeps (``RewardModel``: ``R = Σ_j w_j · 2.5 · max(0,
cos_j)``), on the tiny fixture's images and captions, on the CPU.

A reward model with members of its own (``rlcf-s``) is built from them where they load here and is
skipped with the backend's reason otherwise; a family that spells its members in the name
(``clip-score``: ``m1*w1+m2*w2``) is built as an ensemble of the two tiny fixture CLIPs. Per model:
one feature tensor per member; scores ``[N]``, finite, in ``[0, 2.5 Σ w]``, without gradient,
reproducible and the same for a pair alone as in a batch; class logits ``[N, C]``.
"""

from __future__ import annotations

from typing import Any

import pytest

#: The name a family without members of its own is built under: both tiny fixture CLIPs.
TINY_ENSEMBLE = "tiny-clip*0.7+tiny-clip-teacher*0.3"
CAPTIONS = ("a red square", "a green patch", "a photo of a blue square", "a yellow thing")


def _reward(host: Any, name: str) -> tuple[Any, tuple[tuple[str, float], ...], Any]:
    """(reward model, its members, the policy it serves) for registered ``name``, or skip naming
    the member that cannot be loaded here."""
    from rlcf_bench.session import ComponentSession, resolve_reward

    spec = host.registry("reward-models").get(name)
    built_as = name if spec.members else TINY_ENSEMBLE
    _, members = resolve_reward(host, built_as)
    for model, _ in members:
        check = host.registry("models").get(model).check
        if check is not None:
            try:
                check(model)
            except Exception as exc:  # the backend's preflight: weights missing, download needed ...
                pytest.skip(f"reward model {name!r}: member {model!r} cannot be loaded on this machine: {exc}")
    session = ComponentSession(host, device="cpu")
    policy = session.model("tiny-clip")
    return session.reward_model(built_as, policy), members, policy


def _images(policy: Any, n: int = 4) -> Any:
    import torch

    from rlcf_bench.tta.views import normalize, resize_center_crop
    from rlcf_bench_fixtures.tiny import TinyColors

    data = TinyColors(n)
    crops = torch.stack([resize_center_crop(data.load_image(i), policy.image_size) for i in range(n)])
    return normalize(crops, policy.mean, policy.std)


def test_reward_model_contract(registry_host: Any, reward_model_name: str) -> None:
    import torch

    reward, members, policy = _reward(registry_host, reward_model_name)
    images = _images(policy, len(CAPTIONS))
    with torch.no_grad():
        image_feats, text_feats = reward.image_features(images), reward.text_features(list(CAPTIONS))
    assert len(image_feats) == len(text_feats) == len(members), "one feature tensor per member"
    for f, t in zip(image_feats, text_feats):
        assert f.shape[0] == len(CAPTIONS) and t.shape[0] == len(CAPTIONS) and f.shape[1] == t.shape[1]
    scores = reward.score(image_feats, text_feats)
    assert scores.shape == (len(CAPTIONS),) and torch.isfinite(scores).all() and not scores.requires_grad
    top = 2.5 * sum(w for _, w in members)
    assert bool(((scores >= 0) & (scores <= top + 1e-5)).all()), f"scores {scores.tolist()} outside [0, {top}]"
    assert torch.equal(reward.score(reward.image_features(images), reward.text_features(list(CAPTIONS))), scores)
    alone = reward.score([f[1:2] for f in image_feats], [t[1:2] for t in text_feats])
    torch.testing.assert_close(alone, scores[1:2], rtol=0.0, atol=1e-6)
    logits = reward.class_logits(image_feats, text_feats)
    assert logits.shape == (len(CAPTIONS), len(CAPTIONS)) and torch.isfinite(logits).all()
