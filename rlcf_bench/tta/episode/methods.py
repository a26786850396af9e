"""The base classes of the episodic tuning methods: a method gives its tuner and its objective
(:class:`TuningMethod`); prompt, image-tower and distillation variants."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ...types import Batch, Method, MethodContext, Predictions
from ..logits import probability_of
from ..objectives import DistillationObjective, Objective
from .image_tuner import ImageEncoderTuner
from .loop import run_episode
from .objective_factories import reward_text_features, shared_reward_features
from .state import sections
from .tuners import PromptTuner, Tuner

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


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
    """Tunes a per-sample prompt context; adapts many samples at once (exact, see :mod:`rlcf_bench.tta.episode`)."""

    max_batch: ClassVar[int] = 64

    def make_tuner(self, ctx: MethodContext) -> Tuner:
        return PromptTuner(ctx, self.config)


class ImageTuningMethod(TuningMethod):
    """Tunes the image tower, one copy per sample; adapts several samples at once (exact up to
    float re-association, see :class:`ImageEncoderTuner`)."""

    max_batch: ClassVar[int] = 16

    def make_tuner(self, ctx: MethodContext) -> Tuner:
        return ImageEncoderTuner(ctx, self.config)


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
                                     section=sections(ctx), view_features=shared_reward_features(ctx),
                                     sigmoid=probability_of(ctx.protocol) == "sigmoid")
