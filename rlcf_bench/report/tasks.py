"""What a report knows about tasks: each task's metric metadata, never a task's name.

Every task declares its metadata on its spec (:class:`rlcf_bench.types.TaskMetrics`: metric
names in display order, the primary metric, higher-is-better, how its interval is computed, the
per-sample score and its paired test). The runner records it in the store with every run, so a
:class:`TaskCatalog` is read from the store first; the installed plugins' registry fills in the
tasks a store recorded nothing for (databases written before the metadata was stored). A task
neither knows gets :data:`GENERIC`: its metrics alphabetically, all higher-is-better, the first as
primary, paired bootstrap on the stored per-sample scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..types import MetricSpec, TaskMetrics

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost
    from ..store import Store

#: The metadata of a task that declared none (or is known to neither the store nor the plugins).
GENERIC = TaskMetrics()

#: How the "How to read" text names each paired test.
TEST_WORDS: dict[str, str] = {"mcnemar-exact": "McNemar exact", "paired-bootstrap": "paired bootstrap"}


@dataclass(frozen=True)
class TaskCatalog:
    """``task name -> TaskMetrics`` for the tasks a report may meet."""

    tasks: Mapping[str, TaskMetrics] = field(default_factory=dict)

    def of(self, task: str) -> TaskMetrics:
        return self.tasks.get(task, GENERIC)

    def ordered(self) -> list[tuple[str, TaskMetrics]]:
        """The known tasks in report order (their declared ``order``, then name)."""
        return sorted(self.tasks.items(), key=lambda kv: (kv[1].order, kv[0]))

    def task_key(self, task: str) -> tuple[int, str]:
        """Sort key of a task's sections: declared order, then name (unknown tasks last)."""
        meta = self.tasks.get(task)
        return (meta.order if meta is not None else GENERIC.order, task)

    def metric_key(self, task: str, metric: str) -> tuple[int, str]:
        """Sort key of one task's metric: its declared position, then undeclared ones by name."""
        return self.of(task).sort_key(metric)

    def metric_order(self) -> tuple[str, ...]:
        """Every declared metric, tasks in report order (a table with several tasks' columns)."""
        return tuple(dict.fromkeys(m.name for _, meta in self.ordered() for m in meta.metrics))

    def sort_metrics(self, names: Iterable[str]) -> list[str]:
        order = self.metric_order()
        return sorted(names, key=lambda n: (order.index(n), "") if n in order else (len(order), n))

    def metric(self, task: str, name: str) -> MetricSpec:
        return self.of(task).metric(name)

    def primary(self, task: str, present: Iterable[str]) -> str | None:
        """The task's primary metric among ``present`` (its first declared candidate there), else
        the first higher-is-better metric present, in the task's display order."""
        have = set(present)
        meta = self.of(task)
        for name in meta.primary:
            if name in have:
                return name
        candidates = sorted((m for m in have if meta.metric(m).higher_is_better), key=lambda m: self.metric_key(task, m))
        return candidates[0] if candidates else None

    def scale(self, task: str) -> float:
        """Factor turning a mean per-sample score into the unit the task's metrics use."""
        return 100.0 if self.of(task).score.percent else 1.0

    def unit(self, task: str) -> str:
        return "%" if self.of(task).score.percent else ""


def catalog_from(store: Store | None, host: PluginHost | None = None) -> TaskCatalog:
    """The store's recorded metadata, then the installed tasks' for the tasks it lacks."""
    tasks: dict[str, TaskMetrics] = {}
    if host is not None:
        for spec in host.registry("tasks"):
            tasks.setdefault(spec.name, spec.metrics)
    if store is not None:
        for name, recorded in store.task_metrics().items():
            tasks[name] = TaskMetrics.from_dict(recorded)
    return TaskCatalog(tasks)


def and_list(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
