"""The spec a task plugin registers (its runtime object is :class:`rlcf_bench.task.TaskRuntime`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .metrics import TaskMetrics
from .params import ParamRule
from .protocol import RunProtocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..task import TaskRuntime


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
    #: ``check_data(data)``: checks that a built dataset object has the shape this task reads
    #: (a one-line ``ValueError`` naming what is wrong) and returns its sample ids in order. The
    #: dataset contract (:func:`rlcf_bench.testing.check_dataset_samples`) calls it for every task
    #: kind a dataset declares, so a new task kind is contract-tested without editing the test.
    check_data: Callable[[Any], Sequence[str]] | None = None
