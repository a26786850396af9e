"""Public types for plugin authors.

Everything a plugin returns from a registration hook is a frozen *spec*; everything the runner
hands a method at run time is a plain typed object. Hooks announce components; the objects do the
work (see ``hookspecs.py``).

This module must stay cheap to import: no torch at module level (``rlcf-bench ls`` is instant).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar, cast, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from .task import TaskRuntime


def stable_hash(obj: Any, length: int = 16) -> str:
    """SHA-256 of the canonical JSON form of ``obj`` (sorted keys), truncated."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# --------------------------------------------------------------------------------------------
# The protocol: owned by the task, frozen and hashed; a method cannot change it.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunProtocol:
    """What every method in a comparison shares.

    ``n_views``/``augmix``/``selection_ratio`` define the test-time views of a classification
    sample (view 0 is always the plain centre crop). ``order`` is ``fixed`` (dataset order) or
    ``shuffled`` (a permutation seeded by ``seed``) so that online methods see the same stream.
    ``precision`` is ``fp32`` (TF32 off), ``tf32`` (CUDA: TensorFloat-32 matmuls and
    convolutions), ``amp-fp16`` (autocast + per-sample loss scaling, the paper's setting) or
    ``amp-bf16``; ``auto`` resolves to ``amp-fp16`` on CUDA and ``fp32`` on CPU before hashing.
    ``limit`` caps the number of samples (a limited run is a different protocol and is never
    ranked with a full one). ``params`` holds task-specific extras (e.g. retrieval direction).

    How many samples are adapted at once is an *execution* detail, not part of the protocol.
    """

    seed: int = 0
    n_views: int = 64
    augmix: bool = False
    selection_ratio: float = 0.1
    order: Literal["fixed", "shuffled"] = "fixed"
    precision: str = "auto"
    limit: int | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def replace(self, **changes: Any) -> RunProtocol:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["params"] = dict(self.params)
        return d

    @property
    def hash(self) -> str:
        return stable_hash(self.as_dict())

    @property
    def n_selected(self) -> int:
        """Number of confident views kept: ``floor(ratio * n_views)``, at least one."""
        return max(1, int(self.selection_ratio * self.n_views))


VIEW_POLICY_PARAM = "view_policy"
VIEW_POLICIES = ("common", "method")


@dataclass(frozen=True)
class ViewPolicy:
    """The test-time views a method's paper used, where they differ from the common protocol.

    A method declares one as its ``view_policy`` class attribute; it is applied only when the
    user asks for it (``--protocol-param view_policy=method``), never by default: by default every
    method sees the common protocol's views. ``None`` keeps the common protocol's value.

    * ``n_views`` — views per sample (view 0 included);
    * ``augmix`` — AugMix on (True) or off (False) on every dataset;
    * ``augmix_on`` — datasets with AugMix whatever ``augmix`` says (e.g. C-TPT: the ImageNet
      variants, but not ImageNet itself).
    """

    n_views: int | None = None
    augmix: bool | None = None
    augmix_on: frozenset[str] = frozenset()

    def apply(self, protocol: RunProtocol, dataset: str) -> RunProtocol:
        """``protocol`` with this policy's views for ``dataset``; ``view_policy=method`` recorded in
        its params (so the hash differs from the common protocol's even where the views agree)."""
        augmix = protocol.augmix if self.augmix is None else self.augmix
        params = {**dict(protocol.params), VIEW_POLICY_PARAM: "method"}
        return protocol.replace(n_views=protocol.n_views if self.n_views is None else self.n_views,
                                augmix=augmix or dataset in self.augmix_on, params=tuple(sorted(params.items())))


def check_view_policy(choice: Any) -> str:
    """The ``view_policy`` protocol parameter, validated: ``common`` or ``method``."""
    if choice not in VIEW_POLICIES:
        raise ValueError(f"view_policy={choice!r}: expected one of {', '.join(VIEW_POLICIES)}")
    return str(choice)


def resolve_view_policy(protocol: RunProtocol, policy: ViewPolicy | None, dataset: str) -> RunProtocol:
    """The protocol a run uses, before it is hashed.

    ``view_policy=common`` (the default) and methods that declare no policy of their own get the
    common protocol unchanged, without a ``view_policy`` parameter (so their hash, and the run they
    share with the common protocol, do not change). ``view_policy=method`` with a declared policy
    gets :meth:`ViewPolicy.apply`.
    """
    choice = check_view_policy(protocol.param(VIEW_POLICY_PARAM, "common"))
    common = protocol.replace(params=tuple((k, v) for k, v in protocol.params if k != VIEW_POLICY_PARAM))
    if choice == "method" and policy is not None:
        return policy.apply(common, dataset)
    return common


