"""One public method name over per-task implementations.

The paper's names span tasks: ``zero-shot`` classifies, retrieves and captions; ``rlcf`` adapts
retrieval and captioning. Each task's algorithm stays in its own (private) module;
:func:`task_dispatch` builds the public method whose ``setup`` picks the implementation for the
run's task. Its config is the union of the implementations' options: an option whose default is
the same everywhere keeps it, one whose defaults differ defaults to ``None`` ("the task's
default"), and setting an option the run's task does not have is an error naming the task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .types import Batch, Method, MethodContext, Predictions

_UNSET = object()


def union_config(name: str, configs: Mapping[str, type]) -> type:
    """A frozen dataclass with every field of ``configs`` (task → config class)."""
    fields: dict[str, tuple[Any, Any]] = {}
    for cfg in configs.values():
        if not dataclasses.is_dataclass(cfg):
            continue
        for f in dataclasses.fields(cfg):
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.name not in fields:
                fields[f.name] = (f.type, default)
            elif fields[f.name][1] != default:
                fields[f.name] = (f"{f.type} | None", None)
    spec = [(n, t if isinstance(t, str) and "None" in t else t, dataclasses.field(default=d))
            for n, (t, d) in fields.items()]
    return dataclasses.make_dataclass(name, spec, frozen=True)


def task_dispatch(name: str, implementations: Mapping[str, type[Method[Any]]], *, version: str,
                  doc: str, paper: str | None = None) -> type[Method[Any]]:
    """Build the public method ``name`` that delegates to ``implementations[ctx.task]``."""
    configs = {task: impl.config_cls for task, impl in implementations.items()}
    config_cls = union_config(f"{name.title().replace('-', '')}Config", configs)
    requires = frozenset().union(*(impl.requires for impl in implementations.values()))
    max_batch = min(impl.max_batch for impl in implementations.values())

    class Dispatch(Method[Any]):
        __doc__ = doc

        def setup(self, ctx: MethodContext) -> None:
            impl_cls = implementations[ctx.task]
            self.impl = impl_cls(_narrow(self.config, impl_cls.config_cls, ctx.task, config_cls))
            self.impl.setup(ctx)
            self._episodic = impl_cls.episodic

        def reset(self) -> None:
            self.impl.reset()

        def adapt(self, batch: Batch) -> None:
            self.impl.adapt(batch)

        def predict(self, batch: Batch) -> Predictions:
            return self.impl.predict(batch)

        def after_predict(self, batch: Batch) -> None:
            self.impl.after_predict(batch)

        @property
        def carries_state(self) -> bool:
            return self.impl.carries_state

    Dispatch.name = name
    Dispatch.version = version
    Dispatch.config_cls = config_cls
    Dispatch.tasks = frozenset(implementations)
    Dispatch.requires = requires
    Dispatch.max_batch = max_batch
    Dispatch.paper = paper
    Dispatch.implementations = dict(implementations)  # type: ignore[attr-defined]
    Dispatch.__name__ = Dispatch.__qualname__ = config_cls.__name__.removesuffix("Config")
    return Dispatch


def serving(method_cls: type[Method[Any]], config: Any, task: str) -> Method[Any]:
    """The method object that will serve ``task``, not set up: the dispatched implementation (its
    own config narrowed from the union) or the method itself. Lets a scheduler ask, before a run,
    whether it ``carries_state``."""
    implementations = getattr(method_cls, "implementations", None)
    if not implementations or task not in implementations:
        return method_cls(config)
    impl_cls = implementations[task]
    return impl_cls(_narrow(config, impl_cls.config_cls, task, method_cls.config_cls))


def _narrow(config: Any, target: type, task: str, union: type) -> Any:
    """The task's own config from the union: unset (None) options take the task's default."""
    if not dataclasses.is_dataclass(target):
        return None
    own = {f.name for f in dataclasses.fields(target)}
    defaults = {f.name: f.default for f in dataclasses.fields(union)}
    values = dataclasses.asdict(config)
    foreign = [k for k, v in values.items() if k not in own and v != defaults[k]]
    if foreign:
        raise ValueError(f"option(s) {', '.join(sorted(foreign))} do not apply to the {task} task "
                         f"(its options: {', '.join(sorted(own))})")
    kwargs = {k: v for k, v in values.items() if k in own and not (v is None and defaults[k] is None)}
    return target(**kwargs)
