"""What the online TTA methods (TDA, DMN-ZS, DPE, BoostAdapter) share besides their caches.

* :class:`OnlineMethod` — the base class: ``episodic = False`` (the runner feeds one sample at a
  time in the protocol's seeded order and never resets; the state starts empty because the
  runner builds a fresh method per run), class text features once per run, and
  :meth:`OnlineMethod.state_size` (cache entries and bytes, stored with the run at its end).
* :func:`summarise_views` — one image forward per view set
  (:func:`rlcf_bench.tta.episode.encode_views`): the per-view features and logits,
  TPT's confidence selection (:func:`rlcf_bench.tta.objectives.select_confident`) and the summary the
  official code derives from the selected views (mean feature, mean logits, marginal entropy,
  mean probabilities), or the same quantities from the single centre view.
* :func:`official_family` — which official per-dataset configuration applies to a dataset name
  (the micro suite's domains map to the ImageNet variant they mirror).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..lazy import LazyModule
from ..types import Batch, Method, MethodContext
from .episode import encode_views, view_features
from .logits import class_logits_for
from .objectives import marginal_entropy, select_confident

torch: Any = LazyModule("torch")
F: Any = LazyModule("torch.nn.functional")

#: The 7 templates Tip-Adapter (and after it TDA, DPE, BoostAdapter, DMN) use for the ImageNet family.
TIP_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)

IMAGENET_FAMILY = frozenset({"imagenet", "imagenet-a", "imagenet-v2", "imagenet-r", "imagenet-sketch"})
#: ImageNet variants whose official configurations use many views (A, V2, R, Sketch).
SHIFTED_IMAGENET = IMAGENET_FAMILY - {"imagenet"}
FINE_GRAINED = frozenset({"aircraft", "caltech101", "cars", "dtd", "eurosat", "flower102", "food101", "pets",
                          "sun397", "ucf101"})
#: Embedded-suite domains → the ImageNet variant each one mirrors (plugins/rlcf_bench_micro).
ANALOGUES: dict[str, str] = {
    "micro-hard": "imagenet-a", "micro-resampled": "imagenet-v2", "micro-rendition": "imagenet-r",
    "micro-sketch": "imagenet-sketch",
}


PROMPT_SETS = ("auto", "single", "ensemble", "tip")
VIEW_CHOICES = ("auto", "true", "false")


def check_options(*, prompts: str, multi_view: str | None = None, **at_least_one: float) -> None:
    """Config validation shared by the online methods (called from their ``__post_init__``, so a
    bad ``-m`` value fails before a run is opened)."""
    if prompts not in PROMPT_SETS:
        raise ValueError(f"prompts={prompts!r}: expected one of {', '.join(PROMPT_SETS)}")
    if multi_view is not None and multi_view not in VIEW_CHOICES:
        raise ValueError(f"multi_view={multi_view!r}: expected one of {', '.join(VIEW_CHOICES)}")
    for name, value in at_least_one.items():
        if value < 1:
            raise ValueError(f"{name}={value}: expected ≥ 1")


def official_family(dataset: str) -> str:
    """The official configuration's dataset name for ``dataset`` (``imagenet`` when none fits,
    e.g. ImageNet-C, corruptions of the micro suite, smoke-test sets)."""
    base = dataset.split("[", 1)[0]
    base = ANALOGUES.get(base, base)
    return base if base in IMAGENET_FAMILY | FINE_GRAINED else "imagenet"


def per_dataset(table: dict[str, Any], dataset: str) -> Any:
    """``table[official_family(dataset)]``, falling back to ``table["imagenet"]``."""
    return table.get(official_family(dataset), table["imagenet"])


@dataclass(frozen=True)
class ViewSummary:
    """One sample's views under the frozen encoder (inference tensors on the device, no graph).

    ``feats`` ``[V, d]`` and ``logits`` ``[V, C]`` of every view encoded (V = 1: the centre view);
    ``selected`` the confident views; ``query`` the mean feature of the selected views (not
    re-normalised, as the official code), ``logits_mean`` their mean logits, ``entropy`` the
    marginal entropy (nats) of their mean distribution, ``probs`` that mean distribution.
    """

    feats: torch.Tensor
    logits: torch.Tensor
    selected: torch.Tensor
    query: torch.Tensor
    logits_mean: torch.Tensor
    entropy: torch.Tensor
    probs: torch.Tensor

    @property
    def label(self) -> torch.Tensor:
        return self.logits_mean.argmax()


def summarise_views(ctx: MethodContext, batch: Batch, text: torch.Tensor, *, multi_view: bool,
                    n_selected: int | None = None) -> ViewSummary:
    """Encode one sample's views once (``multi_view``: the protocol's views, else the centre view)
    and summarise its ``n_selected`` most confident ones (default: the protocol's count)."""
    if len(batch) != 1:
        raise ValueError("online methods take one sample at a time")
    if multi_view:
        feats = view_features(ctx, batch)[0]  # [V, d], no graph; shared across runs when cached
    else:
        assert batch.images is not None
        feats = encode_views(ctx, batch.images.unsqueeze(1))[0]  # the centre view alone
    logits = class_logits_for(ctx).product(feats, text.t())
    n = min(n_selected or ctx.protocol.n_selected, logits.shape[0]) if multi_view else 1
    selected = select_confident(logits.unsqueeze(0), n)[0]
    chosen = logits[selected]
    return ViewSummary(
        feats=feats, logits=logits, selected=selected, query=feats[selected].mean(0), logits_mean=chosen.mean(0),
        entropy=marginal_entropy(chosen.unsqueeze(0))[0], probs=chosen.softmax(-1).mean(0),
    )


def prompt_set_features(ctx: MethodContext, prompt_set: str) -> torch.Tensor:
    """Normalised class features ``[C, d]`` of a prompt set, once per run (``ctx.cache``):
    ``single`` (the dataset's template), ``ensemble`` (the dataset's ensemble) or ``tip`` (the 7
    Tip-Adapter templates: mean of normalised features, re-normalised)."""
    from .prompts import class_prompts, class_text_features

    if prompt_set != "tip":
        return class_text_features(ctx, templates=prompt_set)
    key = ("class_text_features", ctx.vlm.name, "tip", False)
    if key not in ctx.cache:
        feats = sum(ctx.vlm.text_features(class_prompts(ctx.classnames or (), t)) for t in TIP_TEMPLATES)
        ctx.cache[key] = F.normalize(feats / len(TIP_TEMPLATES), dim=-1).to(ctx.device)
    return ctx.cache[key]


class OnlineMethod(Method[Any]):
    """Base of the methods that remember the stream (see the module docstring)."""

    episodic: ClassVar[bool] = False
    max_batch: ClassVar[int] = 1

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.family = official_family(ctx.dataset or "")
        self.text = prompt_set_features(ctx, self.prompt_set())
        self.n_classes = int(self.text.shape[0])
        self.build_state()

    def prompt_set(self) -> str:
        """The prompt set of the text classifier: Tip's 7 templates on the real ImageNet family
        (and Caltech101, as the official configurations), the dataset's template elsewhere
        (the micro suite's word-level vocabulary has no room for Tip's words). ``-m prompts=...``
        overrides it where a config has that field."""
        chosen = getattr(self.config, "prompts", "auto")
        if chosen != "auto":
            return str(chosen)
        return "tip" if (self.ctx.dataset or "").split("[", 1)[0] in IMAGENET_FAMILY | {"caltech101"} else "single"

    def build_state(self) -> None:
        """Create the empty state (called once per run, from ``setup``)."""

    def caches(self) -> dict[str, Any]:
        """The method's memories by name (each with ``entries()`` and ``nbytes()``)."""
        return {}

    def state_size(self) -> dict[str, int]:
        """Entries and bytes held by the method's state at this point of the stream."""
        caches = self.caches()
        return {"state_entries": sum(c.entries() for c in caches.values()),
                "state_bytes": sum(c.nbytes() for c in caches.values())}


class BatchOnlineMethod(Method[Any]):
    """Base of the methods that adapt per batch of the stream (``adapts_per = "batch"``: Tent,
    SAR, ETA, LAME; ``rlcf_bench.streams``): online (never reset inside a run), the class text features of
    the dataset's templates (``config.templates``) once per run, and the zero-shot logits of a
    batch's centre crops (:meth:`logits`, with or without a graph)."""

    episodic: ClassVar[bool] = False
    adapts_per: ClassVar[Literal["sample", "batch"]] = "batch"
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def setup(self, ctx: MethodContext) -> None:
        from .prompts import class_text_features

        self.ctx = ctx
        self.text = class_text_features(ctx, templates=getattr(self.config, "templates", "single"))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised fp32 image features (a graph through the encoder where grad is enabled)."""
        return F.normalize(self.ctx.vlm.encode_image(images).float(), dim=-1)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``logit_scale · cos(image, class text)`` of normalised features."""
        return self.ctx.vlm.logit_scale * feats @ self.text.t()


PAPER_MODEL = "ViT-B-16@openai"


def paper_references(method: str, source: str, values: dict[str, float], note: str = "") -> list[Any]:
    """Reference rows (top-1 %, CLIP ViT-B/16) for ``method`` from a ``{dataset: value}`` table."""
    from ..types import ReferenceResult

    return [ReferenceResult(task="classification", dataset=ds, method=method, model=PAPER_MODEL, metric="top1",
                            value=float(v), source=source, note=note) for ds, v in values.items()]
