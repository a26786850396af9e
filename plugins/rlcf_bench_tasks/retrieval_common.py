"""Shared building blocks of image–text retrieval: directions, ranks, batches and the gallery.

Used by the ``retrieval`` task (``plugins/rlcf_bench_tasks/retrieval.py``) and by every method
that supports it (``zero-shot``, ``rlcf``), so that they agree on one definition of each thing.

* **Directions.** ``i2t`` — an image query ranks all captions; ``t2i`` — a caption query ranks
  all images. Sample ids are ``"i2t:<image id>"`` and ``"t2i:<caption index>"``.
* **Rank of the ground truth (tie rule).** 0-based and *pessimistic*: the number of non-ground-truth
  candidates whose score is **greater than or equal to** the best ground-truth score. A tie with
  a wrong candidate therefore counts against the query (a constant scorer gets the worst rank,
  never a lucky R@1); ground-truth captions tied with each other do not count against each other
  (image→text has several ground truths; its rank is that of the best one, as LAVIS). NaN scores
  are treated as −inf.
* **Batches.** A :class:`RetrievalBatch` holds queries of one direction: ``images``
  (``[B, 3, S, S]``, normalised for the policy) for ``i2t``, ``texts`` for ``t2i``. The task
  makes one batch per direction (``TaskRuntime.make_batches``), so a method never sees both
  directions at once; :func:`predict_by_direction` calls a method's per-direction scoring function.
* **The gallery** (:class:`RetrievalGallery`, ``ctx.gallery``): the candidate images and captions
  of the run and a per-run cache of their features (policy and reward model), computed once per
  run in batches, never per query.

Cheap to import: torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlcf_bench.types import Batch, Predictions

if TYPE_CHECKING:  # pragma: no cover
    import torch

DIRECTIONS: tuple[str, ...] = ("i2t", "t2i")
_ALIASES: dict[str, tuple[str, ...]] = {
    "both": DIRECTIONS, "all": DIRECTIONS, "i2t": ("i2t",), "image2text": ("i2t",), "t2i": ("t2i",),
    "text2image": ("t2i",),
}
#: The values ``--protocol-param direction=`` takes.
DIRECTION_NAMES: tuple[str, ...] = tuple(_ALIASES)
#: Recall cut-offs reported per direction.
RECALL_KS: tuple[int, ...] = (1, 5, 10)
#: Images decoded/encoded per chunk when the gallery's features are computed.
GALLERY_BATCH = 128


def parse_directions(value: Any) -> tuple[str, ...]:
    """``both`` (default) → ``("i2t", "t2i")``; ``i2t``/``image2text``; ``t2i``/``text2image``."""
    key = str(value if value is not None else "both").strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"retrieval direction {value!r}: expected both, i2t or t2i")
    return _ALIASES[key]


def query_id(direction: str, key: Any) -> str:
    return f"{direction}:{key}"


def direction_of(sample_id: str) -> str:
    direction = sample_id.split(":", 1)[0]
    if direction not in DIRECTIONS:
        raise ValueError(f"{sample_id!r} is not a retrieval query id (i2t:... or t2i:...)")
    return direction


# --------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------


def ground_truth_rank(scores: Any, ground_truth: Sequence[int]) -> int:
    """0-based rank of the best ground-truth candidate under the pessimistic tie rule (module doc).

    ``scores`` is a 1-D tensor/array over the candidates; ``ground_truth`` a non-empty list of
    candidate indices.
    """
    import torch

    s = torch.as_tensor(scores).detach().float().cpu().reshape(-1)
    s = torch.nan_to_num(s, nan=float("-inf"))
    gt = torch.as_tensor(list(ground_truth), dtype=torch.long)
    if gt.numel() == 0:
        raise ValueError("a query needs at least one ground-truth candidate")
    best = s[gt].max()
    wrong = torch.ones_like(s, dtype=torch.bool)
    wrong[gt] = False
    return int(((s >= best) & wrong).sum())


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


@dataclass
class RetrievalBatch(Batch):
    """Retrieval queries of one direction (``i2t``: images; ``t2i``: texts)."""

    direction: str = ""


def batch_direction(batch: Batch) -> str:
    direction = getattr(batch, "direction", "")
    if direction:
        return str(direction)
    if batch.images is not None and batch.texts is None:
        return "i2t"
    if batch.texts is not None and batch.images is None:
        return "t2i"
    raise ValueError("cannot tell the retrieval direction of this batch")


def predict_by_direction(batch: Batch, score_fn: Callable[[str, Batch], torch.Tensor],
                         extras_fn: Callable[[str, Batch], list[dict[str, Any]]] | None = None) -> Predictions:
    """``Predictions(scores=[B, N])`` from ``score_fn(direction, batch)`` (fp32), with
    ``extras_fn(direction, batch)`` as the per-query extras when given."""
    direction = batch_direction(batch)
    extras = list(extras_fn(direction, batch)) if extras_fn is not None else None
    return Predictions(scores=score_fn(direction, batch).float(), extras=extras)


# --------------------------------------------------------------------------------------------
# Images and query features
# --------------------------------------------------------------------------------------------


def load_images(dataset: Any, indices: Sequence[int], *, size: int, mean: Sequence[float], std: Sequence[float],
                device: Any, workers: int = 4) -> torch.Tensor:
    """Decode ``indices`` (threads: PIL releases the GIL), resize + centre-crop on ``device``,
    normalise → ``[len(indices), 3, size, size]``."""
    import torch

    from rlcf_bench.tta.views import normalize, resize_center_crop

    idx = list(indices)
    device = device if device is not None else "cpu"
    if not idx:
        return torch.empty(0, 3, size, size, device=device)
    first = dataset.load_image(idx[0])  # in the caller's thread: lets lazy datasets build once
    if len(idx) > 8 and workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            rest = list(pool.map(dataset.load_image, idx[1:]))
    else:
        rest = [dataset.load_image(i) for i in idx[1:]]
    crops = [resize_center_crop(img.to(device, non_blocking=True), size) for img in [first, *rest]]
    return normalize(torch.stack(crops), mean, std)


def ranked_scores(queries: torch.Tensor, candidates: torch.Tensor, scale: Any) -> torch.Tensor:
    """The scores a retrieval run ranks, ``scale · q @ cᵀ``, always in fp32 (autocast off).

    Under autocast the product would be computed in fp16/bf16, and the pessimistic tie rule
    (module doc) then charges the ties that reduced precision creates to the method alone: every
    method must rank fp32 scores. (Bit-identical to the plain expression when not autocasting.)
    """
    import torch

    with torch.autocast(device_type=queries.device.type, enabled=False):
        s = scale.float() if isinstance(scale, torch.Tensor) else scale
        return s * queries.float() @ candidates.float().t()


def encode_queries(model: Any, direction: str, batch: Batch, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """L2-normalised fp32 policy features of a batch's queries (gradients follow the caller's
    context: wrap in ``torch.no_grad()`` for inference). ``tokens`` may be pre-tokenised texts."""
    import torch.nn.functional as F

    if direction == "i2t":
        assert batch.images is not None, "an i2t batch carries images"
        return F.normalize(model.encode_image(batch.images).float(), dim=-1)
    if tokens is None:
        assert batch.texts is not None, "a t2i batch carries texts"
        tokens = model.tokenize(list(batch.texts)).to(model.device)
    return F.normalize(model.encode_text(tokens).float(), dim=-1)


# --------------------------------------------------------------------------------------------
# The gallery
# --------------------------------------------------------------------------------------------


class RetrievalGallery:
    """The candidates of a retrieval run (``ctx.gallery``) and a per-run cache of their features.

    ``captions``/``caption_image``/``image_captions`` describe the pairing; ``directions`` are the
    directions the run evaluates. Feature accessors compute once (batched, no gradient, under
    ``amp`` autocast when given) and cache by (kind, model identity): **call them in ``setup``**,
    before any weight is tuned — a cached feature reflects the weights at its first call.

    * :meth:`candidate_features` — the policy's features of the candidates of a direction (all
      captions for ``i2t``, all images for ``t2i``), ``[N, E]`` fp32, L2-normalised.
    * :meth:`reward_candidate_features` — the same for each member of a reward model.
    """

    def __init__(self, dataset: Any, directions: Sequence[str] = DIRECTIONS, *, device: Any = None,
                 name: str = "") -> None:
        self.dataset = dataset
        self.directions = tuple(directions)
        self.device = device
        self.name = name or str(getattr(dataset, "name", "") or "")
        self.captions: tuple[str, ...] = tuple(dataset.captions)
        self.caption_image: tuple[int, ...] = tuple(int(j) for j in dataset.caption_image)
        self.n_images = len(dataset)
        self.n_captions = len(self.captions)
        owned: list[list[int]] = [[] for _ in range(self.n_images)]
        for t, j in enumerate(self.caption_image):
            if not 0 <= j < self.n_images:
                raise ValueError(f"caption {t} points at image {j}, but the dataset has {self.n_images} images")
            owned[j].append(t)
        self.image_captions: tuple[tuple[int, ...], ...] = tuple(tuple(c) for c in owned)
        self._cache: dict[Any, Any] = {}
        self.computed: list[Any] = []  # cache keys in order of computation (tests, debugging)

    def __len__(self) -> int:
        return self.n_images

    def n_candidates(self, direction: str) -> int:
        return self.n_captions if direction == "i2t" else self.n_images

    def ground_truth(self, direction: str, query: int) -> tuple[int, ...] | int:
        """Caption indices of image ``query`` (i2t), or the image index of caption ``query`` (t2i)."""
        return self.image_captions[query] if direction == "i2t" else self.caption_image[query]

    # ------------------------------------------------------------------ images
    def iter_images(self, *, size: int, mean: Sequence[float], std: Sequence[float],
                    batch_size: int = GALLERY_BATCH) -> Iterator[torch.Tensor]:
        """All gallery images in order, preprocessed, in chunks of ``batch_size``."""
        for start in range(0, self.n_images, batch_size):
            stop = min(start + batch_size, self.n_images)
            yield load_images(self.dataset, range(start, stop), size=size, mean=mean, std=std, device=self.device)

    def _cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
            self.computed.append(key)
        return self._cache[key]

    # ------------------------------------------------------------------ policy features
    def image_features(self, model: Any, amp: Any = None) -> torch.Tensor:
        def compute() -> torch.Tensor:
            import torch
            import torch.nn.functional as F

            out = []
            with torch.no_grad(), _autocast(amp):
                for x in self.iter_images(size=model.image_size, mean=model.mean, std=model.std):
                    out.append(F.normalize(model.encode_image(x).float(), dim=-1))
            return torch.cat(out)

        return self._cached(("image", id(model)), compute)  # type: ignore[no-any-return]

    def text_features(self, model: Any, amp: Any = None, batch_size: int = 256) -> torch.Tensor:
        def compute() -> torch.Tensor:
            import torch
            import torch.nn.functional as F

            out = []
            with torch.no_grad(), _autocast(amp):
                for i in range(0, self.n_captions, batch_size):
                    tokens = model.tokenize(list(self.captions[i : i + batch_size])).to(model.device)
                    out.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
            return torch.cat(out)

        return self._cached(("text", id(model)), compute)  # type: ignore[no-any-return]

    def candidate_features(self, direction: str, model: Any, amp: Any = None) -> torch.Tensor:
        return self.text_features(model, amp) if direction == "i2t" else self.image_features(model, amp)

    # ------------------------------------------------------------------ reward features
    def reward_image_features(self, reward: Any, policy: Any) -> list[torch.Tensor]:
        """Per-member reward features of all images (fed policy-normalised crops, as the reward
        model expects, ``docs/original-code.md#reward-image-resolution``)."""

        def compute() -> list[torch.Tensor]:
            import torch

            chunks: list[list[torch.Tensor]] = []
            for x in self.iter_images(size=policy.image_size, mean=policy.mean, std=policy.std):
                chunks.append(reward.image_features(x))
            return [torch.cat([c[m] for c in chunks]) for m in range(len(chunks[0]))]

        return self._cached(("reward-image", id(reward)), compute)  # type: ignore[no-any-return]

    def reward_text_features(self, reward: Any) -> list[torch.Tensor]:
        return self._cached(("reward-text", id(reward)),  # type: ignore[no-any-return]
                            lambda: reward.text_features(list(self.captions)))

    def reward_candidate_features(self, direction: str, reward: Any, policy: Any) -> list[torch.Tensor]:
        return self.reward_text_features(reward) if direction == "i2t" else self.reward_image_features(reward, policy)


def _autocast(amp: Any) -> Any:
    import contextlib

    return amp.autocast() if amp is not None else contextlib.nullcontext()
