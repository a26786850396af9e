"""A test-time adaptation method: the context the runner builds for it, the base class a method
file subclasses and the spec its registration hook returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

from ..errors import PluginError
from .data import Batch, Predictions
from .interfaces import Amp, CaptioningModel, NullTimer, RewardModel, Timer, VisionLanguageModel
from .protocol import RunProtocol, ViewPolicy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


@dataclass
class MethodContext:
    """Everything a method may use, built once per run by the runner.

    ``cache`` is a per-run dictionary for frozen, derived values (class text features, gallery
    features): compute them once in ``setup``, never per sample. ``dataset`` is the registered
    dataset name, for methods whose official defaults differ per dataset (e.g. C-TPT's λ).
    ``task`` is the run's task kind (a registered task's name). The task fills the optional
    fields it has (``classnames``, ``gallery``, ...) through ``TaskRuntime.context_fields``; any
    other field a task declares arrives in ``task_fields``, so a new task needs no new field here.
    ``timer`` times sections of the method's work: wrap reward-model calls in
    ``with ctx.timer.section("reward"):`` so reports show the reward model's share.
    """

    task: str
    protocol: RunProtocol
    device: torch.device
    amp: Amp
    model: VisionLanguageModel | CaptioningModel
    reward_model: RewardModel | None = None
    classnames: tuple[str, ...] | None = None
    templates: tuple[str, ...] | None = None
    ensemble_templates: tuple[str, ...] | None = None
    gallery: Any = None
    seed: int = 0
    cache: dict[Hashable, Any] = field(default_factory=dict)  # keys: names or tuples (name, model, ...)
    dataset: str | None = None
    task_fields: dict[str, Any] = field(default_factory=dict)
    timer: Timer = field(default_factory=NullTimer)
    stream_length: int | None = None  # samples in the run's stream (OnZeta's step schedule); None: unknown
    _checked_kind: str = field(default="", init=False, repr=False, compare=False)

    @property
    def vlm(self) -> VisionLanguageModel:
        """The policy as a CLIP-style dual encoder (every task's model but a captioner's)."""
        return cast("VisionLanguageModel", self._policy("a CLIP-style dual encoder", "image_features"))

    @property
    def captioner(self) -> CaptioningModel:
        """The policy as an image captioner (:class:`CaptioningModel`, the captioning task's)."""
        return cast("CaptioningModel", self._policy("an image captioner", "caption"))

    def _policy(self, kind: str, member: str) -> object:
        """``model`` once checked to be ``kind``, by duck typing (its ``member``), so that test doubles
        and partial wrappers keep working; a one-line :class:`PluginError` naming the model otherwise
        (raised in the method's ``setup``, where the runner's error names the method)."""
        if self._checked_kind != kind:
            if not callable(getattr(self.model, member, None)):
                raise PluginError(f"this method needs {kind} as its model; the run's model "
                                  f"{getattr(self.model, 'name', self.model)!r} is a {type(self.model).__name__}")
            self._checked_kind = kind
        return self.model


ConfigT = TypeVar("ConfigT")


class Method(ABC, Generic[ConfigT]):
    """A test-time adaptation method: one class, one file.

    Class attributes a subclass sets:

    * ``name`` (what users type), ``version`` (bump on any behaviour change; part of the
      leaderboard key), ``config_cls`` (a dataclass; fields settable as ``-m key=value``),
    * ``tasks`` (task kinds it supports), ``requires`` (``{"reward_model"}`` if it needs one),
    * ``episodic``: True → the runner calls ``reset()`` before each batch of samples and the
      method may adapt several independent samples at once (``max_batch``); False → online:
      state carries over, samples come one at a time in the protocol's order,
    * ``adapts_per`` (online methods): ``"sample"`` — one sample at a time — or ``"batch"`` — the
      stream in consecutive batches of the protocol's ``online_batch``, adapting on each batch before
      predicting it (Tent, SAR, ETA, LAME; ``rlcf_bench.streams``),
    * ``paper``: a citation string shown by ``rlcf-bench ls methods``,
    * ``view_policy``: the views of the method's own paper (:class:`ViewPolicy`), used only with
      ``--protocol-param view_policy=method``; ``None`` (default): the common protocol's views.

    The runner owns the clock: it times ``adapt`` and ``predict`` separately; a method never
    reports its own latency. Reward-model compute happens inside ``adapt`` and is counted.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type] = type(None)
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})
    requires: ClassVar[frozenset[str]] = frozenset()
    episodic: ClassVar[bool] = True
    max_batch: ClassVar[int] = 1
    adapts_per: ClassVar[Literal["sample", "batch"]] = "sample"
    paper: ClassVar[str | None] = None
    view_policy: ClassVar[ViewPolicy | None] = None

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abstractmethod
    def setup(self, ctx: MethodContext) -> None:
        """Build state and cache frozen features. Called once per run."""

    def reset(self) -> None:  # noqa: B027 - optional for stateless methods
        """Restore the initial state (episodic methods; called before every batch)."""

    def adapt(self, batch: Batch) -> None:  # noqa: B027 - zero-shot does nothing
        """Adapt to the batch's samples (timed as adapt)."""

    @abstractmethod
    def predict(self, batch: Batch) -> Predictions:
        """Predict the batch's samples with the adapted state (timed as predict)."""

    def after_predict(self, batch: Batch) -> None:  # noqa: B027
        """Online bookkeeping after a prediction (e.g. a momentum update); timed with adapt."""

    def state_size(self) -> dict[str, int]:
        """Size of what an online method remembers (e.g. ``state_entries``, ``state_bytes``); the
        runner stores it with the run's metrics when the run finishes. Empty for stateless methods."""
        return {}

    @property
    def carries_state(self) -> bool:
        """True when results depend on the samples seen before (online methods, or an episodic
        method whose start point moves, e.g. RLCF's momentum). The runner then feeds one sample
        at a time in the protocol's order and, on resume, replays the stored part of the stream
        to rebuild the state before continuing."""
        return not self.episodic


@dataclass(frozen=True)
class MethodSpec:
    name: str
    version: str
    method_cls: type[Method[Any]]
    config_cls: type
    tasks: frozenset[str]
    requires: frozenset[str] = frozenset()
    episodic: bool = True
    paper: str | None = None
    description: str = ""
    provider: str = ""
    view_policy: ViewPolicy | None = None
    adapts_per: str = "sample"

    @property
    def mode(self) -> str:
        """``episodic``, ``online`` (per sample) or ``batch`` (online, per batch)."""
        return "episodic" if self.episodic else ("batch" if self.adapts_per == "batch" else "online")

    @classmethod
    def from_method(cls, method_cls: type[Method[Any]], description: str = "") -> MethodSpec:
        doc = description or (method_cls.__doc__ or "").strip().splitlines()[0:1]
        return cls(
            name=method_cls.name,
            version=method_cls.version,
            method_cls=method_cls,
            config_cls=method_cls.config_cls,
            tasks=frozenset(method_cls.tasks),
            requires=frozenset(method_cls.requires),
            episodic=method_cls.episodic,
            paper=method_cls.paper,
            description=doc if isinstance(doc, str) else (doc[0] if doc else ""),
            view_policy=method_cls.view_policy,
            adapts_per=method_cls.adapts_per,
        )
