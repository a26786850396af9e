"""The contract every registered task and suite keeps: a task declares its kind, its protocol
and its metrics; a suite plans only registered components (and plans at all)."""

from __future__ import annotations

from typing import Any

import pytest

from rlcf_bench.types import RunProtocol


def test_task_declares_its_protocol_and_metrics(registry_host: Any, task_name: str) -> None:
    spec = registry_host.registry("tasks").get(task_name)
    assert spec.kind and spec.version, f"{task_name}: needs a kind and a version"
    assert isinstance(spec.protocol, RunProtocol) and spec.protocol.precision == "auto"
    names = [m.name for m in spec.metrics.metrics]
    assert names and len(set(names)) == len(names), f"{task_name}: metrics {names}"
    assert spec.metrics.primary and set(spec.metrics.primary) <= set(names), \
        f"{task_name}: primary {spec.metrics.primary} not among its metrics"
    assert spec.metrics.score.label, f"{task_name}: declares no per-sample score for paired tests"
    assert callable(spec.build)


def test_some_dataset_and_method_serve_each_task(registry_host: Any, task_name: str) -> None:
    kind = registry_host.registry("tasks").get(task_name).kind
    assert any(kind in d.task_kinds for d in registry_host.registry("datasets")), f"no dataset serves {kind}"
    methods = registry_host.registry("methods")
    assert any(kind in methods.tasks_of(m.name) for m in methods), f"no method serves {kind}"


def test_suite_plans_only_registered_components(registry_host: Any, suite_name: str) -> None:
    from rlcf_bench.planning import plan_runs

    suite = registry_host.registry("suites").get(suite_name)
    try:
        runs = list(suite.runs(list(registry_host.registry("methods"))))
    except ValueError as exc:  # a suite over local checkpoints says which one it needs
        pytest.skip(f"suite {suite_name!r} needs files this machine does not have: {exc}")
    assert runs, f"suite {suite_name!r} has no runs"
    for r in runs:
        task = registry_host.registry("tasks").get(r.task)
        dataset = registry_host.dataset(r.dataset, dict(r.dataset_params))
        methods = registry_host.registry("methods")
        registry_host.registry("models").get(r.model)
        assert task.kind in dataset.task_kinds, f"{r}: dataset has no {task.kind} split"
        assert task.kind in methods.tasks_of(r.method), f"{r}: method does not serve {task.kind}"
        if r.reward_model and r.reward_model not in registry_host.registry("reward-models"):
            for part in r.reward_model.split("+"):
                registry_host.registry("models").get(part.partition("*")[0].strip())
    planned = plan_runs(registry_host, suite=suite_name, suite_explicit=True)
    from rlcf_bench.streams import continual_members

    # a continual stream's run (stream=continual) covers its domains, each a dataset of the suite
    planned_datasets = {(p.task, d) for p in planned for d in (continual_members(p.dataset) or (p.dataset,))}
    assert planned and planned_datasets <= {(r.task, r.dataset) for r in runs}
