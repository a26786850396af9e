"""The shared test-time tuning episode of TPT and RLCF, and the two things they tune.

One episode (``docs/original-code.md#prompt-tuning-episode``,
``docs/original-code.md#image-encoder-tuning``), for a batch of B independent test samples::

    views [B, V, 3, S, S]                           (the protocol's seeded views, view 0 first)
    step 0: logits of all V views under the initial state  →  select the ⌊ρV⌋ most confident
            views once; objective.begin(selected views)      (e.g. reward image features, once)
    steps 0..T-1: zero grads; per-sample losses of the selected views, SUMMED over the batch;
            one (scaled) backward and one AdamW step
    predict: logits of view 0 under the adapted state

A method is only (objective, tuner): :class:`~rlcf_bench.tta.objectives.Objective` says what is
minimised, a :class:`Tuner` says what is tuned and how logits are produced without wasted work:

* :class:`PromptTuner` — a ``[B, n_ctx, D]`` prompt context, one row per sample. The image
  features of all V views are computed once, without gradient; each step runs only the text
  tower (truncated prompts). The step-0 selection logits are the step-0 loss logits (one text
  forward serves both). Prediction reuses the frozen view-0 features. Its base
  :class:`PerSampleTuner` holds all of this for any per-sample tensor mapped to class features
  (TPS's prototype shifts are another one).
* :class:`ImageEncoderTuner` — the image tower's parameters, one copy per sample (the model is
  never written; samples are forwarded at once with ``torch.func.vmap``). Class text features
  are cached once per run. Selection is a no-grad forward of the V views under the frozen
  start point (read from the invocation's shared feature cache when the run has one; then only
  the selected views' pixels are cut); each step forwards/back-propagates only the selected
  views (the original keeps a 64-view graph at step 0 although only 6 rows carry gradient,
  ``docs/original-code.md#cost-of-the-original-code``). AdamW is torch's fused kernel on the CPU
  (:mod:`rlcf_bench.tta.optim`).

Batching is exact: the losses are summed, so each sample's context receives exactly its own
gradient, and AdamW is elementwise. (Under fp16 autocast each sample has its own loss scale and
overflow check, :class:`rlcf_bench.device.AmpHelper`: a step that overflows for one sample is
skipped for that sample only.)

Two more families share this module: :class:`DistillationMethod` (image-encoder tuning towards
the teacher's distribution, KD/DKD/ATKD) and :class:`FrozenViewsMethod` (methods that do not
learn: view features once per sample, no autograd graph; Zero, MTA).

Reset (:class:`ParamSnapshot`) writes back only the tuned tensors in place and clears the
optimizer's state (AdamW then starts from empty moments, as the original's reloaded empty state).
"""

from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ...lazy import LazyModule, no_grad
from ...types import Batch, Method, MethodContext, Predictions, bounded
from ..objectives import (
    CLIPRewardObjective,
    DistillationObjective,
    MarginalEntropyObjective,
    Objective,
    gather_views,
    reward_features_of,
    select_confident,
)
from ..optim import adamw
from ..prompt_learner import PromptLearner, prompt_learner_for
from ..prompts import class_prompts, class_text_features

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)
F: Any = LazyModule("torch.nn.functional")

# --------------------------------------------------------------------------------------------
# Configuration shared by the tuning methods (each method file sets its own defaults)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningConfig:
    """``steps`` AdamW steps per episode (0 → zero-shot with the initial state)."""

    steps: int = bounded(1, ge=0)
    lr: float = bounded(5e-3, gt=0)
    weight_decay: float = bounded(0.01, ge=0)


@dataclass(frozen=True)
class PromptTuningConfig(TuningConfig):
    """``ctx_init``: the words whose embeddings initialise the context (underscores → spaces, as
    the original); ``coop``: path of a CoOp checkpoint whose ``ctx`` replaces that init."""

    ctx_init: str = "a photo of a"
    coop: str | None = None


@dataclass(frozen=True)
class ImageTuningConfig(TuningConfig):
    """``underscore_prompt`` reproduces the original backbone-tuning class prompts
    "a_photo_of_a <class>." (``docs/original-code.md#underscored-prompts``), also used as the reward
    text; ``tune_norm`` restricts
    tuning to normalisation layers (the original's ``--tune_norm 1``, off)."""

    underscore_prompt: bool = False
    tune_norm: bool = False


