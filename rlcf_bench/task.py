"""The runtime side of a task: sample order, batches, scoring and aggregation.

A ``TaskSpec.build(dataset, protocol)`` returns a :class:`TaskRuntime`. The runner is generic:
it asks the task for the ordered sample list, for batches (decoded and uploaded, view 0 ready,
augmented views lazy), for the fields of the method context, and to score predictions into
per-sample records; metrics are always aggregated from the stored records, so a resumed run
reports exactly what a straight one would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .types import Batch, MetricValue, Predictions, RunProtocol, SampleRecord


class TaskRuntime(ABC):
    kind: str = ""

    def __init__(self, dataset: Any, protocol: RunProtocol) -> None:
        self.dataset = dataset
        self.protocol = protocol

    # ---------------------------------------------------------------- samples
    @abstractmethod
    def all_samples(self) -> list[tuple[int, str]]:
        """``(dataset index, sample id)`` of every sample, in dataset order."""

    def samples(self) -> list[tuple[int, str]]:
        """The protocol's stream: dataset order or a permutation seeded by the protocol seed, cut to
        the limit, then permuted by the ``order_seed`` parameter if there is one."""
        from .online_protocol import stream_order

        proto = self.protocol
        return stream_order(self.all_samples(), proto.order, proto.seed, proto.params, proto.limit)

    # ---------------------------------------------------------------- execution
    @abstractmethod
    def make_batch(self, items: Sequence[tuple[int, str]], model: Any, device: Any) -> Batch:
        """Decode, upload and preprocess ``items``; augmented views must stay lazy."""

    def context_fields(self, model: Any, device: Any) -> dict[str, Any]:
        """Extra ``MethodContext`` fields (class names, templates, the gallery)."""
        return {}

    @abstractmethod
    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        """Turn a batch's predictions into stored per-sample records."""

    @abstractmethod
    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        """Metrics (with confidence intervals) over all stored records of a run."""
