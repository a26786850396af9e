"""Turn ``rlcf-bench run`` options into run requests.

A suite is a plain named list of runs; options narrow or override it:

* ``--task``/``--dataset`` keep the suite's runs of those tasks/datasets; a dataset the suite does
  not have gets the suite's methods (runs of the same task kind) with its main model;
* ``--method`` replaces the methods: each selected (task, dataset) is run with the given methods,
  the suite's main model for that dataset (its most frequent policy) and its reward model;
* ``--model``/``--reward-model`` override the suite's (the reward model only where a method needs one);
* ``-m key=value`` sets an option on every selected method that has it (it is an error if none has it);
* ``orders`` (``--orders``, else the suite's): stream orders per online method
  (:func:`rlcf_bench.online_protocol.expand_orders`).
* ``seeds`` (``--seeds``, else the suite's): view seeds per run (:func:`expand_seeds`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .online_protocol import expand_orders
from .plugins import PluginHost
from .streams import merge_continual, protocol_overrides_params, stream_batch
from .types import (
    VIEW_POLICY_PARAM,
    MethodSpec,
    RunRequest,
    SuiteRun,
    check_params,
    check_protocol_params,
    check_view_policy,
)


class PlanError(ValueError):
    pass


def plan_runs(host: PluginHost, *, suite: str, suite_explicit: bool = False, task: str | None = None,
              datasets: Sequence[str] = (), methods: Sequence[str] = (), model: str | None = None,
              reward_model: str | None = None, options: Sequence[tuple[str, str]] = (),
              data_params: Sequence[tuple[str, str]] = (), overrides: dict[str, Any] | None = None,
              orders: int | None = None, seeds: int | None = None) -> list[RunRequest]:
    """The runs of ``rlcf-bench run`` (module docstring), in steps: the suite's runs, narrowed to
    the selected task and datasets, with the selected methods instead of the suite's; each made a
    request with its options, models and parameters checked; then every stream order and seed."""
    method_reg = host.registry("methods")
    host.registry("tasks")  # built (and a broken task refused) first: every step reads it
    for name in methods:
        method_reg.implementations(name)  # unknown names fail with suggestions
    runs = _suite_runs_of_the_task(host, suite, suite_explicit, task, datasets, methods, model)
    if datasets:
        runs = _runs_on_the_datasets(host, runs, task, datasets, methods, model, data_params)
    if methods:
        runs = _runs_with_the_methods(runs, task, datasets, methods, model)
    _check_view_policy(overrides)
    requests = _requests(host, runs, model, reward_model, options, data_params, overrides)
    _check_every_option_is_read(host, requests, options)
    if not requests:
        raise PlanError("nothing to run: no selected method supports the selected task")
    _check_params(host, requests)
    return _every_order_and_seed(host, _streams(host, requests), suite, orders, seeds)


def _suite_runs_of_the_task(host: PluginHost, suite: str, suite_explicit: bool, task: str | None,
                            datasets: Sequence[str], methods: Sequence[str], model: str | None) -> list[SuiteRun]:
    """The suite's runs (of ``task`` only, when one is given). No suite is needed when the task,
    datasets, methods and model are all given and ``--suite`` was not."""
    suites = host.registry("suites")
    if suite in suites:
        base = list(suites.get(suite).runs(list(host.registry("methods"))))
    elif suite_explicit or not (task and datasets and methods and model):
        raise PlanError(f"unknown suite {suite!r} (registered: {', '.join(suites.names()) or 'none'}); "
                        "or give --task, --dataset, --method and --model explicitly")
    else:
        base = []
    if task:
        host.registry("tasks").get(task)
        base = [r for r in base if r.task == task]
    return base


def _runs_on_the_datasets(host: PluginHost, base: Sequence[SuiteRun], task: str | None, datasets: Sequence[str],
                          methods: Sequence[str], model: str | None,
                          data_params: Sequence[tuple[str, str]]) -> list[SuiteRun]:
    """The runs on ``datasets``: the suite's own, and for a dataset the suite does not have, the
    suite's methods of the same task kind with their main models (else ``methods``)."""
    task_reg = host.registry("tasks")
    runs = [r for r in base if r.dataset in datasets]
    for ds in datasets:
        ds_spec = host.dataset(ds, dict(data_params))
        if any(r.dataset == ds for r in base):
            continue
        t = task or _default_task(host, ds_spec, methods)
        kind = task_reg.get(t).kind
        template = [r for r in base if task_reg.get(r.task).kind == kind]
        main_model, main_reward = _main(template)
        for r in _unique([(r.method, r.method_options) for r in template]) or [(m, ()) for m in methods]:
            runs.append(SuiteRun(task=t, dataset=ds, method=r[0], model=main_model or model or "",
                                 reward_model=main_reward, method_options=r[1]))
    return runs


