"""The online methods' shared primitives on hand-made inputs with known answers, and the
write-before-predict order, on a stub model whose features and class embeddings are chosen."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from rlcf_bench.tta.cache import ClassCache, cache_logits, normalised_entropy
from rlcf_bench.types import Batch, MethodContext, RunProtocol

# ------------------------------------------------------------------ primitives


def test_cache_logits_is_tip_adapters_formula():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    alpha, beta = 2.0, 5.0
    got = cache_logits(q, keys, values, alpha, beta)
    for b, (x, y) in enumerate(q.tolist()):
        w = [alpha * math.exp(-beta * (1 - (x * kx + y * ky))) for kx, ky in keys.tolist()]
        assert got[b, 0].item() == pytest.approx(w[0], rel=1e-6)
        assert got[b, 1].item() == pytest.approx(w[1] + w[2], rel=1e-6)
    assert cache_logits(q, torch.zeros(0, 2), torch.zeros(0, 2), alpha, beta).abs().sum() == 0


def test_class_logits_and_payload_logits_sum_over_filled_slots_only():
    cache = ClassCache(3, 2, 2, device="cpu", payload_dim=3)
    cache.insert(1, torch.tensor([0.0, 1.0]), 0.5, payload=torch.tensor([1.0, 0.0, 1.0]))
    q = torch.tensor([[0.6, 0.8]])
    w = 3.0 * math.exp(-2.0 * (1 - 0.8))
    assert cache.class_logits(q, 3.0, 2.0).tolist()[0] == pytest.approx([0.0, w, 0.0], rel=1e-6)
    assert cache.payload_logits(q, 3.0, 2.0).tolist()[0] == pytest.approx([w, 0.0, w], rel=1e-6)


def _keys_of(cache: ClassCache, cls: int) -> list[float]:
    """The first coordinate of the filled keys of a class (the tests store an id there)."""
    return sorted(cache.keys[cls, cache.valid[cls], 0].tolist())


def test_capacity_rule_fills_then_evicts_the_worst_only_for_a_lower_score():
    cache = ClassCache(2, 2, 1, device="cpu")
    assert bool(cache.insert(0, torch.tensor([1.0]), 0.5))
    assert bool(cache.insert(0, torch.tensor([2.0]), 0.3))  # room: appended
    assert _keys_of(cache, 0) == [1.0, 2.0]
    assert bool(cache.insert(0, torch.tensor([3.0]), 0.4))  # full: replaces the worst (0.5, id 1)
    assert _keys_of(cache, 0) == [2.0, 3.0]
    assert not bool(cache.insert(0, torch.tensor([4.0]), 0.4))  # equal to the worst: dropped
    assert not bool(cache.insert(0, torch.tensor([5.0]), 0.9))  # worse: dropped
    assert _keys_of(cache, 0) == [2.0, 3.0] and _keys_of(cache, 1) == []
    assert cache.entries() == 2


def test_capacity_rule_evicts_the_latest_written_of_tied_worst_entries():
    cache = ClassCache(1, 3, 1, device="cpu")
    for ident, score in ((1.0, 0.7), (2.0, 0.1), (3.0, 0.7)):
        cache.insert(0, torch.tensor([ident]), score)
    cache.insert(0, torch.tensor([4.0]), 0.2)  # ties at 0.7: the later one (id 3) goes
    assert _keys_of(cache, 0) == [1.0, 2.0, 4.0]
    cache.insert(0, torch.tensor([5.0]), 0.2)  # worst is now id 1 alone
    assert _keys_of(cache, 0) == [2.0, 4.0, 5.0]


def test_fifo_cache_always_writes_over_the_oldest_entry():
    cache = ClassCache(2, 2, 1, device="cpu", fifo=True)
    for ident, score in ((1.0, 0.1), (2.0, 0.9), (3.0, 0.5)):  # full after two: 3 replaces 1, the oldest
        assert bool(cache.insert(0, torch.tensor([ident]), score))
    assert _keys_of(cache, 0) == [2.0, 3.0]
    assert bool(cache.insert(0, torch.tensor([4.0]), 0.99))  # worse than both: still written, over 2
    assert _keys_of(cache, 0) == [3.0, 4.0]
    assert not bool(cache.insert(0, torch.tensor([5.0]), 0.0, when=torch.tensor(False)))  # gated off
    assert _keys_of(cache, 0) == [3.0, 4.0] and _keys_of(cache, 1) == []


def test_gated_insert_and_larger_temporary_capacity():
    cache = ClassCache(1, 2, 1, device="cpu", slots=4)
    assert not bool(cache.insert(0, torch.tensor([1.0]), 0.1, when=torch.tensor(False)))
    for i in range(3):
        cache.insert(0, torch.tensor([float(i)]), 0.1 * i)
    assert cache.entries() == 2
    temp = cache.copy(torch.tensor([0]))
    temp.insert(0, torch.tensor([9.0]), 0.9, capacity=4)  # the copy has room for 2 more
    assert temp.entries() == 3 and cache.entries() == 2  # the original is untouched


def test_class_means_have_a_fixed_shape_with_empty_classes_masked():
    cache = ClassCache(3, 2, 2, device="cpu")
    cache.insert(0, torch.tensor([1.0, 0.0]), 0.1)
    cache.insert(0, torch.tensor([0.0, 3.0]), 0.2)
    cache.insert(2, torch.tensor([2.0, 2.0]), 0.3)
    present, means = cache.class_means()
    assert present.tolist() == [True, False, True] and means.shape == (3, 2)
    assert means.tolist() == [[0.5, 1.5], [0.0, 0.0], [2.0, 2.0]]


def test_memory_is_fixed_by_the_capacity():
    cache = ClassCache(5, 3, 8, device="cpu", payload_dim=5)
    size = cache.nbytes()
    assert size == 5 * 3 * (8 * 4 + 4 + 8 + 5 * 4)
    for i in range(200):
        cache.insert(i % 5, torch.randn(8), float(torch.rand(())), payload=torch.rand(5))
    assert cache.nbytes() == size and cache.entries() == 15


def test_normalised_entropy_divides_nats_by_log2_of_the_class_count():
    uniform_nats = math.log(4)  # H of the uniform distribution over 4 classes
    assert float(normalised_entropy(torch.tensor(uniform_nats), 4)) == pytest.approx(math.log(4) / 2)
    assert float(normalised_entropy(torch.tensor(uniform_nats), 4, log2_quirk=False)) == pytest.approx(1.0)
    assert normalised_entropy(math.log(1000), 1000) == pytest.approx(math.log(2))  # never reaches 1
    with pytest.raises(ValueError, match="at least 2 classes"):
        normalised_entropy(0.0, 1)


# ------------------------------------------------------------------ methods on a stub model


class StubModel:
    """Image "features" are the first d pixels, normalised; class embeddings are the axes."""

    name = "stub"
    logit_scale = 100.0

    def __init__(self, d: int) -> None:
        self.d = d

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.flatten(1)[:, : self.d].float(), dim=-1)

    def text_features(self, prompts: list[str]) -> torch.Tensor:
        return torch.eye(self.d)[: len(prompts)]


class NoAmp:
    def autocast(self) -> Any:
        return contextlib.nullcontext()


def stub_ctx(dataset: str = "imagenet", n_classes: int = 4, n_views: int = 4) -> MethodContext:
    protocol = RunProtocol(n_views=n_views, selection_ratio=0.5, precision="fp32")
    return MethodContext(task="classification", protocol=protocol, device=torch.device("cpu"), amp=NoAmp(),
                         model=StubModel(n_classes), classnames=tuple(f"c{i}" for i in range(n_classes)),
                         templates=("a photo of a {}.",), dataset=dataset)


def stub_batch(feature: list[float], views: torch.Tensor | None = None) -> Batch:
    image = torch.tensor([feature])
    return Batch(sample_ids=("s",), indices=(0,), images=image, targets=torch.tensor([0]),
                 view_fn=(lambda: views) if views is not None else (lambda: image.unsqueeze(1)))


def run_one(method: Any, batch: Batch) -> torch.Tensor:
    method.adapt(batch)
    out = method.predict(batch)
    method.after_predict(batch)
    return out.logits if out.logits is not None else out.probs


def test_tda_writes_a_sample_before_predicting_it():
    from rlcf_bench_baselines.tda import TDA, TDAConfig

    method = TDA(TDAConfig())
    method.setup(stub_ctx("imagenet"))  # one view; α = 2, β = 5
    x = [0.0, 1.0, 0.0, 0.0]  # confidently class 1: entropy ≈ 0, below the negative gate
    logits = run_one(method, stub_batch(x))[0]
    zero_shot = 100.0 * torch.tensor(x)
    # its own entry (affinity 1) adds α·e⁰ = α to its pseudo-label and nothing elsewhere
    assert (logits - zero_shot).tolist() == pytest.approx([0.0, 2.0, 0.0, 0.0], abs=1e-4)
    assert method.state_size()["state_entries"] == 1


def test_tda_negative_cache_takes_moderately_uncertain_samples():
    from rlcf_bench_baselines.tda import TDA, TDAConfig

    method = TDA(TDAConfig())
    method.setup(stub_ctx("imagenet"))
    # logits 100·f: f ∝ (1, 0.98, 0, 0) gives p ≈ (0.85, 0.15, 0, 0): H/log2 4 ≈ 0.21 — inside (0.2, 0.5)
    f = F.normalize(torch.tensor([1.0, 0.982, 0.0, 0.0]), dim=0)
    p = (100 * f).softmax(0)
    h = float(-(p * p.log()).sum() / math.log2(4))
    assert 0.2 < h < 0.5
    logits = run_one(method, stub_batch(f.tolist()))[0]
    mask = ((p > 0.03) & (p < 1.0)).float()
    want = 100 * f + torch.tensor([2.0, 0, 0, 0]) - 0.117 * mask  # own entry in both caches
    assert logits.tolist() == pytest.approx(want.tolist(), abs=1e-3)
    assert method.neg.entries() == 1


def test_dmn_reads_its_own_entry_written_before_the_prediction():
    from rlcf_bench_baselines.dmn_zs import DMNConfig, DMNZeroShot

    method = DMNZeroShot(DMNConfig(fusion_weight=1.0))
    method.setup(stub_ctx("imagenet"))
    f = F.normalize(torch.tensor([0.3, 1.0, 0.0, 0.0]), dim=0)
    probs = run_one(method, stub_batch(f.tolist()))[0]
    assert method.memory.entries() == 1
    t = torch.eye(4)
    # class 1's prototype: w(self)·f + w(text)·t₁ normalised; every other class: its text alone
    w = lambda k: math.exp(-5.5 * (1 - float(f @ k)))  # noqa: E731
    proto1 = F.normalize(w(f) * f + w(t[1]) * t[1], dim=0)
    protos = torch.stack([t[0], proto1, t[2], t[3]])
    want = ((100 * f).softmax(0) + (100 * protos @ f).softmax(0)) / 2
    assert probs.tolist() == pytest.approx(want.tolist(), abs=1e-5)


def test_boostadapter_adds_confident_views_only_for_the_current_sample():
    from rlcf_bench_baselines.boostadapter import BoostAdapter, BoostAdapterConfig

    method = BoostAdapter(BoostAdapterConfig())
    method.setup(stub_ctx("imagenet-a", n_views=4))  # δ = 3; 2 confident views of 4
    views = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.1, 0.0], [0.2, 1.0, 0.3, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    run_one(method, stub_batch([0.0, 1.0, 0.0, 0.0], views=views))
    assert method.pos.entries() == 1  # the historical entry only: boosting entries are discarded
    tda_like = method.pos.class_logits(method.current[0].unsqueeze(0), method.alpha, method.beta)
    boosted = method.positive_logits(method.current[0].unsqueeze(0))
    assert boosted[0, 1] > tda_like[0, 1] and torch.equal(boosted[0, [0, 2, 3]], tda_like[0, [0, 2, 3]])


def test_dpe_learns_only_its_residuals_and_keeps_the_queues_bounded():
    from rlcf_bench_baselines.dpe import DPE, DPEConfig

    method = DPE(DPEConfig())
    method.setup(stub_ctx("flower102"))  # one view
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        run_one(method, stub_batch(torch.rand(4, generator=g).tolist()))
    assert method.queues.entries() <= 4 * 3
    assert not method.global_text.requires_grad
    assert method.n_averaged >= 0 and torch.isfinite(method.global_text).all()


@pytest.mark.parametrize("dataset,alpha,beta", [("imagenet-v2", 1.0, 8.0), ("micro-rendition", 1.0, 8.0),
                                                  ("pets", 2.0, 7.0), ("micro-noise", 2.0, 5.0)])
def test_per_dataset_official_settings_follow_the_dataset_name(dataset, alpha, beta):
    from rlcf_bench_baselines.tda import TDA, TDAConfig

    method = TDA(TDAConfig())
    method.setup(stub_ctx(dataset))
    assert (method.alpha, method.beta) == (alpha, beta)
    method = TDA(TDAConfig(alpha=0.5))
    method.setup(stub_ctx(dataset))
    assert method.alpha == 0.5


@pytest.mark.slow
def test_cache_memory_stays_bounded_on_a_5000_sample_stream():
    """Measurement: TDA, DMN-ZS, DPE and BoostAdapter fed 5,000 samples keep the state size
    they had after 100 (pre-allocated caches), with entries never above the capacities."""
    from rlcf_bench_baselines.boostadapter import BoostAdapter, BoostAdapterConfig
    from rlcf_bench_baselines.dmn_zs import DMNConfig, DMNZeroShot
    from rlcf_bench_baselines.dpe import DPE, DPEConfig
    from rlcf_bench_baselines.tda import TDA, TDAConfig

    g = torch.Generator().manual_seed(0)
    for cls, config, cap in ((TDA, TDAConfig(), 3 + 2), (DMNZeroShot, DMNConfig(), 50), (DPE, DPEConfig(), 3),
                             (BoostAdapter, BoostAdapterConfig(), 3 + 2)):
        method = cls(config)
        method.setup(stub_ctx("imagenet-a", n_classes=8, n_views=4))
        sizes = []
        for i in range(5000):
            run_one(method, stub_batch([0.0] * 8, views=torch.rand(1, 4, 8, generator=g)))
            if i + 1 in (100, 5000):
                sizes.append(method.state_size())
        assert sizes[0]["state_bytes"] == sizes[1]["state_bytes"], cls.name
        assert sizes[1]["state_entries"] <= 8 * cap, cls.name


def test_paper_numbers_are_registered_from_each_methods_file():
    from rlcf_bench.plugins import PluginHost

    host = PluginHost(autoload=False, extra=["rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_datasets"])
    rows = [r for r in host.references() if r.method in {"tda", "dmn-zs", "dpe", "boostadapter"}]
    counts = {m: sum(r.method == m for r in rows) for m in ("tda", "dmn-zs", "dpe", "boostadapter")}
    assert counts == {"tda": 15, "dmn-zs": 15, "dpe": 15, "boostadapter": 10}  # no BoostAdapter OOD numbers exist
    assert {r.dataset for r in rows} <= set(host.registry("datasets").names())
    assert all(r.metric == "top1" and r.model == "ViT-B-16@openai" and 20 < r.value < 100 for r in rows)
    tda_a = next(r for r in rows if (r.method, r.dataset) == ("tda", "imagenet-a"))
    assert tda_a.value == 60.11
    assert all("oracle-tuned" in r.note for r in rows if r.method == "dmn-zs")
    ood = [r.value for r in rows if r.method == "dpe" and r.dataset in ("imagenet-a", "imagenet-v2", "imagenet-r",
                                                                         "imagenet-sketch")]
    assert sum(ood) / 4 == pytest.approx(64.43, abs=0.01)  # the paper's OOD average


@pytest.mark.parametrize("module,cls,bad", [
    ("tda", "TDAConfig", {"multi_view": "maybe"}), ("tda", "TDAConfig", {"pos_capacity": 0}),
    ("boostadapter", "BoostAdapterConfig", {"delta": -1}), ("dmn_zs", "DMNConfig", {"fusion_weight": -1.0}),
    ("dmn_zs", "DMNConfig", {"prompts": "cupl"}), ("dpe", "DPEConfig", {"steps": 0}),
])
def test_bad_options_fail_when_the_config_is_read(module, cls, bad):
    import importlib

    config_cls = getattr(importlib.import_module(f"rlcf_bench_baselines.{module}"), cls)
    with pytest.raises(ValueError, match=next(iter(bad))):
        config_cls(**bad)
