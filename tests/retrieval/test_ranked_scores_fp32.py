"""Every retrieval method ranks fp32 scores, also under autocast (issue: only RLCF computed its
final similarities in reduced precision, so only RLCF paid for the ties that precision creates
under the pessimistic tie rule)."""

from __future__ import annotations

import pytest
import torch


class StubReward:
    """A reward model that likes everything equally (only its shapes matter here)."""

    name = "stub"

    def image_features(self, images):
        return [torch.ones(len(images), 2)]

    def text_features(self, texts):
        return [torch.ones(len(texts), 2)]

    def score(self, image_feats, text_feats):
        return sum((i * t).sum(-1) for i, t in zip(image_feats, text_feats))


def bf16_ctx(model, reward=None):
    from rlcf_bench import MethodContext, RunProtocol
    from rlcf_bench.device import AmpHelper, SectionTimer
    from rlcf_bench_fixtures.tiny import TinyCaptions
    from rlcf_bench_tasks.retrieval import RetrievalTask

    dev = torch.device("cpu")
    task = RetrievalTask(TinyCaptions(8), RunProtocol(n_views=1, precision="amp-bf16"))
    ctx = MethodContext(task="retrieval", protocol=task.protocol, device=dev, amp=AmpHelper(dev, "amp-bf16"),
                        model=model, reward_model=reward, **task.context_fields(model, dev))
    ctx.timer = SectionTimer(dev)
    return task, ctx


def test_ranked_scores_are_fp32_not_rounded_products():
    from rlcf_bench_tasks.retrieval_common import ranked_scores

    q = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(40, 16), dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ranked_scores(q, c, 100.0)
        rounded = 100.0 * q @ c.t()
    assert got.dtype == torch.float32 and rounded.dtype == torch.bfloat16
    assert torch.equal(got, 100.0 * q @ c.t())  # outside autocast: the fp32 product, bit for bit
    # a constructed near-tie: bf16 cannot tell the two candidates apart, fp32 can
    near = torch.stack([c[0], torch.nn.functional.normalize(c[0] + 1e-3 * c[1], dim=-1)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tie_fp32 = ranked_scores(q[:1], near, 100.0)
    assert tie_fp32[0, 0] != tie_fp32[0, 1]


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_every_retrieval_method_ranks_fp32_scores_under_autocast(rhost, direction, tiny_vlm):
    """A score computed in bf16 and cast back has its 16 low mantissa bits zero; an fp32 score
    almost never does."""
    specs = [m for m in rhost.registry("methods") if "retrieval" in m.tasks]
    assert {"zero-shot", "rlcf"} <= {m.name for m in specs}
    for spec in specs:
        check_method(spec, direction, tiny_vlm)


def check_method(spec, direction, tiny_vlm):
    from rlcf_bench.types import config_from_pairs

    task, ctx = bf16_ctx(tiny_vlm, StubReward() if "reward_model" in spec.requires else None)
    options = [("steps", "0")] if "steps" in getattr(spec.config_cls, "__dataclass_fields__", {}) else []
    method = spec.method_cls(config_from_pairs(spec.config_cls, options))
    method.setup(ctx)
    items = [it for it in task.samples() if it[1].startswith(direction)][:2]
    batch = task.make_batch(items, model=tiny_vlm, device="cpu")
    with ctx.amp.autocast():  # even a caller that autocasts gets fp32 rankings
        scores = method.predict(batch).scores
    method.reset()
    assert scores.dtype == torch.float32
    finite = scores[torch.isfinite(scores)]
    low_bits = finite.contiguous().view(torch.int32) & 0xFFFF
    assert (low_bits != 0).float().mean() > 0.5, f"{spec.name} ranks bf16-rounded scores"
