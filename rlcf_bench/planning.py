"""Turn ``rlcf-bench run`` options into run requests.

A suite is a plain named list of runs. Options narrow or override it: ``--method`` replaces the
suite's methods (each distinct task/dataset/model of the suite is run with the given methods),
``--dataset`` restricts to (or adds) datasets, ``--model``/``--reward-model`` override the
suite's, ``-m key=value`` sets method options (each option must exist for at least one selected
method; methods without that option ignore it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .plugins import PluginHost
from .runner import RunRequest


class PlanError(ValueError):
    pass


def plan_runs(host: PluginHost, *, suite: str, suite_explicit: bool = False, task: str | None = None,
              datasets: Sequence[str] = (), methods: Sequence[str] = (), model: str | None = None,
              reward_model: str | None = None, options: Sequence[tuple[str, str]] = (),
              data_params: Sequence[tuple[str, str]] = (), overrides: dict[str, Any] | None = None) -> list[RunRequest]:
    method_reg = host.registry("methods")
    for name in methods:
        method_reg.get(name)  # unknown names fail with suggestions
    suites = host.registry("suites")
    base = []
    if suite in suites:
        base = list(suites.get(suite).runs(list(method_reg)))
    elif suite_explicit or not (task and datasets and methods and model):
        raise PlanError(f"unknown suite {suite!r} (registered: {', '.join(suites.names()) or 'none'}); "
                        "or give --task, --dataset, --method and --model explicitly")
    if task:
        host.registry("tasks").get(task)
        matching = [r for r in base if r.task == task]
        if base and not matching and not datasets:
            raise PlanError(f"suite {suite!r} has no runs of task {task!r}; name --dataset explicitly")
        base = matching

    combos: list[tuple[str, str, str | None, str | None]] = []  # task, dataset, model, reward
    if datasets:
        for ds in datasets:
            ds_spec = host.registry("datasets").get(ds)
            in_suite = [r for r in base if r.dataset == ds]
            if in_suite:
                combos += [(r.task, r.dataset, r.model, r.reward_model) for r in in_suite]
            else:
                t = task or _default_task(host, ds_spec)
                ref = base[0] if base else None
                combos.append((t, ds, ref.model if ref else None, ref.reward_model if ref else None))
    else:
        combos = [(r.task, r.dataset, r.model, r.reward_model) for r in base]

    requests: list[RunRequest] = []
    seen: set[Any] = set()
    for t, ds, m, rw in _unique(combos):
        chosen = list(methods) or [r.method for r in base if r.task == t and r.dataset == ds] or \
            sorted({r.method for r in base})
        for meth in _unique(chosen):
            spec = method_reg.get(meth)
            if host.registry("tasks").get(t).kind not in spec.tasks:
                continue
            suite_run = next((r for r in base if (r.task, r.dataset, r.method) == (t, ds, meth)), None)
            opts = dict(suite_run.method_config) if suite_run else {}
            fields = {f.name for f in dataclasses.fields(spec.config_cls)} if dataclasses.is_dataclass(spec.config_cls) else set()
            for key, value in options:
                if key in fields:
                    opts[key] = value
            needs_reward = "reward_model" in spec.requires
            reward = (reward_model or rw or (suite_run.reward_model if suite_run else None)) if needs_reward else None
            final_model = model or m or (suite_run.model if suite_run else None)
            if final_model is None:
                raise PlanError(f"no model for {t}/{ds}: pass --model")
            req = RunRequest(
                task=t, dataset=ds, method=meth, model=final_model, reward_model=reward,
                method_options=tuple(sorted(opts.items())),
                dataset_params=tuple(sorted({**dict(suite_run.dataset_params if suite_run else ()), **dict(data_params)}.items())),
                protocol_overrides=tuple(sorted({**dict(suite_run.protocol_overrides if suite_run else ()), **(overrides or {})}.items())),
            )
            if req not in seen:
                seen.add(req)
                requests.append(req)
        if any(r.reward_model is None and "reward_model" in method_reg.get(r.method).requires for r in requests):
            raise PlanError("a selected method needs a reward model: pass --reward-model")
    # Reference rows the suite asks for (e.g. the reward model's own zero-shot) stay in the plan.
    for key, _ in options:
        if not any(key in {f.name for f in dataclasses.fields(method_reg.get(r.method).config_cls)}
                   for r in requests if dataclasses.is_dataclass(method_reg.get(r.method).config_cls)):
            raise PlanError(f"-m {key}: no selected method has an option named {key!r}")
    if not requests:
        raise PlanError("nothing to run: no selected method supports the selected task")
    return requests


def _default_task(host: PluginHost, ds_spec: Any) -> str:
    for t in host.registry("tasks"):
        if t.kind in ds_spec.task_kinds:
            return t.name
    raise PlanError(f"no registered task can use dataset {ds_spec.name!r}")


def _unique(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
