"""Helpers shared by the model-backend tests (a plain module: ``conftest`` names clash across folders)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

TEXTS = ("a photo of a dog.", "cat", "Hello, World! a much longer sentence that has to be cut somewhere")

#: An OpenAI-style tiny CLIP: 64-wide towers with one 64-wide head each, which is what OpenAI's
#: layout implies (``build_model_from_openai_state_dict`` infers heads = width // 64).
OPENAI_TINY: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}


def tiny_config() -> dict[str, Any]:
    from rlcf_bench_fixtures.tiny import TINY_CLIP_CONFIG

    return copy.deepcopy(TINY_CLIP_CONFIG)


def openai_style_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict laid out and typed like OpenAI's release: fp16 weights, QuickGELU model, and the
    ``input_resolution``/``context_length``/``vocab_size`` scalars of their archives."""
    from open_clip.model import CLIP, convert_weights_to_fp16

    torch.manual_seed(seed)
    model = CLIP(**copy.deepcopy(OPENAI_TINY), quick_gelu=True).eval()
    convert_weights_to_fp16(model)
    sd = dict(model.state_dict())
    sd["input_resolution"] = torch.tensor(32)
    sd["context_length"] = torch.tensor(16)
    sd["vocab_size"] = torch.tensor(49408)
    return sd


def write_hf_tokenizer(folder: Path) -> None:
    """A ``CLIPTokenizer`` built offline from open_clip's bundled BPE vocabulary, saved to ``folder``.

    transformers 5.x constructors take ``vocab=``/``merges=`` (``vocab_file=`` silently gives empty ids).
    """
    import open_clip
    from transformers import CLIPTokenizer

    bpe = open_clip.SimpleTokenizer()
    vocab = dict(bpe.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    merges = [pair for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(str(folder))


def save_hf_folder(folder: Path, model: Any, preprocess: dict[str, Any]) -> tuple[Path, Any]:
    """What an ``hf:/dir`` model folder holds: ``model.save_pretrained``, a CLIP BPE tokenizer
    (:func:`write_hf_tokenizer`) and ``preprocess`` as ``preprocessor_config.json``."""
    import json

    model.save_pretrained(str(folder))
    write_hf_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocess))
    return folder, model