@dataclass(frozen=True)
class RewardConfig:
    """RLCF's reward options: ``sample_k`` top-K classes per view; ``baseline`` ``view`` (mean of
    the K rewards of the view), ``sample`` (mean over the sample's N·K pairs) or ``none``;
    ``reward_std`` divides by the std (the original's ``reward_amplify``); ``entropy_reg`` adds
    ``w·`` TPT's entropy (the original's ``--min_entropy_reg``, 0.1 when on)."""

    sample_k: int = bounded(3, ge=1)
    baseline: str = "view"
    reward_std: bool = False
    entropy_reg: float = bounded(0.0, ge=0)


# --------------------------------------------------------------------------------------------
# Snapshots and sections
# --------------------------------------------------------------------------------------------


class ParamSnapshot:
    """The initial values of a list of tuned parameters; :meth:`restore` copies them back in
    place (bit-exact, no re-allocation, nothing else of the model touched)."""

    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self.params = list(params)
        self.saved = [p.detach().clone() for p in self.params]

    @no_grad
    def restore(self, values: Sequence[torch.Tensor] | None = None) -> None:
        for p, v in zip(self.params, values if values is not None else self.saved):
            p.copy_(v)


class MomentumStart:
    """The momentum start point of the paper's "-M" variants (``docs/original-code.md#momentum-start-point``),
    shared by image-encoder tuning and retrieval.

    After each sample the adapted tensors are folded into an EMA (``mu``); every ``freq`` samples
    the start point of the next episodes becomes ``(1−w)·θ_clip + w·EMA``, where θ_clip are the
    ``initial`` values. (The original averages the tuned module's state dict; a CLIP tower's state
    is exactly its parameters, so averaging the tuned parameters is the same.)
    """

    def __init__(self, initial: Sequence[torch.Tensor], *, mu: float, freq: int, w: float) -> None:
        self.initial = [t.detach() for t in initial]
        self.mu, self.freq, self.w = mu, int(freq), float(w)
        self.ema = [t.clone() for t in self.initial]
        self.start: list[torch.Tensor] | None = None  # None → θ_clip
        self.counter = 0

    @no_grad
    def update(self, adapted: Sequence[torch.Tensor]) -> None:
        """After a sample is predicted: fold its adapted tensors into the EMA."""
        for m, p in zip(self.ema, adapted):
            m.mul_(self.mu).add_(p.detach(), alpha=1.0 - self.mu)
        self.counter += 1
        if self.counter >= self.freq:
            self.counter = 0
            w = self.w
            self.start = [c * (1.0 - w) + m * w for c, m in zip(self.initial, self.ema)]


