"""TPT / RLCF episodes: reset exactness, determinism, batch-size independence, runner runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

ITEMS = [(i, f"tiny-{i:04d}") for i in range(4)]
ALL_METHODS = ("tpt-prompt", "rlcf-prompt", "tpt-image", "rlcf-image")


def _method(name: str, ctx, **options):
    from rlcf_bench.types import config_from_pairs
    from rlcf_bench_baselines.tpt_image import TPTImage
    from rlcf_bench_baselines.tpt_prompt import TPTPrompt
    from rlcf_bench_rlcf.rlcf_image import RLCFImage
    from rlcf_bench_rlcf.rlcf_prompt import RLCFPrompt

    cls = {"tpt-prompt": TPTPrompt, "rlcf-prompt": RLCFPrompt, "tpt-image": TPTImage, "rlcf-image": RLCFImage}[name]
    method = cls(config_from_pairs(cls.config_cls, options))
    method.setup(ctx)
    return method


def _episode(method, task, ctx, items):
    batch = task.make_batch(items, ctx.model, ctx.device)
    method.reset()
    method.adapt(batch)
    return method.predict(batch).logits


def _tuned(method) -> list[torch.Tensor]:
    """The tuned state, one row per sample of the latest episode."""
    tuner = method.tuner
    if hasattr(tuner, "context"):
        return [tuner.context.detach().clone()]
    return [s.detach().clone() for s in tuner.state]


def _model_state(ctx) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in ctx.model.module.state_dict(keep_vars=True).items()}


def _unchanged(ctx, before: dict[str, torch.Tensor]) -> bool:
    after = ctx.model.module.state_dict(keep_vars=True)
    flags = all(not p.requires_grad for p in ctx.model.module.parameters())
    return flags and all(torch.equal(before[k], after[k].detach()) for k in before)


def test_hyper_parameters_follow_the_spec():
    from rlcf_bench_baselines.tpt_image import TPTImageConfig
    from rlcf_bench_baselines.tpt_prompt import TPTPromptConfig
    from rlcf_bench_rlcf.rlcf_image import RLCFImageConfig
    from rlcf_bench_rlcf.rlcf_prompt import RLCFPromptConfig

    def pick(cfg, *names):
        return tuple(getattr(cfg, n) for n in names)

    tpt = pick(TPTPromptConfig(), "steps", "lr", "weight_decay", "ctx_init", "coop")
    assert tpt == (1, 5e-3, 0.01, "a photo of a", None)
    assert pick(RLCFPromptConfig(), "steps", "lr", "weight_decay", "sample_k", "baseline") == (3, 7e-3, 5e-4, 3, "view")
    assert pick(TPTImageConfig(), "steps", "lr", "weight_decay", "underscore_prompt") == (3, 1e-5, 5e-4, False)
    cfg = RLCFImageConfig()
    assert pick(cfg, "steps", "lr", "weight_decay", "sample_k", "momentum") == (3, 1e-5, 5e-4, 3, False)
    assert pick(cfg, "momentum_mu", "momentum_freq", "momentum_w") == (0.9998, 64, 1.0)


@pytest.mark.parametrize("name", ("tpt-prompt", "rlcf-prompt"))
def test_reset_restores_tuned_parameters_bit_exactly(name, make_ctx):
    ctx, task = make_ctx()
    method = _method(name, ctx)
    method.reset()
    _episode(method, task, ctx, ITEMS[:1])
    before = _tuned(method)
    _episode(method, task, ctx, ITEMS[:1])
    after_adapt = _tuned(method)
    method.reset()
    restored = _tuned(method)
    init = method.tuner.learner.init_ctx.expand_as(restored[0])
    assert not torch.equal(after_adapt[0], init)  # it did move
    assert torch.equal(restored[0], init)
    assert torch.equal(before[0], after_adapt[0])  # the second episode started from the init too
    assert not method.tuner.optimizer.state  # AdamW starts from empty moments again


@pytest.mark.parametrize("name", ("tpt-image", "rlcf-image"))
def test_image_episodes_start_from_the_model_and_leave_it_unchanged(name, make_ctx):
    ctx, task = make_ctx()
    model = _model_state(ctx)
    method = _method(name, ctx, lr=1e-2)
    method.reset()
    first = _episode(method, task, ctx, ITEMS[:1])
    adapted = _tuned(method)
    assert any(not torch.equal(a[0], p) for a, p in zip(adapted, method.tuner.initial))  # it did move
    assert _unchanged(ctx, model)  # the tuned copies are the tuner's own: the model is never written
    method.reset()
    assert not method.tuner.optimizer.state  # AdamW starts from empty moments again
    again = _episode(method, task, ctx, ITEMS[:1])
    assert torch.equal(first, again)  # the second episode started from θ_clip too
    assert all(torch.equal(a, b) for a, b in zip(adapted, _tuned(method)))
    method.reset()
    assert _unchanged(ctx, model)


@pytest.mark.parametrize("name", ("tpt-prompt", "rlcf-prompt"))
def test_prompt_methods_do_not_depend_on_batch_size(name, make_ctx):
    """Four samples adapted at once give the same contexts and predictions as one at a time."""
    ctx, task = make_ctx()
    method = _method(name, ctx)
    together = _episode(method, task, ctx, ITEMS)
    ctx_together = _tuned(method)[0]
    alone, ctx_alone = [], []
    for item in ITEMS:
        alone.append(_episode(method, task, ctx, [item]))
        ctx_alone.append(_tuned(method)[0])
    init = method.tuner.learner.init_ctx
    moved = (ctx_together - init).abs().amax(dim=(1, 2))
    assert (moved > 1e-4).all()  # every sample's context was actually tuned
    assert torch.allclose(ctx_together, torch.cat(ctx_alone), atol=1e-5, rtol=0)
    # logits are 14·cos here: 1e-5 on the features is ~1e-4 on the logits (fp32 re-association)
    assert torch.allclose(together, torch.cat(alone), atol=2e-4, rtol=0)
    assert torch.allclose(together.softmax(-1), torch.cat(alone).softmax(-1), atol=1e-5, rtol=0)


IMAGE_METHODS = ("tpt-image", "rlcf-image", "kd", "dkd", "atkd")


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_image_methods_do_not_depend_on_batch_size(name, make_ctx, method_host):
    """Four samples adapted at once (one copy of the tower each, vmap) give the same tuned
    weights and predictions as one at a time, up to float re-association (grouped convolution);
    the model is left as it was."""
    from rlcf_bench.tta.reward import CLIPReward
    from rlcf_bench.tta.vlm import OpenClipVLM
    from rlcf_bench.types import config_from_pairs
    from rlcf_bench_fixtures.tiny import build_tiny_clip

    ctx, task = make_ctx()
    # a teacher that is not the student (else a distillation gradient is 0 plus rounding noise)
    other = OpenClipVLM(*build_tiny_clip(seed=1), name="tiny-clip-seed1", image_size=32)
    ctx = dataclasses.replace(ctx, reward_model=CLIPReward([(other, 1.0)], name=other.name,
                                                           policy_mean=ctx.model.mean, policy_std=ctx.model.std))
    model = _model_state(ctx)
    spec = method_host.registry("methods").get(name)
    method = spec.method_cls(config_from_pairs(spec.config_cls, {"lr": "1e-3"}))
    method.setup(ctx)
    together = _episode(method, task, ctx, ITEMS)
    state_together = _tuned(method)
    alone, state_alone = [], []
    for item in ITEMS:
        alone.append(_episode(method, task, ctx, [item]))
        state_alone.append(_tuned(method))
    initial = method.tuner.initial
    moved = torch.stack([sum((s[b] - p).abs().max() for s, p in zip(state_together, initial)) for b in range(4)])
    assert (moved > 0).all() and moved.max() > 1e-3  # every sample's copy was tuned (some barely)
    # Adam divides by √v: an element whose gradient is rounding noise moves by up to lr a step
    # either way, so rows agree to that bound element-wise, and closely on average
    lr, steps = method.config.lr, method.config.steps
    diff = torch.cat([(s - torch.cat([a[k] for a in state_alone])).flatten() for k, s in enumerate(state_together)])
    movement = torch.cat([(s - p).flatten() for s, p in zip(state_together, initial)])
    assert diff.abs().max() <= 2 * lr * steps
    assert diff.abs().mean() < 0.01 * movement.abs().mean()
    assert torch.allclose(together, torch.cat(alone), atol=1e-4, rtol=0)
    assert torch.equal(together.argmax(-1), torch.cat(alone).argmax(-1))
    method.reset()
    assert _unchanged(ctx, model)


def test_one_image_sample_is_tuning_the_model_in_place(make_ctx):
    """A batch of one is bit-identical to the plain computation: AdamW on the tower's own
    parameters, in place, on the marginal entropy of the most confident views (TPT). (The tuners'
    AdamW is torch's fused one on the CPU, ``tests/methods/test_tta_optim.py``.)"""
    from rlcf_bench.tta.objectives import gather_views, marginal_entropy, select_confident
    from rlcf_bench.tta.optim import adamw
    from rlcf_bench.tta.prompts import class_text_features

    ctx, task = make_ctx()
    method = _method("tpt-image", ctx, lr=1e-2)
    logits = _episode(method, task, ctx, ITEMS[:1])
    views = task.make_batch(ITEMS[:1], ctx.model, ctx.device).views
    params, text, scale = list(ctx.model.visual.parameters()), class_text_features(ctx), ctx.model.logit_scale
    saved = [p.detach().clone() for p in params]

    def encode(x):
        return scale * torch.nn.functional.normalize(ctx.model.encode_image(x).float(), dim=-1) @ text.t()

    try:
        for p in params:
            p.requires_grad_(True)
        optimizer = adamw(params, lr=1e-2, weight_decay=method.config.weight_decay)  # torch's fused AdamW on CPU
        with torch.no_grad():
            selected = select_confident(encode(views[0]).unsqueeze(0), ctx.protocol.n_selected)
        for _ in range(method.config.steps):
            optimizer.zero_grad()
            marginal_entropy(encode(gather_views(views, selected)[0]).unsqueeze(0)).sum().backward()
            optimizer.step()
        with torch.no_grad():
            expected = encode(task.make_batch(ITEMS[:1], ctx.model, ctx.device).images)
    finally:
        with torch.no_grad():
            for p, v in zip(params, saved):
                p.copy_(v)
                p.requires_grad_(False)
                p.grad = None
    assert torch.equal(logits, expected)


def test_zero_steps_is_zero_shot_with_the_hand_crafted_prompt(make_ctx):
    from rlcf_bench.tta.prompts import class_text_features

    ctx, task = make_ctx()
    method = _method("tpt-prompt", ctx, steps=0)
    logits = _episode(method, task, ctx, ITEMS)
    batch = task.make_batch(ITEMS, ctx.model, ctx.device)
    zs = ctx.model.logit_scale * ctx.model.image_features(batch.images) @ class_text_features(ctx).t()
    assert torch.allclose(logits, zs, atol=1e-5)


def test_rlcf_image_momentum_moves_the_start_point_and_leaves_the_model(make_ctx):
    ctx, task = make_ctx()
    model = _model_state(ctx)
    method = _method("rlcf-image", ctx, momentum="true", momentum_freq="2", momentum_mu="0.5", lr="1e-2")
    tuner = method.tuner
    clip = [p.clone() for p in tuner.initial]
    for item in ITEMS[:2]:
        batch = task.make_batch([item], ctx.model, ctx.device)
        method.reset()
        method.adapt(batch)
        method.predict(batch)
        method.after_predict(batch)
    assert tuner.momentum.start is not None and any(not torch.equal(s, c) for s, c in zip(tuner.momentum.start, clip))
    method.reset()  # what the runner calls at the end of a run
    assert _unchanged(ctx, model)
    # the next episode starts from the momentum start point, not from θ_clip
    batch = task.make_batch([ITEMS[2]], ctx.model, ctx.device)
    tuner.begin(batch.views)
    assert all(torch.equal(s[0], p) for s, p in zip(tuner.state, tuner.momentum.start))
    method.reset()
    with pytest.raises(ValueError, match="one sample at a time"):  # the start point moves per sample
        tuner.begin(task.make_batch(ITEMS[:2], ctx.model, ctx.device).views)


# ------------------------------------------------------------------ through the runner


def _run(method_host, tmp_path, name, *, db="lb", batch_size=None, seed=0, **options):
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    store = Store(f"sqlite:///{tmp_path / (db + '.sqlite')}")
    runner = Runner(method_host, store, ExecutionOptions(device="cpu", batch_size=batch_size, warmup=0))
    req = RunRequest(task="classification", dataset="tiny-colors", method=name, model="tiny-clip",
                     reward_model="tiny-clip", method_options=tuple(options.items()),
                     protocol_overrides=(("n_views", 8), ("selection_ratio", 0.25), ("limit", 4), ("seed", seed)))
    model = runner.session.model("tiny-clip").module
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = runner.run(req)
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state), "the run left the model changed"
    assert all(not p.requires_grad for p in model.parameters())
    records = sorted(store.sample_records(result.run_id), key=lambda r: r.index)
    return result, store, records


