"""The open_clip model wrapper (``VisionLanguageModel``) with exact text-length truncation.

open_clip's ``encode_text`` always runs the full context (77 positions). Under the causal mask
the end-of-text feature does not depend on later positions, so running a batch only up to its
longest end-of-text position gives identical features for a fraction of the cost
(``docs/original-code.md#cost-of-the-original-code``;
``tests/methods/test_prompt_learner.py`` checks the equality). ``encode_text_embeddings`` is the same path for
prompt learners that splice learned context vectors into the token embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class TextTower:
    """The attributes of an open_clip text transformer, wherever they live.

    ``CLIP`` keeps them on the model itself; ``CustomTextCLIP`` on ``model.text``.
    """

    def __init__(self, model: nn.Module) -> None:
        # open_clip's modules carry no types: the tower's parts are read by name.
        owner: Any = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
        if owner is None or not hasattr(owner, "token_embedding") or not hasattr(owner, "transformer"):
            raise TypeError(f"{type(model).__name__} has no open_clip text transformer")
        self.owner = owner
        self.token_embedding: nn.Embedding = owner.token_embedding
        self.positional_embedding: torch.Tensor = owner.positional_embedding
        self.transformer: nn.Module = owner.transformer
        self.ln_final: nn.Module = owner.ln_final
        self.text_projection: Any = owner.text_projection
        self.pool_type: str = getattr(owner, "text_pool_type", getattr(owner, "pool_type", "argmax"))
        self.eos_id: int | None = getattr(owner, "text_eos_id", getattr(owner, "eos_id", None))
        self.attn_mask: torch.Tensor | None = getattr(owner, "attn_mask", None)

    @property
    def truncatable(self) -> bool:
        """Truncation is exact only with a causal mask and end-of-text pooling."""
        return self.attn_mask is not None and self.pool_type in {"argmax", "eos"}

    def pool_index(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool_type == "eos":
            assert self.eos_id is not None
            return (tokens == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "last":
            return torch.full((tokens.shape[0],), tokens.shape[1] - 1, device=tokens.device, dtype=torch.long)
        raise ValueError(f"text pool type {self.pool_type!r} has no single pooled position")

    def forward_embeddings(self, x: torch.Tensor, pool_idx: torch.Tensor) -> torch.Tensor:
        """Run the tower on token embeddings ``[N, L, D]`` (L ≤ context length), pool, project."""
        length = x.shape[1]
        get_cast_dtype = getattr(self.transformer, "get_cast_dtype", None)
        cast_dtype = get_cast_dtype() if get_cast_dtype is not None else x.dtype
        x = x.to(cast_dtype) + self.positional_embedding[:length].to(cast_dtype)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), pool_idx]
        proj = self.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Module) else x @ proj
        return x


class _OpenClipModel(Protocol):
    """The parts of an open_clip ``CLIP``/``CustomTextCLIP`` the wrapper calls (open_clip is untyped)."""

    visual: nn.Module
    logit_scale: torch.Tensor

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


class NormalisedFeatures:
    """What every ``VisionLanguageModel`` wrapper shares: the wrapped ``model``'s module and device,
    and batched, normalised, gradient-free features (wrappers provide ``tokenize``,
    ``encode_text`` and ``encode_image``)."""

    model: nn.Module

    if TYPE_CHECKING:  # provided by every wrapper
        def tokenize(self, texts: Sequence[str]) -> torch.Tensor: ...

        def encode_text(self, tokens: torch.Tensor, truncate: bool = True) -> torch.Tensor: ...

        def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def _wrap(self, model: nn.Module, tokenizer: Any, *, name: str, version: str, image_size: int,
              mean: Sequence[float], std: Sequence[float]) -> None:
        """Freeze ``model`` (eval mode, no gradients) and record its identity and preprocessing."""
        self._scalar_cache: dict[str, tuple[tuple[int, int, str], float]] = {}
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.version = version
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @property
    def module(self) -> nn.Module:
        return self.model

    def _exp_logit_scale(self, log_scale: torch.Tensor) -> float:
        """``exp(log_scale)`` as a float, read from the device once and cached until the tensor is
        written or moved (its in-place version counter or storage changes): methods read
        ``logit_scale`` per sample, and each read of a GPU value is a host-device sync."""
        return self._cached_scalar("scale", log_scale, exp=True)

    def _logit_bias(self, bias: torch.Tensor | None) -> float:
        """The model's logit bias (SigLIP's ``b``) as a float, cached like the scale; 0 without one."""
        return 0.0 if bias is None else self._cached_scalar("bias", bias, exp=False)

    def _cached_scalar(self, slot: str, tensor: torch.Tensor, *, exp: bool) -> float:
        key = (tensor._version, tensor.data_ptr(), str(tensor.device))
        cached = self._scalar_cache.get(slot)
        if cached is None or cached[0] != key:
            value = tensor.detach()
            cached = (key, float(value.exp() if exp else value))
            self._scalar_cache[slot] = cached
        return cached[1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised features of ``texts`` in fp32, batched, no gradient."""
        feats = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[i : i + batch_size])  # on the host: encode_text truncates there
            feats.append(F.normalize(self.encode_text(tokens).float(), dim=-1))
        return torch.cat(feats) if feats else torch.empty(0)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        feats = [F.normalize(self.encode_image(images[i : i + batch_size]).float(), dim=-1)
                 for i in range(0, images.shape[0], batch_size)]
        return torch.cat(feats) if feats else torch.empty(0)


