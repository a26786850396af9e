"""Everything a command's runs need, checked together before the first one starts.

A run can only fail late on what is outside the bench: weights that are not on this machine, a
data root that is not set, a dataset folder with a wrong layout. Finding those one at a time
(fix the weights, start again, fail on the data root) wastes a user's hour, so ``rlcf-bench run``
asks every planned run's models and datasets first, without loading a model or an image, and
reports every problem at once.

A model backend takes part by giving its :class:`~rlcf_bench.types.ModelSpec` a ``check(name)``
that raises with a clear message when the model cannot be loaded; a dataset by its ``root_name``
and layout ``check``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .datasets import DATA_ROOT_HINT, resolve_data_root
from .plugins import PluginHost
from .registry import RegistryError
from .session import resolve_reward


def _model_problems(host: PluginHost, names: Sequence[str]) -> list[str]:
    problems = []
    models = host.registry("models")
    for name in names:
        try:
            spec = models.get(name)
        except RegistryError as exc:
            problems.append(f"model {name}: {exc}")
            continue
        check = getattr(spec, "check", None)
        if check is None:
            continue
        try:
            check(name)
        except Exception as exc:  # the backend's own message says what is missing and where
            problems.append(f"model {exc}" if str(exc).startswith(name) else f"model {name}: {exc}")
    return problems


def _dataset_problems(host: PluginHost, requests: Sequence[Any], data_root: str | None) -> list[str]:
    root = resolve_data_root(data_root)
    needs_root: list[str] = []
    problems: list[str] = []
    seen: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
    for req in requests:
        key = (req.dataset, tuple(req.dataset_params))
        if key in seen:
            continue
        seen.add(key)
        spec = host.dataset(req.dataset, dict(req.dataset_params))
        if spec.root_name is None and spec.check is None:  # generated data
            continue
        if spec.root_name is not None and root is None:
            needs_root.append(f"{spec.name} ({spec.root_name}/)")
            continue
        if spec.check is not None:
            report = spec.check(root, **dict(req.dataset_params))
            if not report.ok:
                where = f"under {root}" if spec.root_name is not None else "it names"
                problems.append(f"dataset {spec.name}: the layout {where} is wrong:\n{report.render()}")
    if needs_root:
        problems.insert(0, f"no data root, needed by {', '.join(dict.fromkeys(needs_root))}: {DATA_ROOT_HINT}")
    return problems


def preflight(host: PluginHost, requests: Sequence[Any], *, data_root: str | None = None) -> list[str]:
    """Every problem that would stop one of ``requests``, each a human-readable message (empty: go)."""
    names: list[str] = []
    problems: list[str] = []
    for req in requests:
        names.append(req.model)
        if req.reward_model:
            try:
                names += [m for m, _ in resolve_reward(host, req.reward_model)[1]]
            except RegistryError as exc:
                problems.append(f"reward model {req.reward_model}: {exc}")
    problems += _model_problems(host, list(dict.fromkeys(names)))
    return list(dict.fromkeys(problems)) + _dataset_problems(host, requests, data_root)
