"""The tiny ClipCap captioner shared by the official captioning code and ours (RLCF captioning
parity, ``record_rlcf_captioning.py`` and ``tests/parity/test_parity_rlcf_captioning.py``).

Everything is rebuilt from seeds and short lists, whatever the transformers version: a byte-level
BPE written by hand (OPT's special ids, ASCII words only, some capitalised, so that every token
decodes to text that tokenises back to the same ids), a 2-layer OPT whose weights are drawn by
parameter name, and a one-layer ClipCap transformer mapper with 8 heads (the official mapper's
fixed head count) whose weights are drawn by this project's names and renamed for the official
``TransformerMapper``. Nothing here imports transformers; callers build the models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # OPT's ids 0, 1, 2 (BOS = the tokenizer's EOS), 3
WORDS = ("a", "photo", "of", "the", "dog", "cat", "red", "blue", "car", "on", "grass", "man", "sitting", "in",
         "street", "small", "white", "A", "The", "Dog", "Two", "people")
ALPHABET = ("Ġ", "Ċ", ".")  # byte-level space and newline (the newline is the end-of-caption token)
DECODER = {"hidden": 64, "layers": 2, "heads": 2, "ffn": 128, "max_positions": 128}  # untied output layer
MAPPER = {"prefix_dim": 64, "dim": 64, "clip_length": 4, "prefix_length": 4, "layers": 1, "heads": 8,
          "mlp_ratio": 2.0}
DECODER_SEED = 11
MAPPER_SEED = 12
#: this project's mapper names → the official ``TransformerMapper``'s (``caption/image_llm/models/modules.py``)
MAPPER_NAMES = (("project.", "linear."), ("constant", "prefix_const"), ("blocks.", "transformer.layers."),
                (".attn.query.", ".attn.to_queries."), (".attn.key_value.", ".attn.to_keys_values."),
                (".attn.out.", ".attn.project."), (".mlp.0.", ".mlp.fc1."), (".mlp.2.", ".mlp.fc2."))


def tokenizer_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(vocab, merges)`` of the hand-written BPE: every word of ``WORDS`` one token, alone and
    after a space (each word's merges left to right, then space + word)."""
    chars = sorted({c for w in WORDS for c in w} | set(ALPHABET))
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *chars])}
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        left = word[0]
        for c in word[1:]:
            if (left, c) not in merges:
                merges.append((left, c))
            left += c
            vocab.setdefault(left, len(vocab))
    for word in WORDS:
        merges.append(("Ġ", word))
        vocab["Ġ" + word] = len(vocab)
    return vocab, merges


def _draw(name: str, shape: Iterable[int], g: torch.Generator) -> torch.Tensor:
    shape = tuple(shape)
    if name.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=g)
    if "norm" in name and len(shape) == 1:  # LayerNorm gains
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if "embed" in name or name in ("constant",):
        return 0.5 * torch.randn(shape, generator=g)  # peaked next-token distributions: no near-ties in the beams
    return torch.randn(shape, generator=g) / math.sqrt(shape[-1])


def draw_weights(shapes: dict[str, Iterable[int]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights by name (sorted), for a state dict's ``{name: shape}``."""
    g = torch.Generator().manual_seed(seed)
    return {name: _draw(name, shapes[name], g) for name in sorted(shapes)}


def decoder_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The OPT's weights (built with ``tie_word_embeddings=False``: a random decoder whose output
    layer is its input embedding repeats the last token for ever)."""
    shapes = {k: v.shape for k, v in state_dict.items()}
    return draw_weights(shapes, DECODER_SEED)


def official_mapper_name(ours: str) -> str:
    for a, b in MAPPER_NAMES:
        ours = ours.replace(a, b)
    return ours