@pytest.mark.parametrize("name", ALL_METHODS)
def test_runner_end_to_end(name, method_host, tmp_path):
    result, store, records = _run(method_host, tmp_path, name)
    assert result.status == "finished" and result.n_samples == 4
    assert set(result.metrics) >= {"top1", "top5", "ece"}
    run = store.get_run(result.run_id)
    assert run.peak_memory_mb and run.peak_memory_mb > 0
    if name.startswith("rlcf"):
        rows = store.sample_rows(result.run_id)
        assert all(r.reward_ms is not None and r.reward_ms > 0 for r in rows)  # reward share is recorded


@pytest.mark.parametrize("name", ("rlcf-prompt", "rlcf-image"))
def test_same_seed_same_result(name, method_host, tmp_path):
    _, _, first = _run(method_host, tmp_path, name, db="a")
    _, _, second = _run(method_host, tmp_path, name, db="b")
    def key(records):
        return [(r.prediction, r.extra["confidence"]) for r in records]

    assert key(first) == key(second)


def test_runner_batch_size_does_not_change_results(method_host, tmp_path):
    _, _, one = _run(method_host, tmp_path, "rlcf-prompt", db="one", batch_size=1)
    _, _, four = _run(method_host, tmp_path, "rlcf-prompt", db="four", batch_size=4)
    assert [r.prediction for r in one] == [r.prediction for r in four]
    assert all(abs(a.extra["confidence"] - b.extra["confidence"]) < 1e-5 for a, b in zip(one, four))


def test_method_registry_lists_tasks_and_reward_needs(method_host):
    registry = method_host.registry("methods")
    for name in ALL_METHODS:
        spec = registry.get(name)
        assert spec.tasks == frozenset({"classification"})
        assert ("reward_model" in spec.requires) == name.startswith("rlcf")
        assert dataclasses.is_dataclass(spec.config_cls)
    rewards = method_host.registry("reward-models")
    assert dict(rewards.get("rlcf-s").members) == {"ViT-L-14-336@openai": 0.56, "RN50x64@openai": 0.17,
                                                   "ViT-L-14@openai": 0.28}
