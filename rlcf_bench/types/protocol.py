"""The run protocol: owned by the task, frozen and hashed; a method cannot change it. The common
protocol's views and a method's own (:class:`ViewPolicy`), and the hash every identity uses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal


def stable_hash(obj: Any, length: int = 16) -> str:
    """SHA-256 of the canonical JSON form of ``obj`` (sorted keys), truncated."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class RunProtocol:
    """What every method in a comparison shares.

    ``n_views``/``augmix``/``selection_ratio`` define the test-time views of a classification
    sample (view 0 is always the plain centre crop). ``order`` is ``fixed`` (dataset order) or
    ``shuffled`` (a permutation seeded by ``seed``) so that online methods see the same stream.
    ``precision`` is ``fp32`` (TF32 off), ``tf32`` (CUDA: TensorFloat-32 matmuls and
    convolutions), ``amp-fp16`` (autocast + per-sample loss scaling, the paper's setting) or
    ``amp-bf16``; ``auto`` resolves to ``amp-fp16`` on CUDA and ``fp32`` on CPU before hashing.
    ``limit`` caps the number of samples (a limited run is a different protocol and is never
    ranked with a full one). ``params`` holds task-specific extras (e.g. retrieval direction).

    How many samples are adapted at once is an *execution* detail, not part of the protocol.
    """

    seed: int = 0
    n_views: int = 64
    augmix: bool = False
    selection_ratio: float = 0.1
    order: Literal["fixed", "shuffled"] = "fixed"
    precision: str = "auto"
    limit: int | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def replace(self, **changes: Any) -> RunProtocol:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["params"] = dict(self.params)
        return d

    @property
    def hash(self) -> str:
        return stable_hash(self.as_dict())

    @property
    def n_selected(self) -> int:
        """Number of confident views kept: ``floor(ratio * n_views)``, at least one."""
        return max(1, int(self.selection_ratio * self.n_views))


VIEW_POLICY_PARAM = "view_policy"
VIEW_POLICIES = ("common", "method")


@dataclass(frozen=True)
class ViewPolicy:
    """The test-time views a method's paper used, where they differ from the common protocol.

    A method declares one as its ``view_policy`` class attribute; it is applied only when the
    user asks for it (``--protocol-param view_policy=method``), never by default: by default every
    method sees the common protocol's views. ``None`` keeps the common protocol's value.

    * ``n_views`` — views per sample (view 0 included);
    * ``augmix`` — AugMix on (True) or off (False) on every dataset;
    * ``augmix_on`` — datasets with AugMix whatever ``augmix`` says (e.g. C-TPT: the ImageNet
      variants, but not ImageNet itself).
    """

    n_views: int | None = None
    augmix: bool | None = None
    augmix_on: frozenset[str] = frozenset()

    def apply(self, protocol: RunProtocol, dataset: str) -> RunProtocol:
        """``protocol`` with this policy's views for ``dataset``; ``view_policy=method`` recorded in
        its params (so the hash differs from the common protocol's even where the views agree)."""
        augmix = protocol.augmix if self.augmix is None else self.augmix
        params = {**dict(protocol.params), VIEW_POLICY_PARAM: "method"}
        return protocol.replace(n_views=protocol.n_views if self.n_views is None else self.n_views,
                                augmix=augmix or dataset in self.augmix_on, params=tuple(sorted(params.items())))


def check_view_policy(choice: Any) -> str:
    """The ``view_policy`` protocol parameter, validated: ``common`` or ``method``."""
    if choice not in VIEW_POLICIES:
        raise ValueError(f"view_policy={choice!r}: expected one of {', '.join(VIEW_POLICIES)}")
    return str(choice)


def resolve_view_policy(protocol: RunProtocol, policy: ViewPolicy | None, dataset: str) -> RunProtocol:
    """The protocol a run uses, before it is hashed.

    ``view_policy=common`` (the default) and methods that declare no policy of their own get the
    common protocol unchanged, without a ``view_policy`` parameter (so their hash, and the run they
    share with the common protocol, do not change). ``view_policy=method`` with a declared policy
    gets :meth:`ViewPolicy.apply`.
    """
    choice = check_view_policy(protocol.param(VIEW_POLICY_PARAM, "common"))
    common = protocol.replace(params=tuple((k, v) for k, v in protocol.params if k != VIEW_POLICY_PARAM))
    if choice == "method" and policy is not None:
        return policy.apply(common, dataset)
    return common
