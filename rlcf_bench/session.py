"""The component session: the one loader of models, reward models and datasets.

The runner, CLI commands and plugins load components through one :class:`ComponentSession`, built
on the session's :class:`~rlcf_bench.plugins.PluginHost`, so every load honours the same plugin set
(``-p no:``, ``--plugins-dir``, autoload off) and a model is built once per session, whoever asks
first. A model built from other components (a captioner and its CLIP) asks the session for them:
its ``ModelSpec.load`` declares a ``session`` parameter and receives this object.

Reward models are components too: a :class:`~rlcf_bench.types.RewardModelSpec` names its members
and builds the reward object from them (``build``); a name no plugin registered
(``ViT-L-14@openai``, ``m1*0.6+m2*0.4``) is a weighted ensemble of those models under the spec's
default builder.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from .dataset_build import build_dataset as build_dataset  # its public path (defined in a leaf module)
from .datasets import resolve_data_root
from .errors import ComponentError as ComponentError  # its public path (defined with the other errors)
from .types import (
    CaptioningModel,
    DatasetSpec,
    RewardModel,
    RewardModelSpec,
    VisionLanguageModel,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from .plugins import PluginHost


class ComponentSession:
    """Builds components by name for one session and caches the models.

    :param host: the session's plugins (the registries every name is resolved against).
    :param device: where models are built (``None``: CUDA when available, else the CPU).
    :param data_root: root of real datasets (else ``$RLCF_BENCH_DATA_ROOT``, else the config file).
    """

    def __init__(self, host: PluginHost, *, device: str | torch.device | None = None,
                 data_root: str | None = None) -> None:
        from .device import select_device  # torch is imported only when a session is built

        self.host = host
        self.device: torch.device = device if not isinstance(device, (str, type(None))) else select_device(device)
        self.data_root = data_root
        self._models: dict[str, VisionLanguageModel | CaptioningModel] = {}

    # ------------------------------------------------------------------ models
    def model(self, name: str) -> VisionLanguageModel | CaptioningModel:
        """The model ``name`` (registered, or claimed by one backend's ``accepts``), built once: a
        dual encoder, or a captioner (``ModelSpec.kind``); :meth:`vlm` checks for the former."""
        if name not in self._models:
            spec = self.host.registry("models").get(name)
            load = spec.load
            if _takes_session(load):
                self._models[name] = load(name, self.device, session=self)
            else:
                self._models[name] = load(name, self.device)
        return self._models[name]

    def vlm(self, name: str) -> VisionLanguageModel:
        """The model ``name``, which must be a CLIP-style dual encoder."""
        model = self.model(name)
        if not isinstance(model, VisionLanguageModel):
            raise ComponentError(f"model {name!r} is not a vision-language model (no encode_image/encode_text)")
        return model

    def model_version(self, name: str) -> str:
        """The version of ``name``'s weights (the loaded model's, else its spec's)."""
        spec = self.host.registry("models").get(name)
        return str(getattr(self.model(name), "version", None) or spec.version)

    # ------------------------------------------------------------------ reward models
    def reward_model(self, name: str, policy: VisionLanguageModel | CaptioningModel) -> RewardModel:
        """The reward model ``name`` for ``policy`` (images arrive normalised for it)."""
        spec, members = resolve_reward(self.host, name)
        if spec.build is None:
            raise ComponentError(f"reward model {name!r} (plugin {spec.provider or '?'}) declares no build")
        loaded = [(self.model(m), w) for m, w in members]
        return spec.build(loaded, name=name, policy_mean=policy.mean, policy_std=policy.std)

    def reward_version(self, name: str) -> str:
        """The versions of the reward model's members' weights, comma-separated."""
        return ",".join(self.model_version(m) for m, _ in resolve_reward(self.host, name)[1])

    # ------------------------------------------------------------------ datasets
    def dataset(self, spec: DatasetSpec, params: dict[str, Any]) -> Any:
        """Build ``spec`` with ``params``; a dataset on disk needs the data root and a valid layout."""
        return build_dataset(spec, params, resolve_data_root(self.data_root))


def resolve_reward(host: PluginHost, name: str) -> tuple[RewardModelSpec, tuple[tuple[str, float], ...]]:
    """The reward model spec for ``name`` (registered, or the one family that accepts it) and its
    members: the spec's own, else the ensemble the name spells."""
    spec: RewardModelSpec = host.registry("reward-models").get(name)
    return spec, spec.members or parse_members(name)


def parse_members(name: str) -> tuple[tuple[str, float], ...]:
    """``m1*w1+m2*w2`` → ((m1, w1), (m2, w2)); a member without ``*w`` weighs 1."""
    members = []
    for part in name.split("+"):
        model, _, weight = part.partition("*")
        members.append((model.strip(), float(weight) if weight else 1.0))
    return tuple(members)


def _takes_session(load: Any) -> bool:
    try:
        params = inspect.signature(load).parameters
    except (TypeError, ValueError):  # a builtin or C callable: the plain (name, device) form
        return False
    return "session" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
