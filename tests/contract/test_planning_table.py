"""``plan_runs`` as a table: CLI-level inputs → the planned runs, or the one-line error."""

from __future__ import annotations

from typing import Any

import pytest

PLUGINS = ("rlcf_bench_tasks", "rlcf_bench_baselines", "rlcf_bench_rlcf", "rlcf_bench_fixtures", "rlcf_bench_models")
BASE = {"suite": "none", "task": "classification", "datasets": ("tiny-colors",), "model": "tiny-clip"}

# (id, inputs beyond BASE, expected (method, reward_model, protocol_overrides, options) per run | error text)
TABLE: list[tuple[str, dict[str, Any], Any]] = [
    ("explicit-zero-shot", {"methods": ("zero-shot",)}, [("zero-shot", None, (), ())]),
    ("reward-ignored-where-unused", {"methods": ("zero-shot",), "reward_model": "tiny-clip"},
     [("zero-shot", None, (), ())]),
    ("reward-kept-where-needed", {"methods": ("rlcf-prompt",), "reward_model": "tiny-clip"},
     [("rlcf-prompt", "tiny-clip", (), None)]),
    ("two-methods-in-order", {"methods": ("zero-shot", "tpt-prompt")},
     [("zero-shot", None, (), ()), ("tpt-prompt", None, (), None)]),
    ("overrides-reach-every-run", {"methods": ("zero-shot",), "overrides": {"limit": 2, "view_policy": "method"}},
     [("zero-shot", None, (("limit", 2), ("view_policy", "method")), ())]),
    ("option-set-where-declared", {"methods": ("zero-shot", "tpt-prompt"), "options": (("steps", "2"),)},
     [("zero-shot", None, (), ()), ("tpt-prompt", None, (), "steps")]),
    ("reward-missing", {"methods": ("rlcf-prompt",)}, "needs a reward model: pass --reward-model"),
    ("option-nobody-has", {"methods": ("zero-shot",), "options": (("no_such", "1"),)},
     "no selected method has an option named 'no_such'"),
    ("option-out-of-range", {"methods": ("tpt-prompt",), "options": (("steps", "-1"),)}, "steps=-1"),
    ("bad-view-policy", {"methods": ("zero-shot",), "overrides": {"view_policy": "mine"}},
     "view_policy='mine': expected one of common, method"),
    ("unknown-suite", {"suite": "no-such-suite", "suite_explicit": True}, "unknown suite 'no-such-suite'"),
    ("incomplete-explicit-run", {"methods": (), "model": None}, "give --task, --dataset, --method and --model"),
    ("unknown-method", {"methods": ("zero-shoot",)}, "did you mean 'zero-shot'"),
]


@pytest.mark.parametrize("inputs,expected", [pytest.param(i, e, id=n) for n, i, e in TABLE])
def test_plan_runs_table(make_host: Any, inputs: dict[str, Any], expected: Any) -> None:
    from rlcf_bench.planning import plan_runs

    host = make_host(*PLUGINS)
    kwargs = {**BASE, **inputs}
    if isinstance(expected, str):
        with pytest.raises((ValueError, KeyError)) as info:
            plan_runs(host, **kwargs)
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)
        return
    planned = plan_runs(host, **kwargs)
    assert [(r.task, r.dataset, r.model) for r in planned] == [("classification", "tiny-colors", "tiny-clip")] * len(expected)
    for run, (method, reward, overrides, option) in zip(planned, expected):
        assert (run.method, run.reward_model) == (method, reward)
        # one stream order (the default): every classification run is keyed by order_seed 0
        assert dict(run.protocol_overrides) == {"order_seed": 0, **dict(overrides)}
        if option == ():
            assert run.method_options == ()
        elif option is not None:
            assert option in dict(run.method_options)
