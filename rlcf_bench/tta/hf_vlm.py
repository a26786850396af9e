"""A ``VisionLanguageModel`` over a Hugging Face ``transformers`` ``CLIPModel`` or ``SiglipModel``.

Same interface as :class:`rlcf_bench.tta.vlm.OpenClipVLM` (``encode_image``, ``encode_text(tokens,
truncate=True)``, ``encode_text_embeddings``, ``tokenize``, ``image_size``/``mean``/``std``,
``logit_scale``, ``module``, ``visual``, ``text_features``, ``image_features``, ``text_tower``).

Exact truncation: HF's CLIP text model runs under a causal mask and pools one position — the
first end-of-text token (``argmax`` of the ids for legacy configs whose ``eos_token_id`` is 2) —
so the pooled feature does not depend on later positions, and a batch can be cut after its
longest end-of-text position without changing any feature (``tests/models`` check the equality).
``encode_text_embeddings`` runs the same path from token *embeddings*: position embeddings,
the causal mask built by ``transformers`` itself, encoder, final layer norm, pooling, projection.

``SiglipModel`` (:class:`HFSiglipTextTower`): its text model has no causal mask and pools the
last position (padding included, as it was trained with ``padding="max_length"``), so the full
context always runs; ``logit_bias`` is its learned bias ``b`` of ``s · cos + b``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from .vlm import OPENAI_MEAN, OPENAI_STD, NormalisedFeatures, truncation_length


def _pooled(out: Any) -> torch.Tensor:
    """``get_*_features`` return a tensor in transformers 4.x and an output object in 5.x."""
    pooled: torch.Tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
    return pooled


class HFTextTower:
    """The text transformer of a ``CLIPModel``, with the attributes prompt learners use
    (``token_embedding``, ``positional_embedding``, ``pool_index``, ``forward_embeddings``), like
    :class:`rlcf_bench.tta.vlm.TextTower` for open_clip."""

    truncatable = True

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        # transformers' CLIPModel is read by attribute name (its submodules' own types are not needed).
        self.text_model: Any = cast(Any, model).text_model
        emb = self.text_model.embeddings
        self.token_embedding: nn.Embedding = emb.token_embedding
        self.position_embedding: nn.Embedding = emb.position_embedding
        self.eos_id = int(self.text_model.config.eos_token_id)

    @property
    def positional_embedding(self) -> torch.Tensor:
        return self.position_embedding.weight

    def pool_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """The pooled position per row, exactly as ``CLIPTextModel.forward`` picks it."""
        if self.eos_id == 2:  # legacy configs: the end-of-text token has the highest id
            return tokens.to(torch.int).argmax(dim=-1)
        return (tokens.to(torch.int) == self.eos_id).int().argmax(dim=-1)

    def _causal_mask(self, h: torch.Tensor) -> Any:
        try:
            from transformers.masking_utils import create_causal_mask
        except ImportError:  # pragma: no cover - older transformers: an explicit additive mask
            length = h.shape[1]
            mask = torch.full((length, length), torch.finfo(h.dtype).min, device=h.device, dtype=h.dtype).triu(1)
            return mask[None, None].expand(h.shape[0], 1, length, length)
        return create_causal_mask(config=self.text_model.config, inputs_embeds=h, attention_mask=None, cache=None)

    def forward_embeddings(self, x: torch.Tensor, pool_idx: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[N, L, D]`` → projected text features at ``pool_idx``."""
        length = x.shape[1]
        positions = self.text_model.embeddings.position_ids[:, :length]
        h = x + self.position_embedding(positions)
        out = self.text_model.encoder(inputs_embeds=h, attention_mask=self._causal_mask(h), is_causal=True)
        h = self.text_model.final_layer_norm(out.last_hidden_state)
        pooled = h[torch.arange(h.shape[0], device=h.device), pool_idx.to(h.device)]
        projected: torch.Tensor = cast(Any, self.model).text_projection(pooled)
        return projected


