"""Zero and MTA (no learning): the vote, the MeanShift mode, no autograd graph, batch independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

ITEMS = [(i, f"tiny-{i:04d}") for i in range(4)]


def one_hot_logits(views: list[tuple[int, float]], n_classes: int) -> torch.Tensor:
    """``[1, V, C]`` logits: view ``i`` puts ``strength`` on class ``cls`` (higher → more confident)."""
    z = torch.zeros(1, len(views), n_classes)
    for i, (cls, strength) in enumerate(views):
        z[0, i, cls] = strength
    return z


def counts(classes: list[int], n_classes: int) -> list[float]:
    return [float(classes.count(c)) for c in range(n_classes)]


# ------------------------------------------------------------------------------------- Zero


def test_zero_vote_counts_the_argmax_of_the_most_confident_views():
    from rlcf_bench_baselines.zero import zero_votes

    # strengths 9 > 8 > 7 > 6 > 5 > 1: the four most confident views vote 2, 0, 2, 1
    views = [(1, 5.0), (2, 9.0), (0, 8.0), (2, 7.0), (1, 6.0), (0, 1.0)]
    votes = zero_votes(one_hot_logits(views, 3), n_keep=4)
    assert votes[0].tolist() == counts([2, 0, 2, 1], 3)  # class 2 wins 2:1:1, no tie-break


def test_zero_tie_goes_to_the_first_discarded_view_that_predicts_a_tied_class():
    from rlcf_bench_baselines.zero import zero_votes

    # kept (9, 8): classes 0 and 1 tie; discarded by confidence: 7 → class 2 (not tied), 6 → class 1
    views = [(0, 9.0), (1, 8.0), (2, 7.0), (1, 6.0), (0, 5.0)]
    votes = zero_votes(one_hot_logits(views, 3), n_keep=2)
    assert votes[0].tolist() == [1.0, 2.0, 0.0]


def test_zero_fallback_takes_the_tied_class_with_the_highest_logit_of_the_most_confident_discarded_view():
    from rlcf_bench_baselines.zero import zero_votes

    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 0] = 9.0  # kept: class 0
    logits[0, 1, 1] = 8.0  # kept: class 1 → tie 0 vs 1
    logits[0, 2] = torch.tensor([1.0, 2.0, 7.0, 0.0])  # discarded, predicts 2 (not tied); logit 2 > 1 → class 1
    votes = zero_votes(logits, n_keep=2)
    assert votes[0].tolist() == [1.0, 2.0, 0.0, 0.0]


def test_zero_keeps_thirty_percent_of_the_views_and_predicts_the_vote(make_ctx):
    from rlcf_bench_baselines.zero import VOTE_TIE_SHARE, Zero, ZeroConfig, zero_votes

    ctx, task = make_ctx(n_views=10)
    method = Zero(ZeroConfig())
    method.setup(ctx)
    batch = task.make_batch(ITEMS, ctx.model, ctx.device)
    method.reset()
    method.adapt(batch)
    probs = method.predict(batch).probs
    logits = method.view_logits(method.features)
    votes = zero_votes(logits, 3)  # ⌊0.3 · 10⌋
    assert votes.sum(-1).min() >= 3
    assert torch.equal(probs.argmax(-1), votes.argmax(-1))
    assert torch.allclose(probs.sum(-1), torch.ones(4))
    share = votes / votes.sum(-1, keepdim=True)
    assert (probs - share).abs().max() <= VOTE_TIE_SHARE


def test_bad_options_are_refused_when_the_config_is_read():
    from rlcf_bench.types import config_from_pairs
    from rlcf_bench_baselines.mta import MTAConfig
    from rlcf_bench_baselines.zero import ZeroConfig

    with pytest.raises(ValueError, match=r"gamma=0.0: expected a fraction of the views in \(0, 1\]"):
        config_from_pairs(ZeroConfig, [("gamma", "0")])
    with pytest.raises(ValueError, match="tie_break='bitwise': expected one of mask, official"):
        config_from_pairs(ZeroConfig, [("tie_break", "bitwise")])
    with pytest.raises(ValueError, match="lambda_y > 0"):
        config_from_pairs(MTAConfig, [("lambda_y", "0")])


# ------------------------------------------------------------------------------------- MTA


def reference_mta(features: np.ndarray, probs: np.ndarray, lambda_y: float = 0.2, lambda_q: float = 4.0,
                  outer: int = 5, inner: int = 5, tol: float = 1e-6, ratio: float = 0.3) -> np.ndarray:
    """The MTA solver written out view by view for one sample (float64)."""
    n = len(features)
    d2 = np.array([[np.sum((a - b) ** 2) for b in features] for a in features])
    k = max(1, int(ratio * (n - 1)))
    h2 = np.array([0.5 * np.mean(sorted(np.delete(d2[i], i))[:k]) for i in range(n)])
    affinity = probs @ probs.T

    def kernel(m: np.ndarray) -> np.ndarray:
        return np.array([math.exp(-np.sum((features[i] - m) ** 2) / (2 * h2[i])) for i in range(n)])

    y, m = np.full(n, 1.0 / n), features[0].copy()
    for _ in range(outer):
        kappa = kernel(m)
        for _ in range(inner):
            z = (kappa + lambda_q * affinity @ y) / lambda_y
            new = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            change, y = np.linalg.norm(new - y), new
            if change < tol:
                break
        for _ in range(inner):
            w = kernel(m) * y
            new = (w[:, None] * features).sum(0) / w.sum()
            new /= np.linalg.norm(new)
            change, m = np.linalg.norm(new - m), new
            if change < tol:
                break
    return m


def test_mta_bandwidth_is_half_the_mean_squared_distance_to_the_nearest_views():
    from rlcf_bench_baselines.mta import mta_bandwidth_sq

    # four points on a line: distances to the nearest other one (k = max(1, ⌊0.3·3⌋) = 1)
    pts = torch.tensor([[[0.0], [1.0], [3.0], [7.0]]])
    h2 = mta_bandwidth_sq(pts, 0.3)
    assert h2[0].tolist() == pytest.approx([0.5 * 1, 0.5 * 1, 0.5 * 4, 0.5 * 16])
    # k = ⌊0.7·3⌋ = 2 nearest
    assert mta_bandwidth_sq(pts, 0.7)[0].tolist() == pytest.approx([0.5 * (1 + 9) / 2, 0.5 * (1 + 4) / 2,
                                                                     0.5 * (4 + 9) / 2, 0.5 * (16 + 36) / 2])


def test_mta_solver_matches_the_equations_written_out_per_view():
    from rlcf_bench_baselines.mta import mta_mode

    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(3, 12, 5, generator=g), dim=-1)
    probs = (4 * torch.randn(3, 12, 4, generator=g)).softmax(-1)
    together = mta_mode(feats, probs)
    for b in range(3):
        expected = reference_mta(feats[b].double().numpy(), probs[b].double().numpy())
        assert np.allclose(together[b].numpy(), expected, atol=1e-5)
        assert torch.allclose(mta_mode(feats[b : b + 1], probs[b : b + 1])[0], together[b], atol=1e-6)


def test_mta_finds_the_mode_of_a_cluster_despite_outliers():
    """A symmetric cluster of 9 views around ``u`` (view 0, the start) and 3 far outliers on one
    side: by the cluster's symmetry its own pull is exactly towards ``u``, and the outliers'
    kernels are small there, so the mode stays within 1e-2 rad of ``u``, while the plain mean is
    pulled more than 0.3 rad towards the outliers."""
    from rlcf_bench_baselines.mta import mta_mode

    u = torch.tensor([1.0, 0.0, 0.0, 0.0])
    cluster = [u]
    for axis in (1, 2):
        for sign in (1.0, -1.0):
            for angle in (0.1, 0.2):
                v = torch.zeros(4)
                v[0], v[axis] = math.cos(angle), sign * math.sin(angle)
                cluster.append(v)
    outliers = [torch.tensor([0.0, 0.0, 0.6, 0.8]), torch.tensor([0.0, 0.0, 0.8, 0.6]), torch.tensor([0.0, 0.0, 0.0, 1.0])]
    feats = torch.stack([*cluster, *outliers])[None]
    probs = torch.full((1, feats.shape[1], 2), 0.5)  # no class information: density alone decides
    mode = mta_mode(feats, probs)[0]
    assert float(mode @ u) > math.cos(1e-2)
    mean = torch.nn.functional.normalize(feats[0].mean(0), dim=-1)
    assert float(mean @ u) < math.cos(0.3)


def test_mta_inlierness_follows_class_agreement():
    """Two views equally far from the mode, one agreeing with the majority's class and one not:
    the agreeing view gets the larger inlierness, so the mode moves towards it."""
    from rlcf_bench_baselines.mta import mta_mode

    a, b = math.cos(0.3), math.sin(0.3)
    feats = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [a, b, 0.0], [a, -b, 0.0]])[None]
    agree, other = [0.9, 0.1], [0.1, 0.9]
    probs = torch.tensor([[agree, agree, agree, agree, other]])
    mode = mta_mode(feats, probs)[0]
    assert mode[1] > 1e-4  # pulled towards the agreeing view (+b), not the other one (−b)


def test_mta_with_one_view_is_that_view():
    from rlcf_bench_baselines.mta import mta_mode

    feats = torch.nn.functional.normalize(torch.randn(2, 1, 3), dim=-1)
    assert torch.equal(mta_mode(feats, torch.ones(2, 1, 2) / 2), feats[:, 0])


# ---------------------------------------------------------------------- both: cost and batching


@pytest.mark.parametrize("name", ["zero", "mta"])
def test_no_graph_and_features_once(name, make_ctx, method_host, monkeypatch):
    ctx, task = make_ctx()
    spec = method_host.registry("methods").get(name)
    method = spec.method_cls(spec.config_cls())
    method.setup(ctx)
    calls = []
    encode = ctx.model.image_features
    monkeypatch.setattr(ctx.model, "image_features", lambda x, **kw: calls.append(x.shape[0]) or encode(x, **kw))
    batch = task.make_batch(ITEMS[:2], ctx.model, ctx.device)
    method.reset()
    method.adapt(batch)
    out = method.predict(batch)
    assert calls == [2 * ctx.protocol.n_views]  # every view of both samples encoded once, nothing more
    assert torch.is_inference(method.features)
    result = out.probs if out.probs is not None else out.logits
    assert not result.requires_grad
    assert all(not p.requires_grad and p.grad is None for p in ctx.model.module.parameters())


@pytest.mark.parametrize("name", ["zero", "mta"])
def test_results_do_not_depend_on_the_batch_size(name, make_ctx, method_host):
    ctx, task = make_ctx()
    spec = method_host.registry("methods").get(name)
    method = spec.method_cls(spec.config_cls())
    method.setup(ctx)

    def run(items):
        batch = task.make_batch(items, ctx.model, ctx.device)
        method.reset()
        method.adapt(batch)
        out = method.predict(batch)
        return out.probs if out.probs is not None else out.logits.softmax(-1)

    together = run(ITEMS)
    alone = torch.cat([run([item]) for item in ITEMS])
    assert torch.equal(together.argmax(-1), alone.argmax(-1))
    assert torch.allclose(together, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["zero", "mta"])
def test_runner_batch_size_does_not_change_results(name, method_host, tmp_path):
    from rlcf_bench.runner import ExecutionOptions, Runner, RunRequest
    from rlcf_bench.store import Store

    out = []
    for size in (1, 4):
        store = Store(f"sqlite:///{tmp_path / f'{size}.sqlite'}")
        runner = Runner(method_host, store, ExecutionOptions(device="cpu", batch_size=size, warmup=0))
        result = runner.run(RunRequest(task="classification", dataset="tiny-colors", method=name, model="tiny-clip",
                                       protocol_overrides=(("n_views", 8), ("limit", 4))))
        out.append(sorted(store.sample_records(result.run_id), key=lambda r: r.index))
    one, four = out
    assert [r.prediction for r in one] == [r.prediction for r in four]
    assert all(abs(a.extra["confidence"] - b.extra["confidence"]) < 1e-5 for a, b in zip(one, four))


def test_zero_reference_rows_and_no_mta_rows(method_host):
    refs = {(r.method, r.dataset): r for r in method_host.references() if r.method in {"zero", "mta"}}
    assert len(refs) == 15 and all(m == "zero" for m, _ in refs)  # MTA: no primary-source number
    assert refs[("zero", "imagenet-a")].value == 59.61 and refs[("zero", "eurosat")].value == 34.33
    assert {r.model for r in refs.values()} == {"ViT-B-16@openai"} and all(r.reward_model is None for r in refs.values())
    from rlcf_bench.plugins import PluginHost

    datasets = PluginHost(autoload=False, extra=["rlcf_bench_datasets"]).registry("datasets")
    assert set(datasets.names()) >= {ds for _, ds in refs}


def test_method_modules_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, rlcf_bench_baselines.zero, rlcf_bench_baselines.mta, rlcf_bench_baselines.kd, rlcf_bench_baselines.dkd, rlcf_bench_baselines.atkd; "
            "[m.rlcfb_register_references() for m in (rlcf_bench_baselines.zero, rlcf_bench_baselines.kd, rlcf_bench_baselines.atkd)]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
