"""Data flowing through a run: the batch a method sees, its predictions, the stored per-sample
records and metric values."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


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


#: ``extra`` key (and metric name) of samples skipped under ``--on-corrupt skip``.
SKIPPED = "skipped"
