"""C-TPT, R-TPT and TPS: each method's core computation against an independent calculation,
their defaults, and batched adaptation equal to one sample at a time."""

from __future__ import annotations

import math

import pytest
import torch
from test_tuning_methods import _episode

ITEMS = [(i, f"tiny-{i:04d}") for i in range(4)]


def _method(name: str, ctx, **options):
    from rlcf_bench.plugins import PluginHost
    from rlcf_bench.types import config_from_pairs

    spec = PluginHost(autoload=False, extra=["rlcf_bench_baselines"]).registry("methods").get(name)
    method = spec.method_cls(config_from_pairs(spec.config_cls, options))
    method.setup(ctx)
    return method


def _entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


# ------------------------------------------------------------------ defaults


def test_defaults_are_the_official_ones():
    from rlcf_bench_baselines.c_tpt import CTPTConfig
    from rlcf_bench_baselines.r_tpt import RTPTConfig
    from rlcf_bench_baselines.tps import TPSConfig

    def pick(cfg, *names):
        return tuple(getattr(cfg, n) for n in names)

    assert pick(CTPTConfig(), "steps", "lr", "weight_decay", "ctx_init", "lambda_") == (1, 5e-3, 0.01, "a photo of a", None)
    assert pick(RTPTConfig(), "steps", "lr", "weight_decay", "neighbours", "temperature", "self_similarity") == (
        1, 5e-3, 0.01, 20, 0.01, "index")
    assert pick(TPSConfig(), "steps", "lr", "weight_decay", "templates", "reselect") == (1, 5e-3, 0.01, "single", True)


@pytest.mark.parametrize(("dataset", "expected"), [
    ("imagenet-a", 20.0), ("imagenet-v2", 20.0), ("imagenet-r", 20.0), ("imagenet-sketch", 20.0),
    ("imagenet", 50.0), ("flower102", 50.0), ("eurosat", 50.0), ("micro-hard", 50.0), (None, 50.0),
])
def test_ctpt_lambda_follows_the_dataset_name(dataset, expected, make_ctx):
    import dataclasses

    ctx, _ = make_ctx()
    ctx = dataclasses.replace(ctx, dataset=dataset)
    assert _method("c-tpt", ctx).lambda_ == expected
    assert _method("c-tpt", ctx, lambda_="7.5").lambda_ == 7.5  # -m lambda_=7.5 overrides


def test_the_runner_hands_the_dataset_name_to_the_method(method_host, tmp_path):
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store
    from rlcf_bench_baselines.c_tpt import CTPT

    seen = []
    original = CTPT.setup

    def spy(self, ctx):
        seen.append(ctx.dataset)
        original(self, ctx)

    CTPT.setup = spy
    try:
        runner = Runner(method_host, Store(f"sqlite:///{tmp_path / 'lb.sqlite'}"), ExecutionOptions(device="cpu"))
        runner.run(RunRequest("classification", "tiny-colors", "c-tpt", "tiny-clip",
                              protocol_overrides=(("n_views", 4), ("limit", 1))))
    finally:
        CTPT.setup = original
    assert seen == ["tiny-colors"]


# ------------------------------------------------------------------ C-TPT


def test_text_feature_dispersion_by_hand():
    from rlcf_bench_baselines.c_tpt import text_feature_dispersion

    rows = [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],            # centroid (.5, .5, 0): both at √0.5
            [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],           # centroid 0: both at 1
            [[0.6, 0.8, 0.0], [0.6, 0.8, 0.0]]]            # identical: 0
    expected = []
    for classes in rows:
        c = len(classes)
        centroid = [sum(v[i] for v in classes) / c for i in range(3)]
        expected.append(sum(math.dist(v, centroid) for v in classes) / c)
    got = text_feature_dispersion(torch.tensor(rows))
    assert expected == pytest.approx([math.sqrt(0.5), 1.0, 0.0])
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_ctpt_loss_is_entropy_minus_lambda_dispersion(make_ctx):
    """At step 0 the objective equals H̄(selected) − λ·ATFD of the same forward's class features,
    both computed here by hand."""
    from rlcf_bench.tta.objectives import gather_views, select_confident

    ctx, task = make_ctx()
    method = _method("c-tpt", ctx, lambda_="3")
    batch = task.make_batch(ITEMS[:2], ctx.model, ctx.device)
    method.reset()
    tuner = method.tuner
    tuner.begin(batch.views)
    with torch.no_grad():
        logits = tuner.selection_logits()
        loss = method.objective.loss(gather_views(logits, select_confident(logits, ctx.protocol.n_selected)))
        text = tuner.current_class_features
    for b in range(2):
        ent = [_entropy(p) for p in logits[b].softmax(-1).tolist()]
        chosen = sorted(range(len(ent)), key=lambda v: ent[v])[: ctx.protocol.n_selected]
        mean_p = [sum(logits[b, v].softmax(-1)[c].item() for v in chosen) / len(chosen) for c in range(logits.shape[-1])]
        classes = text[b].tolist()
        centroid = [sum(col) / len(classes) for col in zip(*classes)]
        atfd = sum(math.dist(t, centroid) for t in classes) / len(classes)
        assert loss[b].item() == pytest.approx(_entropy(mean_p) - 3.0 * atfd, abs=1e-5)


