"""Specs of the components a run is made of besides its task and method: datasets, models and
reward models (each built lazily by the session)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .interfaces import RewardModel
from .layout import LayoutReport
from .params import ParamRule


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset. ``build(root, **params)`` returns a dataset object for ``task_kinds``.

    ``root_name`` is the folder expected under the data root (``None`` for generated data).
    ``check(root, **params)`` returns a :class:`LayoutReport` without loading images.
    """

    name: str
    version: str
    task_kinds: frozenset[str]
    build: Callable[..., Any]
    check: Callable[..., LayoutReport] | None = None
    root_name: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    augmix: bool = False
    provider: str = ""
    #: Declared values of ``params`` (ranges, choices); a parameter without a rule is read as its
    #: default's type. ``--data-param`` values are checked against them before anything runs.
    param_rules: Mapping[str, ParamRule] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A model name users can type. ``load(name, device)`` builds it lazily.

    ``accepts`` lets a backend claim a family of names (``ARCH@TAG``, ``ARCH@/path/file.pt``).
    ``check(name)``, optional, raises with a clear message when ``name`` cannot be loaded here
    (weights missing, ...) without building the model: ``rlcf-bench run`` asks it for every
    planned model before the first run (:mod:`rlcf_bench.preflight`).
    """

    name: str
    version: str
    load: Callable[..., Any]
    accepts: Callable[[str], bool] | None = None
    kind: Literal["vlm", "captioner"] = "vlm"
    description: str = ""
    provider: str = ""
    check: Callable[[str], Any] | None = None


class RewardBuilder(Protocol):
    """Builds a reward model from its loaded members (model, weight); images will arrive
    normalised for the policy (``policy_mean``/``policy_std``)."""

    def __call__(self, members: Sequence[tuple[Any, float]], *, name: str, policy_mean: Sequence[float],
                 policy_std: Sequence[float]) -> RewardModel: ...


@dataclass(frozen=True)
class RewardModelSpec:
    """A reward model: ``members`` are (model name, weight), ``build`` makes the reward object
    from the loaded members (:class:`RewardBuilder`).

    ``accepts`` lets a spec claim a family of names: the ensembles a name spells
    (``model`` or ``m1*w1+m2*w2``), whose members come from the name
    (:func:`rlcf_bench.session.parse_members`).
    """

    name: str
    version: str
    members: tuple[tuple[str, float], ...] = ()
    description: str = ""
    provider: str = ""
    build: RewardBuilder | None = None
    accepts: Callable[[str], bool] | None = None