def _runs_with_the_methods(runs: Sequence[SuiteRun], task: str | None, datasets: Sequence[str],
                           methods: Sequence[str], model: str | None) -> list[SuiteRun]:
    """Every selected (task, dataset) run with ``methods`` instead of the suite's, with its main
    models and its parameters; with no suite run left, the given task and datasets."""
    replaced = []
    for t, ds in _unique([(r.task, r.dataset) for r in runs]):
        main_model, main_reward = _main([r for r in runs if (r.task, r.dataset) == (t, ds)])
        params = next((r.dataset_params for r in runs if (r.task, r.dataset) == (t, ds)), ())
        protocol = next((r.protocol_overrides for r in runs if (r.task, r.dataset) == (t, ds)), ())
        replaced += [SuiteRun(task=t, dataset=ds, method=m, model=main_model or "", reward_model=main_reward,
                              dataset_params=params, protocol_overrides=protocol) for m in methods]
    if not runs and task and datasets is not None:
        replaced = [SuiteRun(task=task, dataset=ds, method=m, model=model or "") for ds in datasets for m in methods]
    return replaced


def _check_view_policy(overrides: dict[str, Any] | None) -> None:
    if overrides and VIEW_POLICY_PARAM in overrides:
        try:
            check_view_policy(overrides[VIEW_POLICY_PARAM])
        except ValueError as exc:
            raise PlanError(str(exc)) from exc


def _requests(host: PluginHost, runs: Sequence[SuiteRun], model: str | None, reward_model: str | None,
              options: Sequence[tuple[str, str]], data_params: Sequence[tuple[str, str]],
              overrides: dict[str, Any] | None) -> list[RunRequest]:
    """One request per distinct run whose method serves its task, in order (:func:`_request`)."""
    requests: list[RunRequest] = []
    for r in runs:
        req = _request(host, r, model, reward_model, options, data_params, overrides)
        if req is not None and req not in requests:
            requests.append(req)
    return requests


def _request(host: PluginHost, r: SuiteRun, model: str | None, reward_model: str | None,
             options: Sequence[tuple[str, str]], data_params: Sequence[tuple[str, str]],
             overrides: dict[str, Any] | None) -> RunRequest | None:
    """The request of run ``r``: the implementation serving its task kind (None: the method has
    none), the ``-m`` options its config has (ranges checked now, before any store is opened), the
    reward model where the method needs one, the model, and the parameters over the suite's."""
    method_reg = host.registry("methods")
    kind = host.registry("tasks").get(r.task).kind
    if kind not in method_reg.tasks_of(r.method):
        return None
    spec = method_reg.get(r.method, kind)
    fields = _fields(spec.config_cls)
    config = dict(r.method_options)
    config.update({k: v for k, v in options if k in fields})
    try:
        method_reg.config(r.method, kind, sorted(config.items()))
    except ValueError as exc:
        raise PlanError(f"method {r.method!r}: {exc}") from exc
    needs_reward = "reward_model" in spec.requires
    reward = (reward_model or r.reward_model) if needs_reward else None
    if needs_reward and not reward:
        raise PlanError(f"method {r.method!r} needs a reward model: pass --reward-model")
    final_model = model or r.model
    if not final_model:
        raise PlanError(f"no model for {r.task}/{r.dataset}: pass --model")
    return RunRequest(
        task=r.task, dataset=r.dataset, method=r.method, model=final_model, reward_model=reward,
        method_options=tuple(sorted(config.items())),
        dataset_params=tuple(sorted({**dict(r.dataset_params), **dict(data_params)}.items())),
        protocol_overrides=tuple(sorted({**dict(r.protocol_overrides), **(overrides or {})}.items())),
    )


def _implementation(host: PluginHost, r: RunRequest) -> MethodSpec:
    """The implementation of the request's method that serves its task."""
    return host.registry("methods").get(r.method, host.registry("tasks").get(r.task).kind)


def _check_every_option_is_read(host: PluginHost, requests: Sequence[RunRequest],
                                options: Sequence[tuple[str, str]]) -> None:
    """Refuse a ``-m`` option that no planned run's method has (naming the tasks where it has it)."""
    method_reg, task_reg = host.registry("methods"), host.registry("tasks")
    for key, _ in options:
        if not any(key in _fields(_implementation(host, r).config_cls) for r in requests):
            elsewhere = sorted({f"{r.method!r} on the {task}" for r in requests
                                for task in method_reg.tasks_of(r.method) - {task_reg.get(r.task).kind}
                                if key in _fields(method_reg.get(r.method, task).config_cls)})
            where = f" (only {', '.join(elsewhere)} task has it)" if elsewhere else ""
            raise PlanError(f"-m {key}: no selected method has an option named {key!r} for the selected "
                            f"task{where}")