# --------------------------------------------------------------------------------------------
# Data flowing through a run
# --------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A group of independent test samples handed to a method at once.

    ``images`` is ``[B, 3, S, S]``, normalised for the policy model (the plain centre crop,
    "view 0"). ``views`` is a lazy provider of the protocol's augmented views ``[B, V, 3, S, S]``
    (view 0 first): they are generated on first access, on the device, so a method that does not
    use them never pays for them and one that does pays inside its own timed ``adapt``. A task
    that generates them per sample gives ``row_view_fn`` (row → ``[V, 3, S, S]``) instead of
    ``view_fn``; :meth:`sample_views` then generates one sample's views alone (what the shared
    view-feature cache computes on a miss, :mod:`rlcf_bench.view_cache`). A task that can cut
    some of a sample's views without the others also gives ``row_subset_view_fn`` (row, view
    indices → ``[N, 3, S, S]``, the same bits as those rows of the full set): :meth:`select_views`
    then serves a method that reads only its confident views without generating all V.
    ``texts`` carries text queries (retrieval text-to-image). ``targets`` are never read by a
    method: they are there for the task's scoring only.
    """

    sample_ids: tuple[str, ...]
    indices: tuple[int, ...]
    images: torch.Tensor | None = None
    texts: tuple[str, ...] | None = None
    targets: Any = None
    view_fn: Callable[[], torch.Tensor] | None = field(default=None, repr=False)
    row_view_fn: Callable[[int], torch.Tensor] | None = field(default=None, repr=False)
    row_subset_view_fn: Callable[[int, Sequence[int]], torch.Tensor] | None = field(default=None, repr=False)
    _views: torch.Tensor | None = field(default=None, repr=False)
    _rows: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def views(self) -> torch.Tensor:
        if self._views is None:
            if self.row_view_fn is not None:
                import torch

                self._views = torch.stack([self.sample_views(row) for row in range(len(self))])
                self._rows.clear()
            elif self.view_fn is None:
                raise RuntimeError("this task provides no augmented views")
            else:
                self._views = self.view_fn()
        return self._views

    def sample_views(self, row: int) -> torch.Tensor:
        """The views ``[V, 3, S, S]`` of one sample of the batch (generated alone when the task
        gives ``row_view_fn`` and the batch's views were not generated yet)."""
        if self._views is not None or self.row_view_fn is None:
            return self.views[row]
        if row not in self._rows:
            self._rows[row] = self.row_view_fn(row)
        return self._rows[row]

    def select_views(self, indices: torch.Tensor) -> torch.Tensor:
        """The views ``indices`` ``[B, N]`` of each sample: ``[B, N, 3, S, S]``, equal to
        ``views[b, indices[b]]``; cut alone when the task can (``row_subset_view_fn``) and the
        full set was not generated yet."""
        import torch

        if self._views is not None or self.row_subset_view_fn is None:
            rows = torch.arange(len(self), device=self.views.device).unsqueeze(1)
            return self.views[rows, indices.to(self.views.device)]
        fn = self.row_subset_view_fn
        return torch.stack([self._rows[row][idx.to(self._rows[row].device)] if row in self._rows
                            else fn(row, [int(k) for k in idx]) for row, idx in enumerate(indices)])


@dataclass
class Predictions:
    """What ``Method.predict`` returns for a batch.

    Classification: ``logits`` ``[B, C]`` (probabilities for ECE are ``softmax(logits)``; a
    method whose output is not a distribution, e.g. a vote, sets ``probs`` itself).
    Retrieval: ``scores`` ``[B, N]`` over the gallery. Captioning: ``captions``.
    ``extras`` are per-sample JSON-serialisable values stored with the sample row.
    """

    logits: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    captions: list[str] | None = None
    extras: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class SampleRecord:
    """One stored per-sample result (one row of ``sample_results``)."""

    sample_id: str
    index: int
    prediction: Any
    target: Any
    score: float | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricValue:
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


# --------------------------------------------------------------------------------------------
# Runtime interfaces (Protocols: wrapped, never subclassed)
# --------------------------------------------------------------------------------------------


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
    whose image embedding conditions a text decoder (ClipCap, CapDec)."""

    name: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip: VisionLanguageModel

    @property
    def kind(self) -> str: ...


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
    _checked_vlm: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def vlm(self) -> VisionLanguageModel:
        """The policy as a CLIP-style dual encoder (every task's model but a captioner's);
        a ``TypeError`` naming the model otherwise. Checked once per context, by duck typing
        (its ``image_features``), so test doubles and partial wrappers keep working."""
        if not self._checked_vlm:
            if not callable(getattr(self.model, "image_features", None)):
                raise TypeError(f"this method needs a CLIP-style dual encoder; the run's model "
                                f"{getattr(self.model, 'name', self.model)!r} is a {type(self.model).__name__}")
            self._checked_vlm = True
        return cast("VisionLanguageModel", self.model)


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


# --------------------------------------------------------------------------------------------
# Specs returned by registration hooks
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset. ``build(root, **params)`` returns a dataset object for ``task_kinds``.

    ``root_name`` is the folder expected under the data root (``None`` for generated data).
    ``check(root, **params)`` returns a :class:`LayoutReport` without loading images.
    """

    name: str
    version: str
    task_kinds: frozenset[str]
    build: Callable[..., Any]
    check: Callable[..., LayoutReport] | None = None
    root_name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    augmix: bool = False
    provider: str = ""
    #: Declared values of ``params`` (ranges, choices); a parameter without a rule is read as its
    #: default's type. ``--data-param`` values are checked against them before anything runs.
    param_rules: Mapping[str, ParamRule] = field(default_factory=dict)


IntervalMethod = Literal["wilson", "bootstrap", "none"]
PairedTestName = Literal["mcnemar-exact", "paired-bootstrap"]


@dataclass(frozen=True)
class MetricSpec:
    """How reports read one metric a task emits.

    ``label``: a reader's name for it where the name alone is cryptic (``"ECE (expected
    calibration error)"``). ``interval``: how the task computes the 95 % interval it stores
    (``wilson``, ``bootstrap``; ``none``: it stores none and the report must not invent one, e.g.
    a corpus-level score). ``sample_group``: the metric is computed on the samples whose id starts
    with ``"<group>:"`` only (retrieval's ``t2i_r1``: the text queries), so its paired tests and
    intervals use those samples' scores only (:attr:`SampleScore.groups`).
    """

    name: str
    label: str = ""
    higher_is_better: bool = True
    interval: IntervalMethod = "none"
    sample_group: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SampleScore:
    """What a task stores as the per-sample ``SampleRecord.score`` and how two runs are compared
    on it (reports match the samples of two runs by id and run ``paired_test`` on these scores).

    ``label``: what the score is, as a comparison names its mean (``"accuracy"``).
    ``percent``: the score is a 0/1 hit whose mean the metrics report ×100 (then differences are
    percentage points); otherwise the metrics are in the score's own unit.
    ``paired_test``: ``mcnemar-exact`` (exact McNemar, only used while every score is 0 or 1;
    else the paired bootstrap) or ``paired-bootstrap`` (of the mean difference).
    ``groups``: sample-id prefixes (``"i2t"`` for ids ``"i2t:..."``) naming sub-populations a
    metric may be computed on (:attr:`MetricSpec.sample_group`); a store whose ids carry none of
    them uses all scores.
    """

    label: str = "mean per-sample score"
    percent: bool = False
    paired_test: PairedTestName = "paired-bootstrap"
    groups: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["groups"] = list(self.groups)
        return d


@dataclass(frozen=True)
class TaskMetrics:
    """A task's metric metadata: everything a report needs to rank, test and label its runs.

    ``metrics``: in display order (undeclared metrics follow alphabetically). ``primary``: the
    ranking metric, then the ones that stand in for it where a run lacks it (a one-direction
    retrieval run has no ``t2i_r1``). ``order``: where the task's sections come in a report
    (lower first, then by name). ``n_note``: what a report's ``n`` counts where it is not every
    sample of the run (retrieval: the queries of the primary metric's direction).
    """

    metrics: tuple[MetricSpec, ...] = ()
    primary: tuple[str, ...] = ()
    score: SampleScore = SampleScore()
    order: int = 100
    n_note: str = ""

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"task metrics: duplicate names in {names}")

    def metric(self, name: str) -> MetricSpec:
        """The declared metric ``name``, or an undeclared one's defaults (higher is better)."""
        return next((m for m in self.metrics if m.name == name), MetricSpec(name))

    def sort_key(self, name: str) -> tuple[int, str]:
        """Display order of a metric: its declared position, then undeclared ones by name."""
        names = [m.name for m in self.metrics]
        return (names.index(name), "") if name in names else (len(names), name)

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": [m.as_dict() for m in self.metrics], "primary": list(self.primary),
                "score": self.score.as_dict(), "order": self.order, "n_note": self.n_note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskMetrics:
        score = dict(d.get("score") or {})
        score["groups"] = tuple(score.get("groups") or ())
        return cls(metrics=tuple(MetricSpec(**m) for m in d.get("metrics") or ()),
                   primary=tuple(d.get("primary") or ()), score=SampleScore(**score), order=int(d.get("order", 100)),
                   n_note=str(d.get("n_note") or ""))


