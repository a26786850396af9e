"""Runtime interfaces a method is handed (Protocols: wrapped, never subclassed): the policy
models, the reward model, mixed precision and the section timer."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


@runtime_checkable
class VisionLanguageModel(Protocol):
    """A CLIP-style dual encoder.

    ``encode_image``/``encode_text`` return *un-normalised* embeddings. ``image_size`` and
    ``mean``/``std`` describe the normalised input the image tower expects. ``clip`` is the
    underlying ``torch.nn.Module`` (for methods that tune its parameters).
    """

    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int

    @property
    def module(self) -> torch.nn.Module: ...

    @property
    def device(self) -> torch.device: ...

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor: ...

    @property
    def logit_scale(self) -> float: ...

    @property
    def visual(self) -> torch.nn.Module:
        """The image tower (what image-tower tuning adapts)."""
        ...

    def image_features(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """L2-normalised fp32 image embeddings."""
        ...

    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised fp32 text embeddings."""
        ...


@runtime_checkable
class CaptioningModel(Protocol):
    """An image captioner (``ModelSpec.kind == "captioner"``): a CLIP-style encoder ``clip``
    whose image embedding conditions a text decoder (ClipCap, CapDec). ``mapper`` is what
    test-time adaptation tunes; ``settings`` holds the checkpoint's settings (its ``tta`` defaults)."""

    name: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip: VisionLanguageModel
    mapper: torch.nn.Module
    settings: Any

    @property
    def kind(self) -> str: ...

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP's image features the mapper reads."""
        ...

    def prefix_embeddings(self, feats: torch.Tensor) -> torch.Tensor: ...

    def generate(self, prefix: torch.Tensor, num_beams: int = 5, num_return: int = 1,
                 max_new_tokens: int | None = None, *, lower: bool = True) -> list[list[str]]: ...

    def encode_captions(self, captions: Sequence[str], max_len: int | None = None,
                        append_eos: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def caption_losses(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *,
                       pad_quirk: bool = False) -> torch.Tensor: ...

    def caption(self, images: torch.Tensor, num_beams: int = 5, max_new_tokens: int | None = None) -> list[str]: ...


@runtime_checkable
class RewardModel(Protocol):
    """Scores (image, text) pairs with a frozen model: ``R = sum_j w_j * 2.5 * max(0, cos_j)``.

    Images arrive normalised for the *policy* (``policy_space``); the reward model adapts them to
    its own resolution and normalisation.
    """

    name: str

    def image_features(self, images: torch.Tensor) -> list[torch.Tensor]: ...

    def text_features(self, texts: Sequence[str]) -> list[torch.Tensor]: ...

    def score(self, image_feats: list[torch.Tensor], text_feats: list[torch.Tensor]) -> torch.Tensor: ...

    def class_logits(self, image_feats: list[torch.Tensor], text_feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``[N, C]`` of N images against C class texts (a distillation teacher's)."""
        ...


class Amp(Protocol):
    """Mixed-precision helper built by the runner from the protocol's precision."""

    dtype: Any
    enabled: bool

    def autocast(self) -> Any: ...

    def backward_step(self, loss: torch.Tensor, optimizer: Any) -> None:
        """Backward of ``loss`` (a scalar, or per-sample losses ``[B]`` of independent samples
        whose tuned tensors have a leading sample axis: each then gets its own fp16 loss scale and
        overflow check), then the optimizer step."""


class Timer(Protocol):
    """Device-synchronised time of named sections of a method's work (``reward``: the reward
    model's share of the latency, stored with every batch). The runner's is a
    :class:`rlcf_bench.device.SectionTimer`, reset per batch."""

    def section(self, name: str) -> contextlib.AbstractContextManager[None]: ...


class NullTimer:
    """A :class:`Timer` that records nothing (a context built outside the runner)."""

    def section(self, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()
