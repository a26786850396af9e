"""Methods that do not learn (Zero, MTA): view features once per sample, no autograd graph."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from ...lazy import LazyModule
from ...types import Batch, Method, MethodContext, Predictions
from ..logits import class_logits_for
from ..prompts import class_text_features
from .features import view_features
from .state import sections

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)


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
        self.logits = class_logits_for(ctx)  # s · cos + b, under the protocol's probability
        self.features: torch.Tensor | None = None

    def reset(self) -> None:
        self.features = None

    def adapt(self, batch: Batch) -> None:
        self.features = view_features(self.ctx, batch, self.section)

    def view_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``s · f(v) Tᵀ + b`` for every view: ``[B, V, C]``."""
        return self.logits.product(features, self.text.t())

    def predict(self, batch: Batch) -> Predictions:
        if self.features is None or self.features.shape[0] != len(batch):
            self.adapt(batch)
        assert self.features is not None
        with torch.inference_mode():
            return self.decide(self.features)

    @abstractmethod
    def decide(self, features: torch.Tensor) -> Predictions:
        """Predictions of a batch from its view features ``[B, V, E]`` (view 0 = centre crop)."""
