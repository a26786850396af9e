"""The contract every method keeps, checked for each (method, task) the registry holds — every
task's methods, classification, retrieval and captioning alike, each on the tiny fixture's data
for its task (discovered, not listed: a method added later is covered without editing this file;
a task the fixture has no contract run for fails here).

The checks themselves are the public :mod:`rlcf_bench.testing` (clauses (a) model left as found,
also after a failure; (b) episodic results independent of the batch size; (c) an interrupted run
resumes to the same rows), which a method author outside this repository runs on their own
plugin; ``tests/methods/test_outside_plugin_contract.py`` checks that it catches broken methods.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlcf_bench.plugins import PluginHost
from rlcf_bench.testing import CONTRACT_MODELS, FIXTURE_PLUGINS, MethodContract
from rlcf_bench_fixtures.tiny import CONTRACT_FIXTURES

PLUGINS: tuple[str, ...] = ()
if importlib.util.find_spec("rlcf_bench_example") is not None:  # the separate example distribution
    PLUGINS = ("rlcf_bench_example.confident_view_ensemble",)


def _implementations() -> list[tuple[str, str]]:
    host = PluginHost(autoload=False, extra=[*FIXTURE_PLUGINS, *PLUGINS])
    return sorted({(spec.name, task) for spec in host.registry("methods") for task in spec.tasks})


IMPLEMENTATIONS = _implementations()


def test_the_registry_holds_the_methods_this_test_covers():
    assert {("zero-shot", "classification"), ("tpt-prompt", "classification"), ("rlcf-prompt", "classification"),
            ("c-tpt", "classification"), ("r-tpt", "classification"), ("tps", "classification"),
            ("zero-shot", "retrieval"), ("rlcf", "retrieval"), ("zero-shot", "captioning"),
            ("rlcf", "captioning")} <= set(IMPLEMENTATIONS)


def _cases() -> list[tuple[str, str, str]]:
    """(method, task, policy): a classification method on each of :data:`CONTRACT_MODELS` (a CLIP and
    a SigLIP: logit bias, bidirectional text tower), another task's on its fixture's policy."""
    return [(name, task, model) for name, task in IMPLEMENTATIONS
            for model in (CONTRACT_MODELS if task == "classification"
                          else (CONTRACT_FIXTURES.get(task, {}).get("model", "?"),))]


CASES = _cases()


@pytest.mark.parametrize(("name", "task", "model"), CASES, ids=[f"{n}-{t}-{m}" for n, t, m in CASES])
def test_method_contract(name: str, task: str, model: str, tmp_path: Path) -> None:
    assert task in CONTRACT_FIXTURES, (f"{name} serves {task!r}, for which the tiny fixture has no contract run "
                                       f"(rlcf_bench_fixtures.tiny.CONTRACT_FIXTURES)")
    fixture = {**CONTRACT_FIXTURES[task], "model": model}
    MethodContract(name, tmp_path, plugins=PLUGINS, task=task, **fixture).check()


def test_a_state_carrying_configuration_keeps_the_contract(tmp_path: Path) -> None:
    """(a) and (c) for a method whose start point moves with the stream (RLCF's momentum, folded
    every 2 samples): the resumed run replays the stored samples to rebuild that state."""
    options = (("momentum", "true"), ("momentum_freq", "2"), ("momentum_mu", "0.5"), ("lr", "1e-2"))
    contract = MethodContract("rlcf-image", tmp_path, options=options)
    straight = contract.check_model_unchanged()
    contract.check_resume(straight, fail_at_store=4)  # a violation, too, if no 4th store call came to kill