class HFSiglipTextTower:
    """The text model of a ``SiglipModel``: bidirectional (no mask at all), pooled at the last
    position, then its ``head``; the same attributes as :class:`HFTextTower` (``truncatable``
    False: every position sees every other, so nothing can be cut)."""

    truncatable = False

    def __init__(self, model: nn.Module) -> None:
        self.text_model: Any = cast(Any, model).text_model
        emb = self.text_model.embeddings
        self.token_embedding: nn.Embedding = emb.token_embedding
        self.position_embedding: nn.Embedding = emb.position_embedding

    @property
    def positional_embedding(self) -> torch.Tensor:
        return self.position_embedding.weight

    def pool_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last position of every row, as ``SiglipTextModel`` pools."""
        return torch.full((tokens.shape[0],), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)

    def forward_embeddings(self, x: torch.Tensor, pool_idx: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[N, L, D]`` → text features at ``pool_idx`` (the last position)."""
        length = x.shape[1]
        h = x + self.position_embedding(self.text_model.embeddings.position_ids[:, :length])
        out = self.text_model.encoder(inputs_embeds=h, attention_mask=None)
        h = self.text_model.final_layer_norm(out.last_hidden_state)
        pooled: torch.Tensor = self.text_model.head(h[torch.arange(h.shape[0], device=h.device), pool_idx.to(h.device)])
        return pooled


def text_tower_of(model: nn.Module) -> HFTextTower | HFSiglipTextTower:
    """The tower wrapper for a ``CLIPModel`` or a ``SiglipModel`` (by its config's ``model_type``)."""
    model_type = getattr(cast(Any, model).config, "model_type", "clip")
    return HFSiglipTextTower(model) if model_type == "siglip" else HFTextTower(model)


class HFClipVLM(NormalisedFeatures):
    """A ``VisionLanguageModel`` over ``transformers.CLIPModel`` or ``SiglipModel`` and its tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, image_size: int,
                 mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
                 interpolation: str = "bicubic", version: str = "1", context_length: int | None = None) -> None:
        self._wrap(model, tokenizer, name=name, version=version, image_size=image_size, mean=mean, std=std)
        self.interpolation = interpolation
        max_pos = int(cast(Any, model).config.text_config.max_position_embeddings)
        self.context_length = int(context_length or max_pos)
        self.preprocess_cfg = {"size": self.image_size, "mean": self.mean, "std": self.std,
                               "interpolation": interpolation, "resize_mode": "shortest"}
        self.text_tower = text_tower_of(model)

    @property
    def _clip(self) -> Any:
        """The wrapped ``transformers.CLIPModel``, read by attribute name."""
        return self.model

    @property
    def visual(self) -> nn.Module:
        vision: nn.Module = self._clip.vision_model
        return vision

    def to(self, device: torch.device | str) -> HFClipVLM:
        self.model.to(device)
        return self

    @property
    def logit_scale(self) -> float:
        return self._exp_logit_scale(self._clip.logit_scale)

    @property
    def logit_bias(self) -> float:
        """``SiglipModel``'s learned bias ``b`` of ``s · cos + b``; 0 for a ``CLIPModel``."""
        return self._logit_bias(getattr(self._clip, "logit_bias", None))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``LongTensor[N, context_length]``: start, BPE ids, end-of-text, padding (long texts are cut
        but keep their end-of-text token)."""
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.context_length,
                             return_tensors="pt")
        ids: torch.Tensor = enc["input_ids"]
        return ids

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return _pooled(self._clip.get_image_features(pixel_values=images))

    def encode_text(self, tokens: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """Encode token ids (moved to the model's device); cut after the batch's last pooled
        position when ``truncate`` (exact; read on the host when the tokens are there)."""
        if truncate and self.text_tower.truncatable:
            tokens = tokens[:, :truncation_length(self.text_tower.pool_index(tokens))]
        return _pooled(self._clip.get_text_features(input_ids=tokens.to(self.device)))

    def encode_text_embeddings(self, x: torch.Tensor, pool_idx: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Encode token *embeddings* (e.g. with learned context spliced in), truncated to
        ``length`` positions (default ``max(pool_idx) + 1``, a device sync: prompt learners pass it)."""
        length = truncation_length(pool_idx) if length is None else int(length)
        return self.text_tower.forward_embeddings(x[:, :length], pool_idx)
