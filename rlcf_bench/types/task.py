"""The spec a task plugin registers (its runtime object is :class:`rlcf_bench.task.TaskRuntime`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
