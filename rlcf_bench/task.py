"""The runtime side of a task: sample order, batches, scoring and aggregation.

A ``TaskSpec.build(dataset, protocol)`` returns a :class:`TaskRuntime`. The runner is generic:
it asks the task for the ordered sample list, how to cut the samples of a step into batches
(:meth:`TaskRuntime.batches`), for the batches themselves (decoded and uploaded, view 0 ready,
augmented views lazy), for the fields of the method context, and to score predictions into
per-sample records; metrics are always aggregated from the stored records, so a resumed run
reports exactly what a straight one would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .types.data import Batch, MetricValue, Predictions, SampleRecord
from .types.protocol import RunProtocol


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
        the limit, then permuted by the ``order_seed`` parameter if there is one; a ``stream``
        parameter (continual, dirichlet:γ) orders it further (:mod:`rlcf_bench.streams`)."""
        from .online_protocol import order_seed_of, stream_order
        from .stream_spec import STREAM
        from .streams import stream_items

        proto = self.protocol
        stream = proto.param(STREAM)
        if stream is None:
            return stream_order(self.all_samples(), proto.order, proto.seed, proto.params, proto.limit)
        label = getattr(self.dataset, "label", None)
        return stream_items(self.all_samples(), stream, order_seed=order_seed_of(proto.params) or 0,
                            domain_of=getattr(self.dataset, "domain_of", None), label_of=label,
                            iid=lambda part: stream_order(part, proto.order, proto.seed, proto.params, proto.limit))

    # ---------------------------------------------------------------- execution
    def batches(self, items: Sequence[tuple[int, str]]) -> list[list[tuple[int, str]]]:
        """Cut the samples the runner is about to compute in one step (stream order, at most the
        method's batch size) into the batches a method sees, in stream order. Default: one batch.
        A task whose samples come in kinds a method handles apart (e.g. query directions) returns
        one batch per kind, so no method ever sees a mixed batch."""
        return [list(items)] if items else []

    @abstractmethod
    def make_batch(self, items: Sequence[tuple[int, str]], model: Any, device: Any) -> Batch:
        """Decode, upload and preprocess ``items``; augmented views must stay lazy."""

    def context_fields(self, model: Any, device: Any) -> dict[str, Any]:
        """``MethodContext`` fields (class names, templates, the gallery, ...); a key that is not a
        field of :class:`~rlcf_bench.types.MethodContext` arrives in its ``task_fields``."""
        return {}

    @abstractmethod
    def score(self, batch: Batch, predictions: Predictions) -> list[SampleRecord]:
        """Turn a batch's predictions into stored per-sample records."""

    @abstractmethod
    def aggregate(self, records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        """Metrics (with confidence intervals) over all stored records of a run."""
