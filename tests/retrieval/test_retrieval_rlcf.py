"""RLCF for retrieval: the rewarded candidate moves up, only the tuned tower changes, reset is exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rlcf_bench_rlcf._retrieval import RLCFRetrieval, RLCFRetrievalConfig
from rlcf_bench_tasks.retrieval_common import ground_truth_rank, load_images


class PreferReward:
    """A reward model that pays 2.5 for one candidate (a caption text or a gallery image) and 0
    for every other, whatever the query: ``2.5·max(0, cos)`` with one-hot features."""

    name = "prefer"

    def __init__(self, caption: str | None = None, image: torch.Tensor | None = None) -> None:
        self.caption, self.image = caption, image
        self.calls = {"image": 0, "text": 0}

    @staticmethod
    def _onehot(mask: torch.Tensor) -> list[torch.Tensor]:
        return [F.one_hot((~mask).long(), 2).float()]

    def image_features(self, images):
        self.calls["image"] += len(images)
        if self.image is None:
            return self._onehot(torch.ones(len(images), dtype=torch.bool))
        return self._onehot(torch.tensor([torch.equal(x, self.image) for x in images]))

    def text_features(self, texts):
        self.calls["text"] += len(texts)
        if self.caption is None:
            return self._onehot(torch.ones(len(texts), dtype=torch.bool))
        return self._onehot(torch.tensor([t == self.caption for t in texts]))

    def score(self, image_feats, text_feats):
        return sum(2.5 * (i * t).sum(-1).clamp(min=0) for i, t in zip(image_feats, text_feats))


def query(task, direction, n=0):
    items = [it for it in task.samples() if it[1].startswith(direction)]
    return task.make_batch([items[n]], model=task._model, device="cpu")


def setup_method(make_ctx, vlm, reward, **cfg):
    task, ctx = make_ctx(vlm, reward)
    task._model = vlm
    method = RLCFRetrieval(RLCFRetrievalConfig(**cfg))
    method.setup(ctx)
    return task, ctx, method


def margin_and_rank(scores, target):
    s = scores[0]
    others = torch.cat([s[:target], s[target + 1 :]])
    return float(s[target] - others.max()), ground_truth_rank(s, [target])


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_an_episode_moves_the_rewarded_candidate_up(make_ctx, tiny_vlm, direction):
    task, ctx, probe = setup_method(make_ctx, tiny_vlm, PreferReward(), steps=0)
    batch = query(task, direction)
    before = probe.predict(batch).scores
    target = int(before[0].argsort()[0])  # the policy's worst candidate (inside top-K = all of them)
    if direction == "i2t":
        reward = PreferReward(caption=ctx.gallery.captions[target])
    else:
        img = load_images(ctx.gallery.dataset, [target], size=32, mean=tiny_vlm.mean, std=tiny_vlm.std, device="cpu")
        reward = PreferReward(image=img[0])
    task, ctx, method = setup_method(make_ctx, tiny_vlm, reward, steps=4, lr=5e-3, k_i2t=50, k_t2i=50)
    calls = dict(reward.calls)  # gallery reward features of both directions: once, in setup
    assert calls == {"image": 8, "text": 13}
    method.reset()
    method.adapt(batch)
    after = method.predict(batch)
    m0, r0 = margin_and_rank(before, target)
    m1, r1 = margin_and_rank(after.scores, target)
    assert r0 == ctx.gallery.n_candidates(direction) - 1
    assert m1 > m0 and r1 < r0, (m0, m1, r0, r1)
    extra = after.extras[0]
    assert extra["k"] == ctx.gallery.n_candidates(direction)
    assert extra["reward_last"] >= extra["reward_first"]
    # per query: the query's reward features once (not per step); nothing else recomputed
    assert sum(reward.calls.values()) - sum(calls.values()) == 1
    method.reset()


def test_reset_restores_only_the_tuned_tower_bit_exactly(make_ctx, tiny_vlm):
    task, ctx, method = setup_method(make_ctx, tiny_vlm, PreferReward(), steps=2, lr=1e-2)
    initial = {k: v.clone() for k, v in tiny_vlm.module.state_dict().items()}

    def changed():
        return {k for k, v in tiny_vlm.module.state_dict().items() if not torch.equal(v, initial[k])}

    method.reset()
    method.adapt(query(task, "i2t"))
    moved = changed()
    assert moved and all(k.startswith("visual.") for k in moved)
    method.reset()
    assert changed() == set() and not method.towers["i2t"].optimizer.state
    method.adapt(query(task, "t2i", 3))
    moved = changed()
    assert "logit_scale" in moved and "transformer.resblocks.0.attn.in_proj_weight" in moved
    assert not any(k.startswith("visual.") for k in moved)
    method.reset()
    assert changed() == set() and not method.towers["t2i"].optimizer.state
    assert not any(p.requires_grad for p in tiny_vlm.module.parameters())  # left frozen for other methods


def test_k_defaults_follow_the_scripts_and_logit_scale_can_be_frozen(make_ctx, tiny_vlm):
    task, ctx, method = setup_method(make_ctx, tiny_vlm, PreferReward(), steps=1, tune_logit_scale=False)
    assert method.k_for("t2i") == 8 and method.k_for("i2t") == 13  # min(K, gallery size)
    ctx.gallery.n_captions = 10_000
    ctx.gallery.n_images = 10_000
    assert method.k_for("i2t") == 20 and method.k_for("t2i") == 12
    ctx.gallery.name = "flickr30k-retrieval"
    assert method.k_for("i2t") == 16
    names = {id(p): n for n, p in tiny_vlm.module.named_parameters()}
    assert "logit_scale" not in {names[id(p)] for p in method.tuned_parameters("t2i")}


def test_momentum_moves_the_episode_start_point(make_ctx, tiny_vlm):
    task, ctx, method = setup_method(make_ctx, tiny_vlm, PreferReward(), steps=1, lr=1e-2, momentum=True,
                                     momentum_freq=2, momentum_mu=0.5)
    initial = [p.detach().clone() for p in tiny_vlm.visual.parameters()]
    for n in range(2):
        b = query(task, "i2t", n)
        method.reset()
        method.adapt(b)
        method.predict(b)
        method.after_predict(b)
    tower = method.towers["i2t"]
    assert tower.momentum.start is not None and tower.momentum.counter == 0
    method.reset()  # back to θ_clip, the start point is loaded when the next episode begins
    assert all(torch.equal(p, q) for p, q in zip(tiny_vlm.visual.parameters(), initial))
