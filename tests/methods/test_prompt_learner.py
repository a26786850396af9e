"""Prompt learner and truncated text encoding: exactness against open_clip's full-length path."""

from __future__ import annotations

import pytest
import torch

PROMPTS = ["a photo of a goldfish.", "a photo of a great white shark.", "a photo of a red.",
           "a photo of a American black bear.", "a photo of a lion."]


class _TextOnlyCLIP(torch.nn.Module):
    """The text tower of open_clip's ViT-B-16 (built exactly as ``create_model('ViT-B-16')`` builds
    it, random weights) without the 86 M-parameter image tower, which this test never uses and
    which would triple its set-up time on a 2-core machine."""

    def __init__(self) -> None:
        import open_clip
        from open_clip.model import _build_text_tower

        super().__init__()
        cfg = open_clip.get_model_config("ViT-B-16")
        self.text = _build_text_tower(cfg["embed_dim"], cfg["text_cfg"])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)  # open_clip's own path: all 77 positions


@pytest.fixture(scope="module")
def vitb16():
    import open_clip

    from rlcf_bench.tta.vlm import OpenClipVLM

    torch.manual_seed(0)
    return OpenClipVLM(_TextOnlyCLIP(), open_clip.get_tokenizer("ViT-B-16"), name="ViT-B-16@random", image_size=224)


def test_truncated_text_encoding_equals_full_length(vitb16):
    tokens = vitb16.tokenize(PROMPTS)
    with torch.no_grad():
        full = vitb16.model.encode_text(tokens)  # open_clip: all 77 positions
        short = vitb16.encode_text(tokens, truncate=True)
    length = int(tokens.argmax(-1).max()) + 1
    assert length < 20 < tokens.shape[1]
    assert (full - short).abs().max().item() <= 1e-5


def test_prompt_learner_initial_state_equals_hand_crafted_prompts(vitb16):
    """Splicing the initial context into [SOS] ⊕ ctx ⊕ suffix and encoding truncated reproduces
    the full-length features of "a photo of a <class>." — for every row of a batched context."""
    from rlcf_bench.tta.prompt_learner import PromptLearner

    classes = ["goldfish", "great_white_shark", "American black bear"]
    learner = PromptLearner(vitb16, classes, ctx_init="a_photo_of_a")
    assert learner.n_ctx == 4 and learner.prompts[1] == "a photo of a great white shark."
    assert learner.length < 20
    with torch.no_grad():
        feats = learner.text_features(learner.initial_context(2))  # [2, C, E]
        full = torch.nn.functional.normalize(vitb16.model.encode_text(vitb16.tokenize(learner.prompts)), dim=-1)
    assert feats.shape == (2, 3, full.shape[-1])
    assert (feats - full.unsqueeze(0)).abs().max().item() <= 1e-5


def test_coop_context_loads_safely(tmp_path, make_ctx):
    from rlcf_bench.tta.prompt_learner import PromptLearner, load_coop_context

    ctx, _ = make_ctx()
    learner = PromptLearner(ctx.model, ctx.classnames)
    d = learner.init_ctx.shape[-1]
    learned = torch.randn(4, d)
    path = tmp_path / "coop.pth"
    torch.save({"state_dict": {"ctx": learned, "token_prefix": torch.zeros(1)}, "epoch": 50}, path)
    coop = PromptLearner(ctx.model, ctx.classnames, coop=str(path))
    assert torch.equal(coop.init_ctx, learned)
    assert torch.equal(coop.prefix, learner.prefix) and torch.equal(coop.suffix, learner.suffix)
    torch.save({"state_dict": {"ctx": torch.randn(3, d)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="shape"):
        load_coop_context(tmp_path / "bad.pth", 4, d)
