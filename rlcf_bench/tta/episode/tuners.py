"""Tuners: what an episode tunes, and how the policy's logits are produced under it. The base
:class:`Tuner`, the per-sample tensor tuned against frozen view features (:class:`PerSampleTuner`)
and the prompt context (:class:`PromptTuner`)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ...lazy import LazyModule, no_grad
from ...types import Batch, MethodContext
from ..logits import class_logits_for
from ..objectives import gather_views
from ..prompt_learner import PromptLearner, prompt_learner_for
from .config import PromptTuningConfig, TuningConfig
from .features import has_view_cache, view_features
from .state import sections

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)
F: Any = LazyModule("torch.nn.functional")


class Tuner(ABC):
    """The tuned state of an episode and the policy's logits under it."""

    optimizer: torch.optim.Optimizer | None = None

    @abstractmethod
    def reset(self) -> None:
        """Restore the initial tuned state and an empty optimizer state."""

    @abstractmethod
    def begin(self, views: torch.Tensor) -> None:
        """Start an episode on views ``[B, V, 3, S, S]`` (frozen per-episode work goes here)."""

    def end(self) -> None:  # noqa: B027 - optional
        """Episode finished (release per-episode gradients flags, keep what predict needs)."""

    def preload(self, batch: Batch) -> bool:
        """Read what the next :meth:`begin` can take from the invocation's shared view-feature
        cache (``rlcf_bench.view_cache``), if the run has one. True when :meth:`begin` then needs
        no views at all; False when it still needs the pixels (the default: nothing preloaded)."""
        return False

    def episode(self) -> contextlib.AbstractContextManager[Any]:
        """Context active during the optimisation steps (e.g. gradients switched on)."""
        return contextlib.nullcontext()

    #: Whether :meth:`step_logits` forwards the selected views' pixels (then :func:`run_episode`
    #: hands them to :meth:`use_selected_views` once per episode).
    reads_selected_views: ClassVar[bool] = False

    def use_selected_views(self, pixels: torch.Tensor) -> None:  # noqa: B027 - optional
        """The selected views' pixels ``[B, N, 3, S, S]``, once per episode, before the first step."""

    @abstractmethod
    def selection_logits(self) -> torch.Tensor:
        """Logits ``[B, V, C]`` of all views under the current state, for confidence selection.
        May carry gradient if the tuner can reuse them for the step-0 loss."""

    @abstractmethod
    def step_logits(self, selected: torch.Tensor, selection_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, N, C]`` of the selected views, with gradient w.r.t. the tuned state."""

    @abstractmethod
    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Logits ``[B, C]`` of view 0 under the current (adapted) state, no gradient."""

    @property
    @abstractmethod
    def hand_crafted_prompts(self) -> list[str]:
        """The class prompts of the initial state (the reward model's class texts)."""


