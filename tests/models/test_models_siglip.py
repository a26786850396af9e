"""SigLIP through the backends. Hugging Face ``SiglipModel`` through ``hf:/dir``: a tiny random one saved with
``save_pretrained`` (a CLIP BPE tokenizer stands in for SigLIP's sentencepiece, which would need
a download) loads back with its scale and bias, matches the model's own features and logits,
drives the prompt learner, and keeps the method contract."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from models_helpers import TEXTS, save_hf_folder


def _tiny_hf_siglip(seed: int = 0) -> Any:
    from transformers import SiglipConfig, SiglipModel

    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, projection_size=64)
    vision = dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
    with torch.no_grad():  # SigLIP's initial scale and bias (transformers initialises both at 0)
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return save_hf_folder(tmp_path_factory.mktemp("hf-siglip"), _tiny_hf_siglip(), {
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": {"height": 32, "width": 32}})


@pytest.fixture(scope="module")
def siglip_vlm(siglip_dir: tuple[Path, Any], models_registry: Any) -> Any:
    name = f"hf:{siglip_dir[0]}"
    return models_registry.get(name).load(name, "cpu")


def test_hf_siglip_has_its_scale_bias_features_and_logits(siglip_dir: tuple[Path, Any], siglip_vlm: Any) -> None:
    from rlcf_bench.tta.hf_vlm import HFSiglipTextTower
    from rlcf_bench.tta.logits import ClassLogits

    _, model = siglip_dir
    assert isinstance(siglip_vlm.text_tower, HFSiglipTextTower) and not siglip_vlm.text_tower.truncatable
    assert math.isclose(siglip_vlm.logit_scale, 10.0, rel_tol=1e-6) and siglip_vlm.logit_bias == -10.0
    assert (siglip_vlm.mean, siglip_vlm.std) == ((0.5,) * 3, (0.5,) * 3)
    tokens = siglip_vlm.tokenize(TEXTS)
    assert tokens.shape == (len(TEXTS), 16)  # padded to the full context, as SigLIP was trained
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=tokens, pixel_values=images)
        own_text = model.get_text_features(input_ids=tokens)
    own_text = own_text if isinstance(own_text, torch.Tensor) else own_text.pooler_output
    text = siglip_vlm.text_features(TEXTS)
    assert torch.allclose(text, F.normalize(own_text, dim=-1), atol=1e-5)
    logits = ClassLogits.of(siglip_vlm).product(siglip_vlm.image_features(images), text.t())
    assert torch.allclose(logits, out.logits_per_image, atol=1e-4)  # s · cos + b, SigLIP's own


def test_hf_siglip_drives_the_prompt_learner(siglip_vlm: Any) -> None:
    from rlcf_bench.tta.prompt_learner import PromptLearner

    learner = PromptLearner(siglip_vlm, ("red", "green", "blue"))
    assert learner.length == siglip_vlm.context_length  # bidirectional: the whole context runs
    with torch.no_grad():
        got = learner.text_features(learner.initial_context(1))[0]
    assert torch.allclose(got, siglip_vlm.text_features(learner.prompts), atol=1e-5)


@pytest.mark.parametrize("method", ["zero-shot", "tpt-prompt"])
def test_hf_siglip_keeps_the_method_contract(method: str, siglip_dir: tuple[Path, Any], tmp_path: Path) -> None:
    from rlcf_bench.testing import MethodContract

    MethodContract(method, tmp_path, model=f"hf:{siglip_dir[0]}").check()


def test_open_clip_siglip_config_and_weights_load_with_their_bias(tmp_path: Path, load: Any) -> None:
    """``CONFIG.json@weights`` of an open_clip SigLIP (``init_logit_bias``, ``custom_text``, a
    bidirectional text tower): the loaded wrapper reads the stored bias, not the config's init."""
    from safetensors.torch import save_file

    from rlcf_bench_fixtures.tiny import TINY_SIGLIP_CONFIG, build_tiny_siglip

    model, tokenizer = build_tiny_siglip(seed=3)
    with torch.no_grad():
        model.logit_bias.fill_(-12.5)
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY_SIGLIP_CONFIG, "custom_text": True}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    vlm = load(f"{tmp_path / 'tiny.json'}@{tmp_path / 'tiny.safetensors'}")
    assert vlm.logit_bias == -12.5 and math.isclose(vlm.logit_scale, 10.0, rel_tol=1e-6)
    with torch.no_grad():
        want = F.normalize(model.eval().encode_text(tokenizer(list(TEXTS))), dim=-1)
    assert torch.allclose(vlm.text_features(TEXTS), want, atol=1e-5)
