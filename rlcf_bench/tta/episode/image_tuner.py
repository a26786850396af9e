"""Image-encoder tuning: the image tower's parameters, one copy per sample, forwarded at once with
``torch.func.vmap`` (:class:`ImageEncoderTuner`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

from ...lazy import LazyModule, no_grad
from ...types import Batch, MethodContext
from ..logits import class_logits_for
from ..objectives import gather_views
from ..optim import adamw
from ..prompts import class_prompts, class_text_features
from .config import ImageTuningConfig
from .features import has_view_cache, view_features
from .state import MomentumStart, sections
from .tuners import Tuner

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)
F: Any = LazyModule("torch.nn.functional")


def image_encoder(vlm: Any) -> torch.nn.Module:
    """``vlm.encode_image`` as a module's forward, so that :func:`torch.func.functional_call` can
    substitute tuned tensors by their names in ``vlm.module`` (``model.<name>``) for one call,
    leaving the model's own tensors untouched. (Defined here so that importing this module does
    not import torch.)"""

    class ImageEncoder(torch.nn.Module):  # type: ignore[misc]  # torch is imported lazily here (typed Any)
        def __init__(self) -> None:
            super().__init__()
            self.model = vlm.module

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return vlm.encode_image(images)

    return ImageEncoder()


#: vmap runs ops without a batching rule (CPU attention) sample by sample and warns each time
_NO_BATCH_RULE_WARNING = "There is a performance drop because we have not yet implemented the batching rule"


class ImageEncoderTuner(Tuner):
    """The image tower's parameters, one copy per sample, against class text features cached
    once per run.

    The model itself is never written to: the tuned state is a stack ``[B, *shape]`` of every
    tuned tensor (one row per sample, all loaded from the same start point when an episode
    begins), substituted for the model's tensors by :func:`torch.func.functional_call`; B
    samples are forwarded at once with :func:`torch.func.vmap` over the stack. AdamW is
    elementwise (decoupled weight decay included) and nothing couples the rows, so a batch is
    the same update as B episodes one after another. Batching is exact up to float
    re-association: vmap runs a convolution over B weight copies as one grouped convolution, so
    a row can differ from the one-sample result in the last bits (and Adam, dividing by √v, turns
    an element's rounding-noise gradient into a step of up to ±lr); a batch of one takes the
    un-batched path, bit-identical to tuning the model in place. The
    selection forward of all views runs once for the whole batch under the (shared) start point.

    With ``momentum`` (the paper's "-M", ``docs/original-code.md#momentum-start-point``), the start
    point is replaced every ``freq`` samples by ``(1−w)·θ_clip + w·EMA_μ(adapted weights)``; the
    method then carries state across samples, which come one at a time (a batch of several is
    refused). :meth:`reset` needs no write-back: the model stays ``θ_clip`` throughout.
    """

    def __init__(self, ctx: MethodContext, config: ImageTuningConfig, *, momentum: float | None = None,
                 momentum_freq: int = 64, momentum_w: float = 1.0) -> None:
        self.ctx = ctx
        self.config = config
        self.section = sections(ctx)
        visual = ctx.vlm.visual
        if config.tune_norm:
            norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)
            params = [p for m in visual.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)]
        else:
            params = list(visual.parameters())
        names = {id(p): f"model.{n}" for n, p in ctx.vlm.module.named_parameters()}
        self.names = [names[id(p)] for p in params]
        self.initial = [p.detach() for p in params]  # θ_clip, the model as the run found it (never written)
        self.encoder = image_encoder(ctx.vlm)
        self.state: list[torch.nn.Parameter] | None = None  # [B, *shape] per tuned tensor
        self._prompts = class_prompts(ctx.classnames or (), (ctx.templates or ("a photo of a {}.",))[0],
                                      underscore_prompt=config.underscore_prompt)
        self.text = class_text_features(ctx, underscore_prompt=config.underscore_prompt)  # [C, E], once
        self.scale = float(ctx.vlm.logit_scale)
        self.logits = class_logits_for(ctx)  # s · cos + b, under the protocol's probability
        self.views: torch.Tensor | None = None  # all views, when the episode was given them
        self.selected_pixels: torch.Tensor | None = None  # the episode's selected views [B, N, 3, S, S]
        self.episode_size: int | None = None  # B of the running episode (None: no episode since reset)
        self.momentum = (MomentumStart(self.initial, mu=momentum, freq=momentum_freq, w=momentum_w)
                         if momentum is not None else None)
        self.preset: torch.Tensor | None = None  # θ_clip features of the views, read by preload()
        self.selection_features: torch.Tensor | None = None  # the episode's preset, [B, V, E]

    @property
    def hand_crafted_prompts(self) -> list[str]:
        return list(self._prompts)

    @property
    def start(self) -> list[torch.Tensor] | None:
        """The episode start point: the momentum one once it exists, else None (θ_clip)."""
        return self.momentum.start if self.momentum is not None else None

    def _ensure(self, batch_size: int) -> list[torch.nn.Parameter]:
        """One copy of the tuned tensors per sample; re-created (with its optimizer) when B changes."""
        if self.state is None or self.state[0].shape[0] != batch_size:
            self.state = [torch.nn.Parameter(p.new_empty((batch_size, *p.shape))) for p in self.initial]
            self.optimizer = adamw(self.state, lr=self.config.lr, weight_decay=self.config.weight_decay)
        return self.state

    def reset(self) -> None:
        if self.optimizer is not None:
            self.optimizer.state.clear()
        for s in self.state or ():
            s.grad = None
        self.views = self.selected_pixels = self.episode_size = None

    reads_selected_views: ClassVar[bool] = True

    @no_grad
    def begin(self, views: torch.Tensor | None) -> None:
        """``views`` may be None after :meth:`preload` read the selection features (the steps then
        get the selected views' pixels through :meth:`use_selected_views`)."""
        if views is None and self.preset is None:
            raise ValueError("begin() needs the views unless preload() read their features")
        b = views.shape[0] if views is not None else self.preset.shape[0]  # type: ignore[union-attr]
        if self.momentum is not None and b != 1:
            raise ValueError("image-encoder tuning with momentum adapts one sample at a time "
                             "(the start point moves with the stream)")
        for s, p in zip(self._ensure(b), self.start or self.initial):
            s.copy_(p.expand_as(s))
        assert self.optimizer is not None
        self.optimizer.state.clear()
        self.views, self.selected_pixels, self.episode_size = views, None, b
        self.selection_features, self.preset = self.preset, None

    def use_selected_views(self, pixels: torch.Tensor) -> None:
        self.selected_pixels = pixels

    def preload(self, batch: Batch) -> bool:
        """The selection forward runs under θ_clip (no momentum start point yet), i.e. the frozen
        policy whose view features the shared cache holds: read them from there; :meth:`begin`
        then needs no views (the steps read only the selected views' pixels)."""
        if self.start is None and has_view_cache(self.ctx):
            self.preset = view_features(self.ctx, batch, self.section)
            return True
        return False

    def _encode(self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Normalised fp32 features of images ``[N, 3, S, S]`` under ``params`` (one value per
        tuned tensor; ``None`` → the model as it is, θ_clip)."""
        with self.section("image_encoder"):
            if params is None:
                feats = self.ctx.vlm.encode_image(x)
            else:
                feats = torch.func.functional_call(self.encoder, dict(zip(self.names, params)), (x,))
            return F.normalize(feats.float(), dim=-1)

    def _encode_each(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, N, E]`` of views ``[B, N, 3, S, S]``, sample b under its own state row."""
        assert self.state is not None
        if x.shape[0] == 1:  # the un-batched computation, exactly as tuning the model in place
            return self._encode(x[0], [s[0] for s in self.state]).unsqueeze(0)
        fastpath = torch.backends.mha.get_fastpath_enabled()
        try:  # nn.MultiheadAttention's fused inference path sees no gradient under vmap: off
            torch.backends.mha.set_fastpath_enabled(False)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NO_BATCH_RULE_WARNING)
                return torch.func.vmap(self._encode)(x, list(self.state))
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)

    def selection_logits(self) -> torch.Tensor:
        feats = self.selection_features
        if feats is None or (self.views is not None and feats.shape[:2] != self.views.shape[:2]):
            assert self.views is not None, "selection_logits() needs the views unless preload() read their features"
            b, v = self.views.shape[:2]
            with torch.no_grad():  # every sample starts from the same point: one forward for the batch
                feats = self._encode(self.views.flatten(0, 1), self.start).view(b, v, -1)
        return self.logits.product(feats, self.text.t())

    def step_logits(self, selected: torch.Tensor, selection_logits: torch.Tensor | None = None) -> torch.Tensor:
        if self.selected_pixels is None:
            assert self.views is not None, "step_logits() needs the episode's views or use_selected_views()"
            self.selected_pixels = gather_views(self.views, selected)
        return self.logits.product(self._encode_each(self.selected_pixels), self.text.t())

    @no_grad
    def predict_logits(self, batch: Batch) -> torch.Tensor:
        with self.ctx.amp.autocast():
            if self.episode_size != len(batch):  # no episode ran: θ_clip
                feats = self._encode(batch.images)
            else:
                assert batch.images is not None
                feats = self._encode_each(batch.images.unsqueeze(1))[:, 0]
            return self.logits.product(feats, self.text.t())

    def momentum_update(self) -> None:
        """After a sample is predicted: fold its adapted weights into the momentum start point
        (:class:`MomentumStart`)."""
        if self.momentum is not None and self.state is not None:
            self.momentum.update([s[0] for s in self.state])