def test_ctpt_with_lambda_zero_is_tpt_and_a_large_lambda_spreads_the_classes(make_ctx):
    from rlcf_bench_baselines.c_tpt import text_feature_dispersion
    from rlcf_bench_baselines.tpt_prompt import TPTPrompt

    ctx, task = make_ctx()
    tpt = TPTPrompt(TPTPrompt.config_cls())
    tpt.setup(ctx)
    assert torch.equal(_episode(_method("c-tpt", ctx, lambda_="0"), task, ctx, ITEMS),
                       _episode(tpt, task, ctx, ITEMS))

    method = _method("c-tpt", ctx, lambda_="1000", lr="1e-3")
    learner = method.tuner.learner
    with torch.no_grad():
        before = text_feature_dispersion(learner.text_features(learner.initial_context(len(ITEMS))))
    _episode(method, task, ctx, ITEMS)
    with torch.no_grad():
        after = text_feature_dispersion(learner.text_features(method.tuner.context))
    assert (after > before + 1e-4).all()


# ------------------------------------------------------------------ R-TPT


def test_reliability_weights_by_hand():
    from rlcf_bench_baselines.r_tpt import reliability_weights

    angles = [0.0, 0.1, 0.1, 0.5, 2.0]  # views 1 and 2 are identical: the diagonal goes by index
    views = [[math.cos(a), math.sin(a)] for a in angles]
    k, tau = 2, 0.5
    r = []
    for i, u in enumerate(views):
        sims = sorted((u[0] * w[0] + u[1] * w[1] for j, w in enumerate(views) if j != i), reverse=True)
        r.append(sum(sims[:k]) / k)
    z = sum(math.exp(x / tau) for x in r)
    expected = [math.exp(x / tau) / z for x in r]
    got = reliability_weights(torch.tensor([views]), k=k, temperature=tau)
    assert got.shape == (1, 5)
    assert got[0].tolist() == pytest.approx(expected, abs=1e-6)
    # k larger than the other views: all of them are used
    everything = reliability_weights(torch.tensor([views]), k=20, temperature=tau)
    assert torch.allclose(everything, reliability_weights(torch.tensor([views]), k=4, temperature=tau))
    assert reliability_weights(torch.tensor([[views[0]]])).tolist() == [[1.0]]


def test_reliability_weights_with_the_official_threshold_rule_by_hand():
    """``self_similarity=threshold``: every similarity ≥ 1.0 is dropped (the exact diagonal of
    axis-aligned view, an identical pair), one below 1 is kept, whatever its index (the last
    view's own 0.99², as a rounded diagonal 0.99999994 would be)."""
    from rlcf_bench_baselines.r_tpt import reliability_weights

    s = 0.6
    views = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.8, s], [0.0, 0.99]]])
    sim = (views @ views.transpose(1, 2))[0]
    k, tau = 2, 0.5
    r = [sorted((float(x) for x in row if x < 1.0), reverse=True)[:k] for row in sim]
    r = [sum(x) / len(x) for x in r]  # view 2's own 0.8² + 0.6² rounds to 1.0 in fp32: dropped too
    assert sim[2, 2] >= 1.0 and sim[3, 3] < 1.0
    expected = torch.tensor(r).div(tau).softmax(-1)
    got = reliability_weights(views, k=k, temperature=tau, self_similarity="threshold")
    assert torch.allclose(got[0], expected, atol=1e-6)
    assert not torch.allclose(got, reliability_weights(views, k=k, temperature=tau))  # index keeps the twin
    with pytest.raises(ValueError, match="expected one of index, threshold"):
        reliability_weights(views, self_similarity="diagonal")


def test_rtpt_loss_is_the_mean_of_per_view_entropies():
    from rlcf_bench_baselines.r_tpt import MeanViewEntropy

    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], [[5.0, 1.0, 1.0], [1.0, 2.0, 3.0]]])
    expected = [sum(_entropy(v.softmax(-1).tolist()) for v in sample) / 2 for sample in logits]
    assert MeanViewEntropy().loss(logits).tolist() == pytest.approx(expected, abs=1e-6)


def test_rtpt_without_tuning_predicts_the_reliability_weighted_zero_shot_ensemble(make_ctx):
    from rlcf_bench.tta.prompts import class_text_features
    from rlcf_bench_baselines.r_tpt import reliability_weights

    ctx, task = make_ctx()
    got = _episode(_method("r-tpt", ctx, steps="0"), task, ctx, ITEMS)
    batch = task.make_batch(ITEMS, ctx.model, ctx.device)
    feats = ctx.model.image_features(batch.views.flatten(0, 1)).view(len(ITEMS), ctx.protocol.n_views, -1)
    logits = ctx.model.logit_scale * feats @ class_text_features(ctx).t()
    w = reliability_weights(feats, 20, 0.01)
    assert torch.allclose(got, (w.unsqueeze(-1) * logits).sum(1), atol=1e-4)


# ------------------------------------------------------------------ TPS


