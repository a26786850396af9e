"""KD / DKD / ATKD: the losses against independent calculations, and the shared teacher episode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ITEMS = [(i, f"tiny-{i:04d}") for i in range(2)]
DISTILLERS = ("kd", "dkd", "atkd")


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    present = p > 0  # classes with p = 0 contribute nothing (also where q = 0 there)
    return np.sum(np.where(present, p * (np.log(np.where(present, p, 1)) - np.log(np.where(present, q, 1))), 0.0), axis=-1)


@pytest.fixture
def logits() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return 3 * torch.randn(2, 3, 6, generator=g, dtype=torch.float64), 3 * torch.randn(2, 3, 6, generator=g, dtype=torch.float64)


def test_kd_is_the_soft_target_cross_entropy(logits):
    from rlcf_bench_baselines.kd import kd_loss

    s, t = logits
    pt, ps = np_softmax(t.numpy()), np_softmax(s.numpy())
    expected = -(pt * np.log(ps)).sum(-1).mean(-1)
    assert np.allclose(kd_loss(s, t).numpy(), expected)
    # its gradient is KL's: the two differ by the teacher's entropy, a constant
    s1, s2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    kd_loss(s1, t).sum().backward()
    from rlcf_bench.tta.objectives import kl_divergence

    kl_divergence(t.log_softmax(-1), s2.log_softmax(-1)).mean(-1).sum().backward()
    assert torch.allclose(s1.grad, s2.grad)


def test_dkd_parts_sum_back_to_the_kl(logits):
    """KL(pᵀ ‖ pˢ) = TCKD + (1 − pᵀ_target) · NCKD, for any target class (DKD's decomposition)."""
    from rlcf_bench_baselines.dkd import dkd_parts

    s, t = logits
    pt, ps = np_softmax(t.numpy()), np_softmax(s.numpy())
    for target in (t.argmax(-1), torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 5)):
        tckd, nckd = dkd_parts(s, t, target)
        tgt = target.numpy()[..., None]
        bt = np.concatenate([np.take_along_axis(pt, tgt, -1), 1 - np.take_along_axis(pt, tgt, -1)], -1)
        bs = np.concatenate([np.take_along_axis(ps, tgt, -1), 1 - np.take_along_axis(ps, tgt, -1)], -1)
        assert np.allclose(tckd.numpy(), np_kl(bt, bs))
        mask = np.eye(6)[target.numpy()].astype(bool)
        nt = np.where(mask, 0, pt) / np.where(mask, 0, pt).sum(-1, keepdims=True)
        ns = np.where(mask, 0, ps) / np.where(mask, 0, ps).sum(-1, keepdims=True)
        assert np.allclose(nckd.numpy(), np_kl(nt, ns))
        p_target = np.take_along_axis(pt, tgt, -1)[..., 0]
        assert np.allclose(tckd.numpy() + (1 - p_target) * nckd.numpy(), np_kl(pt, ps))


def test_dkd_loss_weights_the_parts_and_targets_the_teacher_argmax(logits):
    from rlcf_bench_baselines.dkd import dkd_loss, dkd_parts

    s, t = logits
    tckd, nckd = dkd_parts(s, t, t.argmax(-1))
    assert torch.allclose(dkd_loss(s, t), (1.0 * tckd + 0.5 * nckd).mean(-1))
    assert torch.allclose(dkd_loss(s, t, alpha=2.0, beta=0.0, temperature=2.0),
                          4 * 2.0 * dkd_parts(s, t, t.argmax(-1), 2.0)[0].mean(-1))
    grad = s.clone().requires_grad_(True)
    dkd_loss(grad, t).sum().backward()
    assert torch.isfinite(grad.grad).all()  # the excluded target class passes no NaN


def test_atkd_standardises_and_weights_by_the_students_spread(logits):
    from rlcf_bench_baselines.atkd import EPS, atkd_loss

    s, t = logits

    def standard(z: np.ndarray, swapped: bool) -> tuple[np.ndarray, np.ndarray]:
        mean, std = z.mean(-1, keepdims=True), z.std(-1, keepdims=True)  # population std
        centre, spread = (std, mean) if swapped else (mean, std)
        return 2.0 * (z - centre) / (spread + EPS), spread[..., 0] ** 2

    for swapped in (False, True):
        zs, weight = standard(s.numpy(), swapped)
        zt, _ = standard(t.numpy(), swapped)
        expected = (weight * np_kl(np_softmax(zt), np_softmax(zs))).mean(-1)
        assert np.allclose(atkd_loss(s, t, swapped=swapped).numpy(), expected)