def _streams(host: PluginHost, requests: Sequence[RunRequest]) -> list[RunRequest]:
    """:mod:`rlcf_bench.streams`: a continual stream is one run per run group; a batch method needs
    its batch (``online_batch``)."""
    try:
        requests = merge_continual(requests)
        for r in requests:
            stream_batch(_implementation(host, r), protocol_overrides_params(r))
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    return list(requests)


def _every_order_and_seed(host: PluginHost, requests: Sequence[RunRequest], suite: str, orders: int | None,
                          seeds: int | None) -> list[RunRequest]:
    """Every request in ``orders`` stream orders (online methods on tasks that have them) and
    ``seeds`` view seeds; each count given, else the suite's, else one."""
    method_reg, task_reg, suites = host.registry("methods"), host.registry("tasks"), host.registry("suites")
    online_kinds = {kind for m in method_reg if not m.episodic for kind in m.tasks}
    n_orders = orders if orders is not None else (suites.get(suite).orders if suite in suites else 1)
    n_seeds = seeds if seeds is not None else (suites.get(suite).seeds if suite in suites else 1)
    ordered = expand_orders(requests, n_orders, lambda r: not _implementation(host, r).episodic,
                            lambda r: task_reg.get(r.task).kind in online_kinds)
    return expand_seeds(ordered, n_seeds, lambda r: task_reg.get(r.task).protocol.seed)


def expand_seeds(requests: Sequence[RunRequest], seeds: int, default_seed: Any) -> list[RunRequest]:
    """Run every request with ``seeds`` protocol (view) seeds: its own (``--seed``, else the task
    protocol's ``default_seed(req)``) and the ``seeds - 1`` after it, each a protocol of its own
    (a hash each). The first keeps the request unchanged, so a one-seed plan is the plain one and
    the first seed of a several-seed plan shares the protocol hash of runs planned without
    ``--seeds``. Every method is run with every seed: a method that does not use the views (e.g.
    one without augmentation) simply shows a spread of zero (docs/statistics.md)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be ≥ 1, got {seeds}")
    out: list[RunRequest] = []
    for r in requests:
        overrides = dict(r.protocol_overrides)
        base = int(overrides.get("seed", default_seed(r)))
        for k in range(seeds):
            new = r if k == 0 else dataclasses.replace(
                r, protocol_overrides=tuple(sorted({**overrides, "seed": base + k}.items())))
            if new not in out:
                out.append(new)
    return out


def _fields(config_cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()


def _main(runs: Sequence[SuiteRun]) -> tuple[str | None, str | None]:
    """The most frequent policy model and reward model among ``runs``."""
    models = Counter(r.model for r in runs)
    rewards = Counter(r.reward_model for r in runs if r.reward_model)
    return (models.most_common(1)[0][0] if models else None, rewards.most_common(1)[0][0] if rewards else None)


def _default_task(host: PluginHost, ds_spec: Any, methods: Sequence[str] = ()) -> str:
    """A task the dataset serves. A dataset with labels and captions serves several kinds: the
    one most selected methods support wins, then the task that comes first in reports (its declared
    ``TaskMetrics.order``: the benchmark's main task first), then by name."""
    usable = [t for t in host.registry("tasks") if t.kind in ds_spec.task_kinds]
    method_reg = host.registry("methods")
    usable.sort(key=lambda t: (-sum(t.kind in method_reg.tasks_of(m) for m in methods), t.metrics.order, t.name))
    for t in usable:
        return t.name
    raise PlanError(f"no registered task can use dataset {ds_spec.name!r}")


def _unique(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _check_params(host: PluginHost, requests: Sequence[RunRequest]) -> None:
    """Every ``--protocol-param`` and ``--data-param`` key and value against what the host, the
    planned runs' tasks and their datasets declare: one line, before any store is opened."""
    task_reg = host.registry("tasks")
    tasks = [task_reg.get(t) for t in dict.fromkeys(r.task for r in requests)]
    try:
        for overrides in dict.fromkeys(r.protocol_overrides for r in requests):
            check_protocol_params(dict(overrides), tasks)
        for name, params in dict.fromkeys((r.dataset, r.dataset_params) for r in requests):
            spec = host.dataset(name, dict(params))
            check_params(f"dataset {spec.name!r}", dict(params), spec.param_rules, spec.params)
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
