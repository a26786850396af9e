"""The contract every classification method keeps, checked for each method the registry holds
(discovered, not listed: a method added later is covered without editing this file).

The checks themselves are the public :mod:`rlcf_bench.testing` (clauses (a) model left as found,
also after a failure; (b) episodic results independent of the batch size; (c) an interrupted run
resumes to the same rows), which a method author outside this repository runs on their own
plugin; ``tests/methods/test_outside_plugin_contract.py`` checks that it catches broken methods.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlcf_bench.testing import CONTRACT_MODELS, MethodContract, classification_methods

PLUGINS: tuple[str, ...] = ()
if importlib.util.find_spec("rlcf_bench_example") is not None:  # the separate example distribution
    PLUGINS = ("rlcf_bench_example.confident_view_ensemble",)

METHODS = classification_methods(PLUGINS)


def test_the_registry_holds_the_methods_this_test_covers():
    assert {"zero-shot", "tpt-prompt", "rlcf-prompt", "c-tpt", "r-tpt", "tps"} <= set(METHODS)


@pytest.mark.parametrize("model", CONTRACT_MODELS)
@pytest.mark.parametrize("name", METHODS)
def test_method_contract(name: str, model: str, tmp_path: Path) -> None:
    """Every method on a CLIP and on a SigLIP (logit bias, bidirectional text tower)."""
    MethodContract(name, tmp_path, plugins=PLUGINS, model=model).check()


def test_a_state_carrying_configuration_keeps_the_contract(tmp_path: Path) -> None:
    """(a) and (c) for a method whose start point moves with the stream (RLCF's momentum, folded
    every 2 samples): the resumed run replays the stored samples to rebuild that state."""
    options = (("momentum", "true"), ("momentum_freq", "2"), ("momentum_mu", "0.5"), ("lr", "1e-2"))
    contract = MethodContract("rlcf-image", tmp_path, options=options)
    straight = contract.check_model_unchanged()
    contract.check_resume(straight, fail_at_store=4)  # a violation, too, if no 4th store call came to kill
