"""Hugging Face backend: a tiny ``CLIPModel`` saved with ``save_pretrained`` (plus a CLIP BPE
tokenizer built offline) loads back through ``hf:/dir`` and matches the model's own features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from models_helpers import TEXTS, save_hf_folder


def _tiny_hf_clip(seed: int = 0, **text_overrides: Any) -> Any:
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, **text_overrides)
    vision = dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2)
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return save_hf_folder(tmp_path_factory.mktemp("hf-clip"), _tiny_hf_clip(), {
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "resample": 2,
        "crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 32},
    })


@pytest.fixture(scope="module")
def hf_vlm(hf_dir: tuple[Path, Any], models_registry: Any) -> Any:
    name = f"hf:{hf_dir[0]}"
    return models_registry.get(name).load(name, "cpu")


def _features(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_hf_clip_matches_its_own_features(hf_dir: tuple[Path, Any], hf_vlm: Any) -> None:
    import open_clip

    from rlcf_bench.tta.hf_vlm import HFClipVLM

    _, model = hf_dir
    assert isinstance(hf_vlm, HFClipVLM)
    assert hf_vlm.context_length == 16 and hf_vlm.image_size == 32
    assert (hf_vlm.mean, hf_vlm.std, hf_vlm.interpolation) == ((0.5,) * 3, (0.25,) * 3, "bilinear")
    assert hf_vlm.version.startswith("model.safetensors:")

    tokens = hf_vlm.tokenize(TEXTS)
    reference_ids = open_clip.SimpleTokenizer(context_length=16)(list(TEXTS))
    eot = tokens.argmax(-1)  # the CLIP vocabulary's end-of-text id is its highest
    for row in range(len(TEXTS)):  # same BPE ids as open_clip; HF pads with end-of-text, open_clip with 0
        end = int(eot[row]) + 1
        assert torch.equal(tokens[row, :end], reference_ids[row, :end])
        assert int(tokens[row, end - 1]) == 49407  # long texts are cut but keep their end-of-text
    torch.manual_seed(2)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want_text = _features(model.get_text_features(input_ids=tokens))
        torch.testing.assert_close(hf_vlm.encode_text(tokens, truncate=False), want_text, rtol=0, atol=1e-5)
        torch.testing.assert_close(hf_vlm.encode_text(tokens), want_text, rtol=0, atol=1e-5)
        torch.testing.assert_close(hf_vlm.encode_image(images), _features(model.get_image_features(pixel_values=images)),
                                   rtol=0, atol=1e-5)
    assert hf_vlm.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))
    feats = hf_vlm.text_features(list(TEXTS))
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(len(TEXTS)))


def test_hf_encode_text_embeddings_for_prompt_tuning(hf_dir: tuple[Path, Any], hf_vlm: Any) -> None:
    """Token embeddings in, the same features out as from the ids; gradients reach the embeddings."""
    _, model = hf_dir
    tokens = hf_vlm.tokenize(TEXTS)
    tower = hf_vlm.text_tower
    embeddings = tower.token_embedding(tokens).detach().requires_grad_(True)
    out = hf_vlm.encode_text_embeddings(embeddings, tower.pool_index(tokens))
    with torch.no_grad():
        want = _features(model.get_text_features(input_ids=tokens))
    torch.testing.assert_close(out.detach(), want, rtol=0, atol=1e-5)
    out.sum().backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    last = int(tower.pool_index(tokens).max())
    assert torch.all(embeddings.grad[:, last + 1:] == 0)  # positions after the last pooled one are cut


def test_hf_legacy_eos_id_pools_at_argmax() -> None:
    """Configs from before transformers#24773 have eos_token_id 2 and pool at argmax(ids)."""
    from rlcf_bench.tta.hf_vlm import HFClipVLM

    model = _tiny_hf_clip(seed=3, eos_token_id=2)
    vlm = HFClipVLM(model, tokenizer=None, name="legacy", image_size=32)
    tokens = torch.tensor([[49406, 320, 1125, 49407, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                           [49406, 2368, 49407, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    assert vlm.text_tower.pool_index(tokens).tolist() == [3, 2]
    with torch.no_grad():
        want = _features(model.get_text_features(input_ids=tokens))
        torch.testing.assert_close(vlm.encode_text(tokens), want, rtol=0, atol=1e-5)
        embeddings = vlm.text_tower.token_embedding(tokens)
        torch.testing.assert_close(vlm.encode_text_embeddings(embeddings, vlm.text_tower.pool_index(tokens)), want,
                                   rtol=0, atol=1e-5)


def test_hf_model_drives_the_prompt_learner(hf_vlm: Any) -> None:
    """The project's prompt learner (CoOp-style context) runs on the HF wrapper unchanged: at its
    initial context it reproduces the hand-crafted prompts' features."""
    from rlcf_bench.tta.prompt_learner import PromptLearner

    learner = PromptLearner(hf_vlm, ["dog", "golden retriever"], ctx_init="a photo of a")
    assert learner.n_ctx == 4
    with torch.no_grad():
        got = learner.text_features(learner.initial_context(2))
    want = hf_vlm.text_features(learner.prompts)
    torch.testing.assert_close(got[0], want, rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1], want, rtol=0, atol=1e-5)
