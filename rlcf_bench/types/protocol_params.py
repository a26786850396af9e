"""The protocol parameters a user may override (``--protocol-param``, ``--views``, ...): which keys
exist (the protocol's fields, the host's, the selected tasks') and what their values must be."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .params import ParamRule, Range, _coerce
from .protocol import VIEW_POLICIES, VIEW_POLICY_PARAM, RunProtocol

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .task import TaskSpec


#: Valid values of the protocol fields a user may override (``--protocol-param``, ``--views``, ...).
PROTOCOL_RANGES: dict[str, Range] = {"seed": Range(ge=0), "n_views": Range(ge=1),
                                     "selection_ratio": Range(gt=0, le=1), "limit": Range(ge=1)}
PROTOCOL_CHOICES: dict[str, tuple[str, ...]] = {"order": ("fixed", "shuffled"),
                                                "precision": ("auto", "fp32", "tf32", "amp-fp16", "amp-bf16")}


#: The ``--protocol-param`` keys the host itself reads, whatever the task (its own keys a task
#: declares in :attr:`TaskSpec.params`): the stream order seed (``rlcf_bench.online_protocol``)
#: and the view policy.
HOST_PROTOCOL_PARAMS: dict[str, ParamRule] = {"order_seed": ParamRule(int, Range(ge=0)),
                                              VIEW_POLICY_PARAM: ParamRule(str, choices=VIEW_POLICIES),
                                              # rlcf_bench.streams: the stream kind and the online batch
                                              "stream": ParamRule(str), "online_batch": ParamRule(int, Range(ge=1))}


def check_protocol_params(overrides: Mapping[str, Any], tasks: Sequence[TaskSpec]) -> None:
    """Refuse a ``--protocol-param`` key that is neither a :class:`RunProtocol` field (those are
    read by :func:`protocol_overrides`), the host's, nor declared by one of ``tasks`` (the
    planned runs' tasks), and a value that a declaring task's rule does not allow. Values are
    only checked, never rewritten (the protocol hash keeps them as given)."""
    fields = {f.name for f in dataclasses.fields(RunProtocol)}
    for key, raw in overrides.items():
        if key in fields:
            continue
        rules = [HOST_PROTOCOL_PARAMS[key]] if key in HOST_PROTOCOL_PARAMS else []
        rules += [t.params[key] for t in tasks if key in t.params]
        if not rules:
            valid = sorted(fields - {"params"} | set(HOST_PROTOCOL_PARAMS) | {k for t in tasks for k in t.params})
            raise ValueError(f"protocol parameter {key!r}: no selected task or the host reads it "
                             f"(valid: {', '.join(valid)})")
        if key == "stream":
            from ..stream_spec import stream_problem

            problem = stream_problem(raw)
            if problem is not None:
                raise ValueError(f"protocol parameter {key}={raw!r}: {problem}")
        for rule in rules:
            problem = rule.problem(raw)
            if problem is not None:
                raise ValueError(f"protocol parameter {key}={raw!r}: {problem}")


def protocol_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with the values of :class:`RunProtocol` fields read as their types
    (``n_views="32"`` → 32) and range-checked; other keys (task parameters) pass unchanged.

    Raises ``ValueError`` naming the parameter and what it must be.
    """
    fields = {f.name: f for f in dataclasses.fields(RunProtocol) if f.name != "params"}
    out: dict[str, Any] = {}
    for key, raw in overrides.items():
        f = fields.get(key)
        if f is None:
            out[key] = raw
            continue
        try:
            value = _coerce(raw, f, RunProtocol)
        except ValueError as exc:
            raise ValueError(f"protocol parameter {key}={raw!r}: not a valid {f.type}") from exc
        problem = PROTOCOL_RANGES.get(key, Range()).check(value)
        if problem is None and key in PROTOCOL_CHOICES and value not in PROTOCOL_CHOICES[key]:
            problem = f"must be one of {', '.join(PROTOCOL_CHOICES[key])}"
        if problem is not None:
            raise ValueError(f"protocol parameter {key}={raw!r}: {problem}")
        out[key] = value
    return out