@dataclass(frozen=True)
class TaskSpec:
    """A task: its kind (the name datasets and methods declare support for), default protocol,
    the factory of its runtime object and its metric metadata (how reports read its results)."""

    name: str
    version: str
    kind: str
    build: Callable[[Any, RunProtocol], TaskRuntime]
    protocol: RunProtocol = RunProtocol()
    metrics: TaskMetrics = TaskMetrics()
    description: str = ""
    provider: str = ""
    #: The task's own ``--protocol-param`` keys (kept in the protocol's ``params``) and their
    #: valid values; a key no task, and not the host, declares is refused before anything runs.
    params: Mapping[str, ParamRule] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A model name users can type. ``load(name, device)`` builds it lazily.

    ``accepts`` lets a backend claim a family of names (``ARCH@TAG``, ``ARCH@/path/file.pt``).
    ``check(name)``, optional, raises with a clear message when ``name`` cannot be loaded here
    (weights missing, ...) without building the model: ``rlcf-bench run`` asks it for every
    planned model before the first run (:mod:`rlcf_bench.preflight`).
    """

    name: str
    version: str
    load: Callable[..., Any]
    accepts: Callable[[str], bool] | None = None
    kind: Literal["vlm", "captioner"] = "vlm"
    description: str = ""
    provider: str = ""
    check: Callable[[str], Any] | None = None


class RewardBuilder(Protocol):
    """Builds a reward model from its loaded members (model, weight); images will arrive
    normalised for the policy (``policy_mean``/``policy_std``)."""

    def __call__(self, members: Sequence[tuple[Any, float]], *, name: str, policy_mean: Sequence[float],
                 policy_std: Sequence[float]) -> RewardModel: ...


@dataclass(frozen=True)
class RewardModelSpec:
    """A reward model: ``members`` are (model name, weight), ``build`` makes the reward object
    from the loaded members (:class:`RewardBuilder`).

    ``accepts`` lets a spec claim a family of names: the ensembles a name spells
    (``model`` or ``m1*w1+m2*w2``), whose members come from the name
    (:func:`rlcf_bench.session.parse_members`).
    """

    name: str
    version: str
    members: tuple[tuple[str, float], ...] = ()
    description: str = ""
    provider: str = ""
    build: RewardBuilder | None = None
    accepts: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class RunRequest:
    """One run to execute: what a suite lists, the planner narrows and the runner runs.

    ``method_options`` are ``-m key=value`` pairs (strings or typed values) for the implementation
    of ``method`` that serves the task; ``reward_model`` is used only by methods that need one.
    """

    task: str
    dataset: str
    method: str
    model: str
    reward_model: str | None = None
    method_options: tuple[tuple[str, Any], ...] = ()
    dataset_params: tuple[tuple[str, Any], ...] = ()
    protocol_overrides: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        reward = f" reward={self.reward_model}" if self.reward_model else ""
        opts = "".join(f" {k}={v}" for k, v in self.method_options)
        limit = dict(self.protocol_overrides).get("limit")
        shown = dict(self.dataset_params)
        if limit is not None and isinstance(shown.get("n"), int):
            shown["n"] = min(int(limit), shown["n"])  # the samples the run scores, not the dataset's size
        elif limit is not None:
            shown["limit"] = limit
        params = "".join(f" {k}={v}" for k, v in shown.items())
        order = dict(self.protocol_overrides).get("order_seed")
        stream = f" order_seed={order}" if order is not None else ""
        return f"{self.task}/{self.dataset}{params} {self.method}{opts}{stream} model={self.model}{reward}"


#: A suite's entry is a run request (the name suites have always used).
SuiteRun = RunRequest


@dataclass(frozen=True)
class DatasetAverage:
    """A named group of datasets whose primary metric a report averages (the paper's "OOD avg").

    Declared by the suite that runs them (:attr:`SuiteSpec.averages`), never listed in the
    report: a method gets an average row only where it has comparable runs on every dataset of
    the group, with a paired test pooled over all their samples (:mod:`rlcf_bench.report.averages`).
    ``task_kind``: the task whose runs are averaged (empty: every task the datasets were run with).
    """

    name: str
    datasets: tuple[str, ...]
    task_kind: str = ""

    def covers(self, task_kind: str) -> bool:
        return not self.task_kind or self.task_kind == task_kind

    def __post_init__(self) -> None:
        if not self.name or len(self.datasets) < 2 or len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"average {self.name!r}: expected a name and two or more distinct datasets, "
                             f"got {self.datasets!r}")


@dataclass(frozen=True)
class MethodFamily:
    """Methods that share a baseline (e.g. RLCF and C-TPT on the prompt against TPT on the
    prompt): each member is compared with ``baseline`` in every report. The paper layout lists
    a family's rows together, its baseline first."""

    name: str
    baseline: str
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.baseline or self.baseline in self.members:
            raise ValueError(f"family {self.name!r}: expected a name, a baseline and members other than the "
                             f"baseline, got baseline {self.baseline!r} and members {self.members!r}")


@dataclass(frozen=True)
class Comparisons:
    """Which paired comparisons a suite's reports make (the core names no method).

    ``reference``: the method every other method is compared with (e.g. zero-shot), and whose
    run with a method's reward model is that method's reward-model reference. ``families``: each
    member against its family's baseline. ``pairs``: any further (method, against) pairs (what
    ``rlcf-bench report --compare A B`` adds). Each (reference or baseline, task, setting) is one
    family of tests for the multiplicity adjustment (docs/statistics.md)."""

    reference: str = ""
    families: tuple[MethodFamily, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def baseline_of(self, method: str) -> str | None:
        """The baseline of the first family ``method`` is a member of (None: none)."""
        return next((f.baseline for f in self.families if method in f.members), None)

    def family_of(self, method: str) -> str | None:
        """The family ``method`` belongs to, as its member or its baseline."""
        return next((f.name for f in self.families if method in f.members or method == f.baseline), None)

    def merged(self, other: Comparisons) -> Comparisons:
        """This declaration with ``other``'s added (the first reference wins; families and pairs
        are kept once each)."""
        return Comparisons(self.reference or other.reference,
                           tuple(dict.fromkeys((*self.families, *other.families))),
                           tuple(dict.fromkeys((*self.pairs, *other.pairs))))


#: No comparisons declared (the default of a suite, and of a report built without plugins).
NO_COMPARISONS = Comparisons()


@dataclass(frozen=True)
class SuiteSpec:
    """A plain named list of runs. ``expand(methods)`` yields them; it never aggregates.
    ``orders``: stream orders each online method is run with (``--orders`` overrides).
    ``averages``: the dataset groups whose average the reports show (e.g. the OOD average).
    ``comparisons``: the reference method and method families the reports compare with.
    ``seeds``: protocol (view) seeds each run is made with (``--seeds`` overrides).
    ``shared``: a suite several plugins contribute to (e.g. ``protocols``): the parts registered
    under one name, all ``shared``, make one suite (:meth:`merge`), so no list names them."""

    name: str
    description: str
    runs: Callable[..., Sequence[SuiteRun]]
    provider: str = ""
    orders: int = 1
    averages: tuple[DatasetAverage, ...] = ()
    comparisons: Comparisons = NO_COMPARISONS
    seeds: int = 1
    shared: bool = False

    def merge(self, other: SuiteSpec) -> SuiteSpec:
        """This shared suite with ``other``'s part added: runs of both (in plugin order), the larger
        ``orders``/``seeds``, both parts' averages and comparisons."""
        first, second = self.runs, other.runs

        def runs(methods: Any) -> list[SuiteRun]:
            return list(dict.fromkeys([*first(methods), *second(methods)]))

        return dataclasses.replace(
            self, runs=runs, provider=f"{self.provider}+{other.provider}", orders=max(self.orders, other.orders),
            seeds=max(self.seeds, other.seeds), averages=tuple(dict.fromkeys((*self.averages, *other.averages))),
            comparisons=self.comparisons.merged(other.comparisons))


@dataclass(frozen=True)
class ReferenceResult:
    """A number reported elsewhere (a paper), stored beside measured runs for comparison."""

    task: str
    dataset: str
    method: str
    model: str
    metric: str
    value: float
    source: str
    reward_model: str | None = None
    note: str = ""


@dataclass(frozen=True)
class ReportSection:
    title: str
    markdown: str


# --------------------------------------------------------------------------------------------
# Layout validation (datasets): what is present, missing or malformed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayoutProblem:
    path: str
    expected: str
    found: str


@dataclass
class LayoutReport:
    dataset: str
    root: str
    ok_items: list[str] = field(default_factory=list)
    problems: list[LayoutProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str, expected: str, found: str) -> None:
        self.problems.append(LayoutProblem(str(path), expected, found))

    def render(self) -> str:
        lines = [f"dataset {self.dataset!r} at {self.root}: {'OK' if self.ok else 'PROBLEMS'}"]
        lines += [f"  present   {item}" for item in self.ok_items]
        lines += [f"  PROBLEM   {p.path}\n            expected: {p.expected}\n            found:    {p.found}" for p in self.problems]
        from .fs_names import fs_text  # file names hold any bytes; the report must print anyway

        return fs_text("\n".join(lines))

    def __iter__(self) -> Iterator[LayoutProblem]:
        return iter(self.problems)


class DatasetLayoutError(RuntimeError):
    """Raised before a run starts when a dataset's on-disk layout is wrong."""

    def __init__(self, report: LayoutReport) -> None:
        super().__init__(report.render())
        self.report = report


# --------------------------------------------------------------------------------------------
# Run records (what reporters observe)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class RunSpec:
    """The identity and provenance of one run (one row of ``runs``)."""

    task: str
    task_version: str
    dataset: str
    dataset_version: str
    method: str
    method_version: str
    method_config: Mapping[str, Any]
    model: str
    model_version: str
    reward_model: str | None
    protocol: RunProtocol
    seed: int
    device: str
    bench_version: str
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    reward_model_version: str | None = None

    @property
    def config_hash(self) -> str:
        return stable_hash(dict(self.method_config))

    @property
    def protocol_hash(self) -> str:
        return self.protocol.hash

    @property
    def key(self) -> str:
        """Identity used for resume: the same key continues the same run."""
        return stable_hash(
            [
                self.task, self.task_version, self.dataset, self.dataset_version,
                dict(self.dataset_params), self.method, self.method_version, self.config_hash,
                self.model, self.model_version, self.reward_model, self.reward_model_version,
                self.protocol_hash, self.seed, self.bench_version,
            ],
            length=24,
        )


@dataclass(frozen=True)
class StepRecord:
    """One executed batch: timings are per batch, device-synchronised."""

    run_id: int
    sample_ids: tuple[str, ...]
    adapt_ms: float
    predict_ms: float
    done: int
    total: int


@dataclass(frozen=True)
class LatencyStats:
    ms_per_sample_mean: float
    ms_per_sample_p50: float
    ms_per_sample_p95: float
    adapt_ms_mean: float
    predict_ms_mean: float
    warmup_samples: int
    timed_samples: int
    peak_memory_mb: float | None
    memory_kind: str


@dataclass(frozen=True)
class RunResult:
    run_id: int
    spec: RunSpec
    metrics: Mapping[str, MetricValue]
    latency: LatencyStats | None
    n_samples: int
    status: str
    reused: bool = False  # a finished run found in the store: nothing was executed


@dataclass(frozen=True)
class RunError:
    run_id: int | None
    spec: RunSpec | None
    exc_type: str
    message: str
    traceback: str


# Keys of the per-run provenance dictionary stored in the ``runs`` table.
PROVENANCE_KEYS: tuple[str, ...] = (
    "torch", "torchvision", "open_clip", "transformers", "rlcf_bench", "python", "git_commit", "git_dirty",
)


@dataclass(frozen=True)
class Range:
    """The declared valid values of a numeric config field (``None`` bound: open).

    ``finite`` (the default) rejects nan and ±inf for float fields; every float field of every
    method config is checked for finiteness even without a declared range.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True

    def check(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or None."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.finite and isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        checks: tuple[tuple[float | None, Callable[[float], bool], str], ...] = (
            (self.ge, lambda b: value >= b, "≥"), (self.gt, lambda b: value > b, ">"),
            (self.le, lambda b: value <= b, "≤"), (self.lt, lambda b: value < b, "<"))
        for bound, ok, word in checks:
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}"
        return None


RANGE_KEY = "rlcf_bench.range"


@dataclass(frozen=True)
class ParamRule:
    """What a ``--data-param`` or ``--protocol-param`` value must be: read as ``kind`` (``int``,
    ``float``, ``bool`` or ``str``), within ``range``, one of ``choices`` (compared after reading).
    Datasets declare theirs in :attr:`DatasetSpec.param_rules` (a parameter without a rule is
    read as its default's type), tasks in :attr:`TaskSpec.params`."""

    kind: type = str
    range: Range = Range()
    choices: tuple[Any, ...] = ()

    def problem(self, raw: Any) -> str | None:
        """Why ``raw`` (a command-line string or a value) is not valid, or None."""
        text = str(raw).strip()
        try:
            if self.kind is bool:
                if text.lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                    raise ValueError(text)
                value: Any = text.lower() in {"1", "true", "yes", "on"}
            elif self.kind in (int, float):
                value = self.kind(text)
            else:
                value = str(raw)
        except ValueError:
            return f"not {'an' if self.kind is int else 'a'} {self.kind.__name__}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}"
        return self.range.check(value)


def check_params(what: str, given: Mapping[str, Any], rules: Mapping[str, ParamRule],
                 defaults: Mapping[str, Any] = {}) -> None:  # noqa: B006 - read only
    """Refuse, with one line naming ``what`` and the parameter, a key that neither ``rules`` nor
    ``defaults`` declares, or a value its rule (else its default's type) does not allow."""
    known = {**{k: ParamRule(type(v) if isinstance(v, (bool, int, float)) else str) for k, v in defaults.items()},
             **rules}
    for key, raw in given.items():
        rule = known.get(key)
        if rule is None:
            valid = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{what} has no parameter {key!r} (valid: {valid})")
        problem = rule.problem(raw)
        if problem is not None:
            raise ValueError(f"{what}: parameter {key}={raw!r}: {problem}")


def bounded(default: Any, **bounds: Any) -> Any:
    """A config field with a declared range: ``steps: int = bounded(3, ge=0)``.

    Subclasses may override the default with a plain ``steps: int = 5``: the range declared on the
    base class still applies (:func:`field_range` looks the name up along the MRO).
    """
    return field(default=default, metadata={RANGE_KEY: Range(**bounds)})


#: Ranges of the conventional option names, for fields that declare none (so a new method's
#: ``steps``/``lr`` are checked even before its author declares anything).
CONVENTIONAL_RANGES: dict[str, Range] = {"steps": Range(ge=0), "lr": Range(gt=0), "weight_decay": Range(ge=0)}


def field_range(config_cls: type, name: str) -> Range:
    """The range declared for field ``name`` on ``config_cls`` or any dataclass base of it, else
    the conventional one of its name (:data:`CONVENTIONAL_RANGES`), else finiteness only."""
    for klass in getattr(config_cls, "__mro__", (config_cls,)):
        if dataclasses.is_dataclass(klass):
            for f in dataclasses.fields(klass):
                if f.name == name and RANGE_KEY in f.metadata:
                    return f.metadata[RANGE_KEY]  # type: ignore[no-any-return]
    return CONVENTIONAL_RANGES.get(name, Range())


def check_config(config: Any) -> None:
    """Enforce the declared ranges (and finiteness of floats) of a method config dataclass."""
    if not dataclasses.is_dataclass(config):
        return
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = field_range(type(config), f.name).check(value)
        if problem is not None:
            raise ValueError(f"option {f.name}={value!r} of {type(config).__name__}: {problem}")


#: ``extra`` key (and metric name) of samples skipped under ``--on-corrupt skip``.
SKIPPED = "skipped"


def config_from_pairs(config_cls: type, pairs: Sequence[tuple[str, str]] | Mapping[str, Any]) -> Any:
    """Build a config dataclass from ``key=value`` strings, coercing to the field types and
    enforcing the declared ranges (:func:`bounded`, :func:`check_config`).

    Unknown keys are an error that lists the valid ones.
    """
    if config_cls is type(None):
        if pairs:
            raise ValueError("this method takes no options")
        return None
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    kwargs: dict[str, Any] = {}
    for key, raw in items:
        if key not in fields:
            raise ValueError(f"unknown option {key!r}; valid options: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(raw, fields[key], config_cls)
    config = config_cls(**kwargs)
    check_config(config)
    return config


def _coerce(raw: Any, f: dataclasses.Field[Any], owner: type) -> Any:
    if not isinstance(raw, str):
        return raw
    default = f.default if f.default is not dataclasses.MISSING else None
    type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    text = raw.strip()
    if text.lower() in {"none", "null"} and ("None" in type_name or default is None):
        return None
    try:
        if isinstance(default, bool) or type_name.startswith("bool"):
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        if isinstance(default, int) or type_name.startswith("int"):
            return int(text)
        if isinstance(default, float) or type_name.startswith("float"):
            return float(text)
        if isinstance(default, tuple) or type_name.startswith("tuple"):
            return tuple(json.loads(text)) if text.startswith("[") else tuple(s for s in text.split(",") if s)
    except ValueError as exc:
        raise ValueError(f"option {f.name!r} of {owner.__name__}: cannot read {raw!r} as {type_name}") from exc
    return text


#: Valid values of the protocol fields a user may override (``--protocol-param``, ``--views``, ...).
PROTOCOL_RANGES: dict[str, Range] = {"seed": Range(ge=0), "n_views": Range(ge=1),
                                     "selection_ratio": Range(gt=0, le=1), "limit": Range(ge=1)}
PROTOCOL_CHOICES: dict[str, tuple[str, ...]] = {"order": ("fixed", "shuffled"),
                                                "precision": ("auto", "fp32", "tf32", "amp-fp16", "amp-bf16")}


#: The ``--protocol-param`` keys the host itself reads, whatever the task (its own keys a task
#: declares in :attr:`TaskSpec.params`): the stream order seed (``rlcf_bench.online_protocol``)
#: and the view policy.
HOST_PROTOCOL_PARAMS: dict[str, ParamRule] = {"order_seed": ParamRule(int, Range(ge=0)),
                                              VIEW_POLICY_PARAM: ParamRule(str, choices=VIEW_POLICIES),
                                              # rlcf_bench.streams: the stream kind and the online batch
                                              "stream": ParamRule(str), "online_batch": ParamRule(int, Range(ge=1))}


def check_protocol_params(overrides: Mapping[str, Any], tasks: Sequence[TaskSpec]) -> None:
    """Refuse a ``--protocol-param`` key that is neither a :class:`RunProtocol` field (those are
    read by :func:`protocol_overrides`), the host's, nor declared by one of ``tasks`` (the
    planned runs' tasks), and a value that a declaring task's rule does not allow. Values are
    only checked, never rewritten (the protocol hash keeps them as given)."""
    fields = {f.name for f in dataclasses.fields(RunProtocol)}
    for key, raw in overrides.items():
        if key in fields:
            continue
        rules = [HOST_PROTOCOL_PARAMS[key]] if key in HOST_PROTOCOL_PARAMS else []
        rules += [t.params[key] for t in tasks if key in t.params]
        if not rules:
            valid = sorted(fields - {"params"} | set(HOST_PROTOCOL_PARAMS) | {k for t in tasks for k in t.params})
            raise ValueError(f"protocol parameter {key!r}: no selected task or the host reads it "
                             f"(valid: {', '.join(valid)})")
        if key == "stream":
            from .streams import stream_problem

            problem = stream_problem(raw)
            if problem is not None:
                raise ValueError(f"protocol parameter {key}={raw!r}: {problem}")
        for rule in rules:
            problem = rule.problem(raw)
            if problem is not None:
                raise ValueError(f"protocol parameter {key}={raw!r}: {problem}")


def protocol_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with the values of :class:`RunProtocol` fields read as their types
    (``n_views="32"`` → 32) and range-checked; other keys (task parameters) pass unchanged.

    Raises ``ValueError`` naming the parameter and what it must be.
    """
    fields = {f.name: f for f in dataclasses.fields(RunProtocol) if f.name != "params"}
    out: dict[str, Any] = {}
    for key, raw in overrides.items():
        f = fields.get(key)
        if f is None:
            out[key] = raw
            continue
        try:
            value = _coerce(raw, f, RunProtocol)
        except ValueError as exc:
            raise ValueError(f"protocol parameter {key}={raw!r}: not a valid {f.type}") from exc
        problem = PROTOCOL_RANGES.get(key, Range()).check(value)
        if problem is None and key in PROTOCOL_CHOICES and value not in PROTOCOL_CHOICES[key]:
            problem = f"must be one of {', '.join(PROTOCOL_CHOICES[key])}"
        if problem is not None:
            raise ValueError(f"protocol parameter {key}={raw!r}: {problem}")
        out[key] = value
    return out
