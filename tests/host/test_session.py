"""The component session: one loader of models and reward models, with the session's plugins."""

from __future__ import annotations

import pytest

from rlcf_bench import RewardModelSpec, hookimpl
from rlcf_bench.plugins import PluginHost
from rlcf_bench.registry import RegistryError
from rlcf_bench.session import ComponentSession, parse_members


class _OwnReward:
    """A plugin whose reward model is not a CLIP score: the session must build what it says."""

    plugin_name = "own_reward"
    built: list[tuple[str, list[tuple[object, float]]]] = []

    @staticmethod
    def build(members, *, name, policy_mean, policy_std):
        _OwnReward.built.append((name, list(members)))
        return ("own", name)

    @hookimpl
    def rlcfb_register_reward_models(self):
        return [RewardModelSpec(name="own", version="1", members=(("tiny-clip", 0.5),), build=self.build)]


def _session(*extra):
    return ComponentSession(PluginHost(autoload=False, extra=["rlcf_bench_fixtures", *extra]), device="cpu")


def test_models_are_built_once_per_session():
    session = _session()
    assert session.model("tiny-clip") is session.model("tiny-clip")
    assert session.model_version("tiny-clip") == "seed0"
    assert _session().model("tiny-clip") is not session.model("tiny-clip")  # sessions do not share


def test_reward_models_are_built_by_their_plugin():
    session = _session(_OwnReward())
    policy = session.model("tiny-clip")
    assert session.reward_model("own", policy) == ("own", "own")
    name, members = _OwnReward.built[-1]
    assert name == "own" and members == [(policy, 0.5)]  # members loaded through the session


def test_ad_hoc_ensembles_need_the_plugin_that_accepts_them():
    from rlcf_bench.tta.reward import CLIPReward

    with pytest.raises(RegistryError, match="unknown reward-model 'tiny-clip'"):
        _session().reward_model("tiny-clip", _session().model("tiny-clip"))  # no reward plugin loaded
    session = _session("rlcf_bench_models")
    policy = session.model("tiny-clip")
    reward = session.reward_model("tiny-clip*0.25+tiny-clip", policy)
    assert isinstance(reward, CLIPReward) and reward.weights == [0.25, 1.0]
    assert reward.members == [policy, policy]
    assert session.reward_version("tiny-clip*0.25+tiny-clip") == "seed0,seed0"
    assert parse_members("a*0.5+ b") == (("a", 0.5), ("b", 1.0))
