"""SigLIP policies: every method's logits are the model's ``s · cos + b``, and the protocol's
``probability`` (softmax by default, or SigLIP's per-class sigmoid) is the one methods and the
task's calibration use (``rlcf_bench.tta.logits``, ``docs/siglip.md``).

The contract on ``tiny-siglip`` itself is ``tests/methods/test_method_contract.py``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from rlcf_bench.testing import MethodContract, classification_methods
from rlcf_bench.tta.logits import ClassLogits, class_logits_for, probability_of
from rlcf_bench.types import RunProtocol, RunRequest


def test_class_logits_add_the_bias_and_keep_a_clips_bits() -> None:
    g = torch.Generator().manual_seed(0)
    feats, text = F.normalize(torch.randn(3, 8, generator=g), dim=-1), F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    assert torch.equal(ClassLogits(100.0).product(feats, text.t()), 100.0 * feats @ text.t())
    z = ClassLogits(10.0, -10.0).product(feats, text.t())
    assert torch.allclose(z, 10.0 * (feats @ text.t()) - 10.0)
    logits = ClassLogits(10.0, -10.0, "sigmoid").product(feats, text.t())
    sig = torch.sigmoid(z)
    assert torch.allclose(logits.softmax(-1), sig / sig.sum(-1, keepdim=True), atol=1e-6)
    assert torch.equal(logits.argmax(-1), z.argmax(-1))


def test_the_probability_parameter_is_read_checked_and_hashed() -> None:
    base = RunProtocol()
    sigmoid = base.replace(params=(("probability", "sigmoid"),))
    assert probability_of(base) == "softmax" and probability_of(sigmoid) == "sigmoid"
    assert base.hash != sigmoid.hash
    with pytest.raises(ValueError, match="probability='tanh'"):
        probability_of(base.replace(params=(("probability", "tanh"),)))


def test_the_classification_task_declares_the_probability(host: Any) -> None:
    from rlcf_bench.types import check_protocol_params

    spec = host.registry("tasks").get("classification")
    check_protocol_params({"probability": "sigmoid"}, [spec])
    with pytest.raises(ValueError, match="probability"):
        check_protocol_params({"probability": "tanh"}, [spec])


def test_tiny_siglip_has_siglips_scale_bias_and_text_tower() -> None:
    from rlcf_bench_fixtures.tiny import load_tiny_clip, load_tiny_siglip

    siglip, clip = load_tiny_siglip("tiny-siglip", "cpu"), load_tiny_clip("tiny-clip", "cpu")
    assert math.isclose(siglip.logit_scale, 10.0, rel_tol=1e-6) and siglip.logit_bias == -10.0
    assert clip.logit_bias == 0.0
    assert siglip.text_tower is not None and not siglip.text_tower.truncatable  # bidirectional: never cut


def test_prompt_learner_on_a_bidirectional_tower_gives_the_models_own_features() -> None:
    """The learned-context path (embeddings spliced, the whole context run, last position pooled)
    reproduces ``encode_text`` of the hand-crafted prompts at the initial context."""
    from rlcf_bench.tta.prompt_learner import PromptLearner
    from rlcf_bench_fixtures.tiny import TinyColors, load_tiny_siglip

    model = load_tiny_siglip("tiny-siglip", "cpu")
    learner = PromptLearner(model, TinyColors.classnames)
    assert (learner.n_prefix, learner.n_ctx, learner.length) == (1, 4, model.context_length)
    with torch.no_grad():
        got = learner.text_features(learner.initial_context(2))
    want = model.text_features(learner.prompts)
    assert torch.allclose(got[0], want, atol=1e-5) and torch.allclose(got[1], want, atol=1e-5)


def test_context_span_without_a_start_token() -> None:
    """SigLIP's sentencepiece has no start token and pads with its end token (id 1)."""
    from rlcf_bench.tta.prompt_learner import context_span

    empty = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1])
    init = torch.tensor([262, 266, 1304, 262, 1, 1, 1, 1])
    assert context_span(empty, init) == (0, 4)
    assert context_span(torch.tensor([49406, 49407, 0, 0]), torch.tensor([49406, 320, 1125, 49407])) == (1, 2)


def _zero_shot_run(runner: Any, probability: str) -> tuple[Any, list[Any]]:
    over = (("limit", 4), ("probability", probability))
    result = runner.run(RunRequest("classification", "tiny-colors", "zero-shot", "tiny-siglip", protocol_overrides=over))
    assert result.status == "finished"
    return result, sorted(runner.store.sample_records(result.run_id), key=lambda r: r.index)


def test_zero_shot_on_siglip_stores_the_protocols_probability(runner: Any) -> None:
    """Under ``probability=sigmoid`` the stored confidence is ``max σ(z) / Σ σ(z)`` with the
    model's bias in ``z``; under the default it is the softmax's (which the bias cannot move)."""
    from rlcf_bench_fixtures.tiny import TinyColors

    soft_run, soft = _zero_shot_run(runner, "softmax")
    sig_run, sig = _zero_shot_run(runner, "sigmoid")
    assert soft_run.run_id != sig_run.run_id  # another protocol, another run
    model = runner.session.vlm("tiny-siglip")
    text = model.text_features([f"a photo of a {c}." for c in TinyColors.classnames])
    task = runner.host.registry("tasks").get("classification")
    images = task.build(TinyColors(4), RunProtocol(limit=4)).make_batch([(i, "") for i in range(4)], model, "cpu").images
    cos = model.image_features(images) @ text.t()
    z = model.logit_scale * cos + model.logit_bias
    for i, (a, b) in enumerate(zip(soft, sig)):
        assert a.prediction == b.prediction == int(z[i].argmax())
        assert math.isclose(a.extra["confidence"], float(z[i].softmax(-1).max()), abs_tol=1e-5)
        p = torch.sigmoid(z[i])
        assert math.isclose(b.extra["confidence"], float(p.max() / p.sum()), abs_tol=1e-5)
        unbiased = torch.sigmoid(model.logit_scale * cos[i])  # what ignoring the bias would store
        assert not math.isclose(b.extra["confidence"], float(unbiased.max() / unbiased.sum()), abs_tol=1e-3)


def test_class_logits_for_reads_the_policy_and_the_protocol(make_ctx: Any) -> None:
    ctx, _ = make_ctx()
    logits = class_logits_for(ctx)
    assert (logits.scale, logits.bias, logits.probability) == (float(ctx.vlm.logit_scale), 0.0, "softmax")


@pytest.mark.slow
@pytest.mark.parametrize("name", classification_methods())
def test_every_method_runs_under_the_sigmoid_probability(name: str, tmp_path: Path) -> None:
    """(a) on ``tiny-siglip`` with ``probability=sigmoid``: every method runs to the end and leaves
    the model as it found it."""
    MethodContract(name, tmp_path, model="tiny-siglip", protocol_params=(("probability", "sigmoid"),)).check_model_unchanged()