class PerSampleTuner(Tuner):
    """A per-sample tensor ``context`` ``[B, ...]`` (one row per test sample, e.g. a prompt context
    or per-class prototype shifts) tuned against frozen view features.

    The image features of all V views are computed once per episode, without gradient; each step
    only maps the tuned tensor to normalised class features ``[B, C, E]``
    (:meth:`class_features`). The step-0 selection logits are the step-0 loss logits (one forward
    serves both). Prediction reuses the frozen view-0 features. ``current_class_features`` holds
    the class features of the latest forward (with their graph during an episode), for objectives
    that regularise them (e.g. C-TPT's dispersion term).
    """

    def __init__(self, ctx: MethodContext, config: TuningConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.section = sections(ctx)
        self.context: torch.nn.Parameter | None = None
        self.view_features: torch.Tensor | None = None  # [B, V, E], frozen for the episode
        self.preset: torch.Tensor | None = None  # features read by preload(), used by the next begin()
        self.current_class_features: torch.Tensor | None = None
        self.scale = float(ctx.vlm.logit_scale)
        self.logits = class_logits_for(ctx)  # s · cos + b, under the protocol's probability

    @abstractmethod
    def initial_context(self, batch_size: int) -> torch.Tensor:
        """A fresh ``[B, ...]`` initial state (every row equal)."""

    @abstractmethod
    def class_features(self, context: torch.Tensor) -> torch.Tensor:
        """Normalised class features ``[B, C, E]`` under each sample's state."""

    def _ensure(self, batch_size: int) -> torch.nn.Parameter:
        """One row per sample; re-created (from the initial state) when B changes."""
        if self.context is None or self.context.shape[0] != batch_size:
            self.context = torch.nn.Parameter(self.initial_context(batch_size))
            self.optimizer = torch.optim.AdamW([self.context], lr=self.config.lr,
                                               weight_decay=self.config.weight_decay)
        return self.context

    def _reset_context(self, context: torch.nn.Parameter) -> None:
        context.copy_(self.initial_context(context.shape[0]))

    def reset(self) -> None:
        if self.context is not None:
            with torch.no_grad():
                self._reset_context(self.context)
            self.context.grad = None
            assert self.optimizer is not None
            self.optimizer.state.clear()
        self.view_features = None
        self.preset = None
        self.current_class_features = None

    def preload(self, batch: Batch) -> bool:
        """Read the batch's view features from the shared cache (``rlcf_bench.view_cache``) for the
        next :meth:`begin`, which then needs no pixels. False when the run has no cache."""
        if not has_view_cache(self.ctx):
            return False
        self.preset = view_features(self.ctx, batch, self.section)
        return True

    def begin(self, views: torch.Tensor | None) -> None:
        """``views`` may be None after :meth:`preload` (the features are already there)."""
        if self.preset is not None:
            self.view_features, self.preset = self.preset, None
            self._ensure(self.view_features.shape[0])
            return
        assert views is not None, "begin() needs the views unless preload() read their features"
        b, v = views.shape[:2]
        self._ensure(b)
        with torch.no_grad(), self.ctx.amp.autocast(), self.section("image_encoder"):
            self.view_features = self.ctx.vlm.image_features(views.flatten(0, 1)).view(b, v, -1)

    def _text(self, context: torch.Tensor) -> torch.Tensor:
        self.current_class_features = self.class_features(context)
        return self.current_class_features

    def _logits(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.logits(torch.einsum("bve,bce->bvc", feats, text))

    def selection_logits(self) -> torch.Tensor:
        assert self.context is not None and self.view_features is not None
        return self._logits(self.view_features, self._text(self.context))

    def step_logits(self, selected: torch.Tensor, selection_logits: torch.Tensor | None = None) -> torch.Tensor:
        if selection_logits is not None:  # step 0: the selection forward already has the graph
            return gather_views(selection_logits, selected)
        assert self.context is not None and self.view_features is not None
        return self._logits(gather_views(self.view_features, selected), self._text(self.context))

    @no_grad
    def all_view_logits(self, batch: Batch) -> torch.Tensor:
        """Logits ``[B, V, C]`` of every view under the current (adapted) state, no gradient; the
        frozen view features are encoded here if no episode ran (e.g. ``steps=0``)."""
        b = len(batch)
        if self.view_features is None or self.view_features.shape[0] != b:
            self.begin(None if self.preload(batch) else batch.views)
        with self.ctx.amp.autocast():
            return self.selection_logits()

    @no_grad
    def predict_logits(self, batch: Batch) -> torch.Tensor:
        b = len(batch)
        context = self.context if self.context is not None and self.context.shape[0] == b else None
        if context is None:
            context = self.initial_context(b)
        with self.ctx.amp.autocast():
            if self.view_features is not None and self.view_features.shape[0] == b:
                feats = self.view_features[:, 0]  # view 0 = the centre crop, already encoded
            else:
                assert batch.images is not None, "a classification batch carries its images"
                with self.section("image_encoder"):
                    feats = self.ctx.vlm.image_features(batch.images)
            text = self._text(context)
        return self.logits(torch.einsum("be,bce->bc", feats, text))


class PromptTuner(PerSampleTuner):
    """A per-sample prompt context ``[B, n_ctx, D]``; class features from the text tower
    (truncated prompts), the only encoder run per step."""

    def __init__(self, ctx: MethodContext, config: PromptTuningConfig) -> None:
        super().__init__(ctx, config)
        self.learner: PromptLearner = prompt_learner_for(ctx, ctx_init=config.ctx_init, coop=config.coop)

    @property
    def hand_crafted_prompts(self) -> list[str]:
        return list(self.learner.prompts)

    def initial_context(self, batch_size: int) -> torch.Tensor:
        return self.learner.initial_context(batch_size)

    def _reset_context(self, context: torch.nn.Parameter) -> None:
        context.copy_(self.learner.init_ctx.expand_as(context))

    def class_features(self, context: torch.Tensor) -> torch.Tensor:
        with self.section("text_encoder"):
            return self.learner.text_features(context)