class OpenClipVLM(NormalisedFeatures):
    """A ``VisionLanguageModel`` over an open_clip ``CLIP``/``CustomTextCLIP``."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, image_size: int,
                 mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
                 version: str = "1") -> None:
        self._wrap(model, tokenizer, name=name, version=version, image_size=image_size, mean=mean, std=std)
        self.context_length = int(getattr(tokenizer, "context_length", 77))
        try:
            self.text_tower: TextTower | None = TextTower(model)
        except TypeError:
            self.text_tower = None

    @property
    def _clip(self) -> _OpenClipModel:
        return cast(_OpenClipModel, self.model)

    @property
    def visual(self) -> nn.Module:
        return self._clip.visual

    def to(self, device: torch.device) -> OpenClipVLM:
        self.model.to(device)
        return self

    @property
    def logit_scale(self) -> float:
        return self._exp_logit_scale(self._clip.logit_scale)

    @property
    def logit_bias(self) -> float:
        """SigLIP's learned bias ``b`` of ``s · cos + b`` (``logit_bias``); 0 for a CLIP."""
        return self._logit_bias(getattr(self.model, "logit_bias", None))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        tokens: torch.Tensor = self.tokenizer(list(texts))
        return tokens

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._clip.encode_image(images)

    def encode_text(self, tokens: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """Encode token ids (on the host or the model's device; moved there); truncated to the
        longest end-of-text position when exact. The length is read on the host when the tokens
        are there (as :meth:`text_features` passes them), so no device sync is paid."""
        tower = self.text_tower
        if not truncate or tower is None or not tower.truncatable:
            return self._clip.encode_text(tokens.to(self.device))
        pool_idx = tower.pool_index(tokens)
        length = truncation_length(pool_idx)
        tokens, pool_idx = tokens[:, :length].to(self.device), pool_idx.to(self.device)
        x = tower.token_embedding(tokens)
        return tower.forward_embeddings(x, pool_idx)

    def encode_text_embeddings(self, x: torch.Tensor, pool_idx: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Encode token *embeddings* (e.g. with learned context spliced in), truncated to
        ``length`` positions (default ``max(pool_idx) + 1``, which reads ``pool_idx`` on the host:
        callers that know it, as prompt learners do, pass it and pay no device sync per step)."""
        if self.text_tower is None:
            raise TypeError(f"model {self.name} does not expose its text transformer")
        length = truncation_length(pool_idx) if length is None else int(length)
        return self.text_tower.forward_embeddings(x[:, :length], pool_idx)


def truncation_length(pool_idx: torch.Tensor) -> int:
    """``max(pool_idx) + 1``: the positions a causal text tower needs (a host-device sync when
    ``pool_idx`` is on an accelerator; callers keep it out of per-step paths)."""
    return int(pool_idx.max()) + 1