@contextlib.contextmanager
def trainable(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Switch ``requires_grad`` on for the duration of an episode only, so that a shared model
    is left frozen for the other methods of the session."""
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None


def sections(ctx: MethodContext) -> Any:
    """``section(name)`` context managers for the optional fine-grained profile.

    ``reward`` always goes to the runner's timer (reports show its share). The other sections
    (views, image_encoder, text_encoder, backward+optimizer — the backward pass of
    the tuned encoder is in the last one) are recorded only when a ``profile_timer``
    (a :class:`rlcf_bench.device.SectionTimer`) is in ``ctx.cache`` — the benchmarks set one — so
    that normal runs pay no extra device synchronisations.
    """
    timer = ctx.timer
    profile = ctx.cache.get("profile_timer")

    def section(name: str) -> contextlib.AbstractContextManager[Any]:
        if name == "reward":
            stack = contextlib.ExitStack()
            for t in (timer, profile):
                if t is not None:
                    stack.enter_context(t.section(name))
            return stack
        return profile.section(name) if profile is not None else contextlib.nullcontext()

    return section


# --------------------------------------------------------------------------------------------
# Tuners: what is tuned, and how logits are produced
# --------------------------------------------------------------------------------------------


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
        return self.scale * torch.einsum("bve,bce->bvc", feats, text)

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
        return self.scale * torch.einsum("be,bce->bc", feats, text)


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


def _image_encoder(vlm: Any) -> torch.nn.Module:
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
        self.encoder = _image_encoder(ctx.vlm)
        self.state: list[torch.nn.Parameter] | None = None  # [B, *shape] per tuned tensor
        self._prompts = class_prompts(ctx.classnames or (), (ctx.templates or ("a photo of a {}.",))[0],
                                      underscore_prompt=config.underscore_prompt)
        self.text = class_text_features(ctx, underscore_prompt=config.underscore_prompt)  # [C, E], once
        self.scale = float(ctx.vlm.logit_scale)
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
        return self.scale * feats @ self.text.t()

    def step_logits(self, selected: torch.Tensor, selection_logits: torch.Tensor | None = None) -> torch.Tensor:
        if self.selected_pixels is None:
            assert self.views is not None, "step_logits() needs the episode's views or use_selected_views()"
            self.selected_pixels = gather_views(self.views, selected)
        return self.scale * self._encode_each(self.selected_pixels) @ self.text.t()

    @no_grad
    def predict_logits(self, batch: Batch) -> torch.Tensor:
        with self.ctx.amp.autocast():
            if self.episode_size != len(batch):  # no episode ran: θ_clip
                feats = self._encode(batch.images)
            else:
                assert batch.images is not None
                feats = self._encode_each(batch.images.unsqueeze(1))[:, 0]
            return self.scale * feats @ self.text.t()

    def momentum_update(self) -> None:
        """After a sample is predicted: fold its adapted weights into the momentum start point
        (:class:`MomentumStart`)."""
        if self.momentum is not None and self.state is not None:
            self.momentum.update([s[0] for s in self.state])


# --------------------------------------------------------------------------------------------
# The episode and the method base classes
# --------------------------------------------------------------------------------------------


def needs_pixels(objective: Objective) -> bool:
    """Whether ``objective.begin`` reads the selected views' pixels (it overrides the no-op)."""
    return type(objective).begin is not Objective.begin


def run_episode(tuner: Tuner, objective: Objective, views: torch.Tensor | None, *, n_selected: int, steps: int,
                amp: Any, section: Any = None,
                select_views: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor | None:
    """One test-time tuning episode (module docstring). Returns the selected view indices.

    ``views`` may be None when the tuner preloaded the view features (:meth:`Tuner.preload`); the
    pixels of the selected views, if the objective (:func:`needs_pixels`) or the tuner
    (:attr:`Tuner.reads_selected_views`) reads them, then come from ``select_views`` (indices
    ``[B, N]`` → ``[B, N, 3, S, S]``, e.g. :meth:`rlcf_bench.types.Batch.select_views`, which cuts
    only those views)."""
    section = section or (lambda _name: contextlib.nullcontext())
    if steps <= 0:
        return None
    tuner.begin(views)
    selected: torch.Tensor | None = None
    optimizer = tuner.optimizer
    assert optimizer is not None
    with tuner.episode():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with amp.autocast():
                if selected is None:
                    all_logits = tuner.selection_logits()
                    selected = select_confident(all_logits, n_selected)
                    pixels = _selected_pixels(tuner, objective, views, selected, select_views, section)
                    if pixels is not None and tuner.reads_selected_views:
                        tuner.use_selected_views(pixels)
                    objective.begin(pixels)
                    logits = tuner.step_logits(selected, all_logits if all_logits.requires_grad else None)
                else:
                    logits = tuner.step_logits(selected)
                # per-sample losses [B]: summed by backward_step (exact per-sample gradients), each
                # scaled by its own sample's loss scale under amp-fp16 (rlcf_bench.device.AmpHelper)
                loss = objective.loss(logits)
            with section("backward+optimizer"):
                amp.backward_step(loss, optimizer)
    tuner.end()
    return selected


def _selected_pixels(tuner: Tuner, objective: Objective, views: torch.Tensor | None, selected: torch.Tensor,
                     select_views: Callable[[torch.Tensor], torch.Tensor] | None, section: Any) -> torch.Tensor | None:
    """The selected views' pixels when the tuner or the objective reads them, else None."""
    if not (tuner.reads_selected_views or needs_pixels(objective)):
        return None
    if views is not None:
        return gather_views(views, selected)
    if select_views is None:
        raise ValueError("this episode reads the selected views' pixels: give run_episode views or select_views")
    with section("views"):
        return select_views(selected)


class TuningMethod(Method[Any]):
    """Base of the episodic tuning methods: subclasses give ``make_tuner`` and ``make_objective``.

    Per batch the runner calls ``reset`` → ``adapt`` (views, the episode) → ``predict`` (view 0).
    """

    episodic: ClassVar[bool] = True

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.section = sections(ctx)
        self.tuner = self.make_tuner(ctx)
        self.objective = self.make_objective(ctx)
        self.last_selected: torch.Tensor | None = None

    @abstractmethod
    def make_tuner(self, ctx: MethodContext) -> Tuner: ...

    @abstractmethod
    def make_objective(self, ctx: MethodContext) -> Objective: ...

    def reset(self) -> None:
        tuner = getattr(self, "tuner", None)
        if tuner is not None:  # nothing to restore when setup failed before building the tuner
            tuner.reset()

    def adapt(self, batch: Batch) -> None:
        if self.config.steps <= 0:
            return
        views = None
        if not self.tuner.preload(batch):  # else the selected views alone are cut when the episode needs them
            with self.section("views"):
                views = batch.views
        self.last_selected = run_episode(self.tuner, self.objective, views, n_selected=self.ctx.protocol.n_selected,
                                         steps=self.config.steps, amp=self.ctx.amp, section=self.section,
                                         select_views=batch.select_views)

    def predict(self, batch: Batch) -> Predictions:
        return Predictions(logits=self.tuner.predict_logits(batch).float())


class PromptTuningMethod(TuningMethod):
    """Tunes a per-sample prompt context; adapts many samples at once (exact, see module doc)."""

    max_batch: ClassVar[int] = 64

    def make_tuner(self, ctx: MethodContext) -> Tuner:
        return PromptTuner(ctx, self.config)


class ImageTuningMethod(TuningMethod):
    """Tunes the image tower, one copy per sample; adapts several samples at once (exact up to
    float re-association, see :class:`ImageEncoderTuner`)."""

    max_batch: ClassVar[int] = 16

    def make_tuner(self, ctx: MethodContext) -> Tuner:
        return ImageEncoderTuner(ctx, self.config)


@dataclass(frozen=True)
class DistillationConfig(ImageTuningConfig):
    """The RLCF paper's distillation baselines (``kd-tune.sh``): 3 AdamW steps, lr 1e-5, wd 5e-4."""

    steps: int = 3
    lr: float = 1e-5
    weight_decay: float = 5e-4


class DistillationMethod(ImageTuningMethod):
    """Image-encoder tuning that distils the reward model's class distribution on the confident
    views (the teacher, ``--reward-model``) into the policy; subclasses give only the loss.

    The episode is :func:`run_episode` with :class:`ImageEncoderTuner`, as RLCF's image variant:
    selection by the policy, teacher logits of the selected views once per episode
    (:class:`~rlcf_bench.tta.objectives.DistillationObjective`, timed as ``reward``), the teacher's
    class texts = the policy's hand-crafted prompts, prediction on view 0.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"reward_model"})

    @abstractmethod
    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Per-sample losses ``[B]`` from student and teacher logits ``[B, N, C]`` (fp32)."""

    def make_objective(self, ctx: MethodContext) -> Objective:
        prompts = self.tuner.hand_crafted_prompts
        assert ctx.reward_model is not None, "this method needs --reward-model"
        return DistillationObjective(ctx.reward_model, reward_text_features(ctx, prompts), self.distill_loss,
                                     section=sections(ctx), view_features=shared_reward_features(ctx))


# --------------------------------------------------------------------------------------------
# Methods that do not learn: view features once, no autograd graph
# --------------------------------------------------------------------------------------------


def has_view_cache(ctx: MethodContext) -> bool:
    """Whether the run shares the invocation's frozen view-feature cache (``rlcf_bench.view_cache``)."""
    from ...view_cache import CONTEXT_KEY

    return ctx.cache.get(CONTEXT_KEY) is not None


def view_features(ctx: MethodContext, batch: Batch, section: Any = None) -> torch.Tensor:
    """L2-normalised fp32 features ``[B, V, E]`` of the batch's protocol views under the frozen
    policy, no autograd graph: read from the invocation's shared cache when the run has one (each
    sample computed once, its cost credited to every run that reuses it: ``rlcf_bench.view_cache``),
    else generated and encoded here (:func:`encode_views`). Only for a frozen image tower."""
    from ...view_cache import CONTEXT_KEY

    shared = ctx.cache.get(CONTEXT_KEY)
    if shared is not None:
        return shared(ctx, batch)
    section = section or (lambda _name: contextlib.nullcontext())
    with section("views"):
        views = batch.views
    return encode_views(ctx, views, section)


def encode_views(ctx: MethodContext, views: torch.Tensor, section: Any = None) -> torch.Tensor:
    """L2-normalised fp32 features ``[B, V, E]`` of views ``[B, V, 3, S, S]`` under the frozen
    policy, in inference mode (no autograd graph is ever built)."""
    section = section or (lambda _name: contextlib.nullcontext())
    b, v = views.shape[:2]
    with torch.inference_mode(), ctx.amp.autocast(), section("image_encoder"):
        return ctx.vlm.image_features(views.flatten(0, 1)).view(b, v, -1)


class FrozenViewsMethod(Method[Any]):
    """Base of the episodic methods that do not learn (Zero, MTA): ``adapt`` encodes the protocol's
    views once per sample (:func:`encode_views`), ``predict`` hands the features ``[B, V, E]`` to
    :meth:`decide` in inference mode. Class text features are cached once per run. Samples are
    independent, so a batch of them is decided at once (results do not depend on the batch size).
    """

    episodic: ClassVar[bool] = True
    max_batch: ClassVar[int] = 64

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.section = sections(ctx)
        self.text = class_text_features(ctx)  # [C, E], once per run
        self.scale = float(ctx.vlm.logit_scale)
        self.features: torch.Tensor | None = None

    def reset(self) -> None:
        self.features = None

    def adapt(self, batch: Batch) -> None:
        self.features = view_features(self.ctx, batch, self.section)

    def view_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``s · f(v) Tᵀ`` for every view: ``[B, V, C]``."""
        return self.scale * features @ self.text.t()

    def predict(self, batch: Batch) -> Predictions:
        if self.features is None or self.features.shape[0] != len(batch):
            self.adapt(batch)
        assert self.features is not None
        with torch.inference_mode():
            return self.decide(self.features)

    @abstractmethod
    def decide(self, features: torch.Tensor) -> Predictions:
        """Predictions of a batch from its view features ``[B, V, E]`` (view 0 = centre crop)."""


# --------------------------------------------------------------------------------------------
# Objective factories
# --------------------------------------------------------------------------------------------


def entropy_objective(_ctx: MethodContext) -> Objective:
    return MarginalEntropyObjective()


def reward_text_features(ctx: MethodContext, prompts: Sequence[str]) -> list[torch.Tensor]:
    """The reward model's per-member features of the class prompts, computed once per run."""
    assert ctx.reward_model is not None, "this method needs --reward-model"
    key = ("reward_text_features", ctx.reward_model.name, tuple(prompts))
    if key not in ctx.cache:
        with sections(ctx)("reward"):
            ctx.cache[key] = [f.to(ctx.device) for f in ctx.reward_model.text_features(list(prompts))]
    return ctx.cache[key]  # type: ignore[no-any-return]


def shared_reward_features(ctx: MethodContext) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The reward model's features of views ``[B, N, 3, S, S]``, shared by the invocation's runs
    (:func:`rlcf_bench.view_cache.reward_view_features`; computed here without that cache)."""
    from ...view_cache import reward_view_features

    reward_model = ctx.reward_model
    assert reward_model is not None, "this method needs --reward-model"
    compute = reward_features_of(reward_model)
    return lambda views: reward_view_features(ctx, reward_model, views, compute)


def clip_reward_objective(ctx: MethodContext, prompts: Sequence[str], config: RewardConfig) -> Objective:
    """RLCF's objective with the reward text = the policy's hand-crafted class prompts."""
    if config.sample_k < 1:
        raise ValueError("sample_k must be ≥ 1")
    if config.baseline not in {"view", "sample", "none"}:
        raise ValueError(f"baseline={config.baseline!r}: expected view, sample or none")
    assert ctx.reward_model is not None, "this method needs --reward-model"
    return CLIPRewardObjective(
        ctx.reward_model, reward_text_features(ctx, prompts), k=min(config.sample_k, len(prompts)),
        baseline=config.baseline, normalise_std=config.reward_std, entropy_reg=config.entropy_reg,
        section=sections(ctx), view_features=shared_reward_features(ctx),
    )