def test_shifted_prototypes_by_hand():
    from rlcf_bench_baselines.tps import shifted_prototypes

    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    shift = torch.tensor([[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [3.0, 1.0]]])
    s = 1 / math.sqrt(2)
    expected = torch.tensor([[[s, s], [0.0, 1.0]], [[1.0, 0.0], [3 / math.sqrt(13), 2 / math.sqrt(13)]]])
    assert torch.allclose(shifted_prototypes(t, shift), expected, atol=1e-6)


def test_tps_one_step_is_an_adamw_step_on_the_marginal_entropy(make_ctx):
    """δ after one step from 0 is AdamW's first update −lr·g/(|g|+eps) (weight decay of 0 is 0),
    g = ∂H̄/∂δ computed here from scratch; the prediction uses normalise(t + δ) on view 0."""
    from rlcf_bench.tta.prompts import class_text_features

    ctx, task = make_ctx()
    lr = 5e-3
    method = _method("tps", ctx, lr=str(lr))
    got = _episode(method, task, ctx, ITEMS)
    shift = method.tuner.context.detach()

    batch = task.make_batch(ITEMS, ctx.model, ctx.device)
    t = class_text_features(ctx)
    feats = ctx.model.image_features(batch.views.flatten(0, 1)).view(len(ITEMS), ctx.protocol.n_views, -1)
    scale = float(ctx.model.logit_scale)
    for b in range(len(ITEMS)):
        delta = torch.zeros_like(t, requires_grad=True)
        protos = (t + delta) / (t + delta).norm(dim=-1, keepdim=True)
        probs = (scale * feats[b] @ protos.t()).softmax(-1)
        ent = -(probs * probs.log()).sum(-1)
        chosen = torch.argsort(ent.detach(), stable=True)[: ctx.protocol.n_selected]
        mean_p = probs[chosen].mean(0)
        (-(mean_p * mean_p.log()).sum()).backward()
        g = delta.grad
        assert torch.allclose(shift[b], -lr * g / (g.abs() + 1e-8), atol=1e-6)
        moved = (t + shift[b]) / (t + shift[b]).norm(dim=-1, keepdim=True)
        assert torch.allclose(got[b], scale * feats[b, 0] @ moved.t(), atol=1e-4)
    assert shift.abs().amax() > 0.5 * lr  # it did move


def test_tps_without_steps_is_zero_shot(make_ctx):
    from rlcf_bench.tta.prompts import class_text_features

    ctx, task = make_ctx()
    got = _episode(_method("tps", ctx, steps="0"), task, ctx, ITEMS)
    batch = task.make_batch(ITEMS, ctx.model, ctx.device)
    assert torch.allclose(got, ctx.model.logit_scale * ctx.model.image_features(batch.images) @ class_text_features(ctx).t(),
                          atol=1e-5)


def test_tps_rejects_an_unknown_prototype_recipe(make_ctx):
    ctx, _ = make_ctx()
    with pytest.raises(ValueError, match="expected 'single' or 'ensemble'"):
        _method("tps", ctx, templates="gpt4")


# ------------------------------------------------------------------ batching


@pytest.mark.parametrize("name", ("c-tpt", "r-tpt", "tps"))
def test_batched_adaptation_equals_one_sample_at_a_time(name, make_ctx):
    ctx, task = make_ctx()
    method = _method(name, ctx)
    together = _episode(method, task, ctx, ITEMS)
    state_together = method.tuner.context.detach().clone()
    alone, state_alone = [], []
    for item in ITEMS:
        alone.append(_episode(method, task, ctx, [item]))
        state_alone.append(method.tuner.context.detach().clone())
    init = method.tuner.initial_context(1)
    assert ((state_together - init).flatten(1).abs().amax(1) > 1e-4).all()  # every sample was tuned
    assert torch.allclose(state_together, torch.cat(state_alone), atol=1e-5, rtol=0)
    assert torch.allclose(together.softmax(-1), torch.cat(alone).softmax(-1), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ reported numbers


def test_reported_numbers_are_reference_rows_of_registered_datasets():
    from rlcf_bench.plugins import PluginHost

    host = PluginHost(autoload=False, extra=["rlcf_bench_baselines", "rlcf_bench_datasets"])
    datasets = set(host.registry("datasets").names())
    rows = [r for r in host.references() if r.method in {"c-tpt", "r-tpt", "tps"}]
    assert {r.dataset for r in rows} <= datasets
    count = {(m, k): sum(r.method == m and r.metric == k for r in rows)
             for m, k in (("c-tpt", "top1"), ("c-tpt", "ece"), ("tps", "top1"), ("r-tpt", "top1"))}
    # C-TPT: 5 ImageNet sets + 10 fine-grained; ECE without the two doubtful cells; TPS: ImageNet
    # and its 4 variants; R-TPT: none known
    assert count == {("c-tpt", "top1"): 15, ("c-tpt", "ece"): 13, ("tps", "top1"): 5, ("r-tpt", "top1"): 0}
    assert all(r.model == "ViT-B-16@openai" and r.task == "classification" and r.source for r in rows)
    assert len({(r.method, r.dataset, r.metric) for r in rows}) == len(rows)