def test_atkd_weighting_scales_with_the_students_spread(logits):
    """Standardisation removes an affine change of the student's logits (a·z + b, a > 0), so the
    KL term is unchanged and only the σ² weight moves: the loss scales by a² exactly (up to ε)."""
    from rlcf_bench_baselines.atkd import atkd_loss

    s, t = logits
    base = atkd_loss(s, t)
    assert torch.allclose(atkd_loss(3.0 * s + 7.0, t), 9.0 * base, rtol=1e-4)
    # the statistics carry no gradient: the loss's gradient is σ² times the KL's, σ held fixed
    grad = s.clone().requires_grad_(True)
    atkd_loss(grad, t).sum().backward()
    assert torch.isfinite(grad.grad).all() and grad.grad.abs().sum() > 0


# --------------------------------------------------------------------------- the shared episode


def _method(name: str, ctx, method_host, **options):
    from rlcf_bench.types import config_from_pairs

    spec = method_host.registry("methods").get(name)
    method = spec.method_cls(config_from_pairs(spec.config_cls, options))
    method.setup(ctx)
    return method


def test_defaults_follow_the_official_script():
    from rlcf_bench_baselines.atkd import ATKDConfig
    from rlcf_bench_baselines.dkd import DKDConfig
    from rlcf_bench_baselines.kd import KDConfig

    for cfg in (KDConfig(), DKDConfig(), ATKDConfig()):
        assert (cfg.steps, cfg.lr, cfg.weight_decay, cfg.underscore_prompt) == (3, 1e-5, 5e-4, False)
    assert (DKDConfig().alpha, DKDConfig().beta, DKDConfig().temperature) == (1.0, 0.5, 1.0)
    assert (ATKDConfig().multiplier, ATKDConfig().swapped_std_mean) == (2.0, False)


def test_teacher_logits_are_the_reward_models_zero_shot_logits(make_ctx):
    ctx, task = make_ctx()
    teacher = ctx.reward_model
    batch = task.make_batch(ITEMS, ctx.model, ctx.device)
    feats = teacher.image_features(batch.images)
    text = teacher.text_features(["a photo of a red.", "a photo of a blue."])
    expected = teacher.members[0].logit_scale * feats[0] @ text[0].t()
    assert torch.allclose(teacher.class_logits(feats, text), expected)


@pytest.mark.parametrize("name", DISTILLERS)
def test_episode_teacher_once_and_reset_restores(name, make_ctx, method_host, monkeypatch):
    ctx, task = make_ctx()
    method = _method(name, ctx, method_host, lr="1e-2")
    calls = []
    encode = ctx.reward_model.image_features
    monkeypatch.setattr(ctx.reward_model, "image_features", lambda x: calls.append(x.shape[0]) or encode(x))
    initial = [p.detach().clone() for p in ctx.model.module.parameters()]
    batch = task.make_batch(ITEMS[:1], ctx.model, ctx.device)
    method.reset()
    method.adapt(batch)
    assert calls == [ctx.protocol.n_selected]  # the teacher sees the selected views once per episode
    assert method.objective.teacher_logits.shape == (1, ctx.protocol.n_selected, len(ctx.classnames))
    assert any(not torch.equal(s[0], p) for s, p in zip(method.tuner.state, method.tuner.initial))  # it learned
    method.predict(batch)
    method.reset()
    assert all(torch.equal(p.detach(), q) for p, q in zip(ctx.model.module.parameters(), initial))
    assert all(not p.requires_grad for p in ctx.model.module.parameters())


@pytest.mark.parametrize("name", DISTILLERS)
def test_runner_end_to_end_records_the_teacher_share(name, method_host, tmp_path):
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / 'lb.sqlite'}")
    runner = Runner(method_host, store, ExecutionOptions(device="cpu", warmup=0))
    req = RunRequest(task="classification", dataset="tiny-colors", method=name, model="tiny-clip",
                     reward_model="tiny-clip", protocol_overrides=(("n_views", 8), ("selection_ratio", 0.25), ("limit", 2)))
    model = runner.session.model("tiny-clip").module
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = runner.run(req)
    assert result.status == "finished" and result.n_samples == 2
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(r.reward_ms is not None and r.reward_ms > 0 for r in store.sample_rows(result.run_id))


def test_registry_and_reference_rows(method_host):
    registry = method_host.registry("methods")
    for name in DISTILLERS:
        assert "reward_model" in registry.get(name).requires
    # classification: the distillers' own rows (the RLCF plugin's paper numbers add KD retrieval rows)
    refs = {(r.method, r.dataset): r for r in method_host.references()
            if r.method in DISTILLERS and r.task == "classification"}
    assert refs[("kd", "imagenet-a")].value == 66.39 and refs[("atkd", "imagenet-r")].value == 85.12
    assert refs[("kd", "imagenet-a")].reward_model == "ViT-L-14@openai"
    assert "swapped" in refs[("atkd", "imagenet")].note
    assert not any(m == "dkd" for m, _ in refs)  # DKD was never reported
    assert len(refs) == 10
