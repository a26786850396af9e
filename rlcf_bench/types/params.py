"""Declared values of options and parameters: ranges of method config fields (``bounded``),
rules of dataset and task parameters, and reading ``key=value`` strings into a config."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Range:
    """The declared valid values of a numeric config field (``None`` bound: open).

    ``finite`` (the default) rejects nan and ±inf for float fields; every float field of every
    method config is checked for finiteness even without a declared range.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True

    def check(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or None."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.finite and isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        checks: tuple[tuple[float | None, Callable[[float], bool], str], ...] = (
            (self.ge, lambda b: value >= b, "≥"), (self.gt, lambda b: value > b, ">"),
            (self.le, lambda b: value <= b, "≤"), (self.lt, lambda b: value < b, "<"))
        for bound, ok, word in checks:
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}"
        return None


RANGE_KEY = "rlcf_bench.range"


@dataclass(frozen=True)
class ParamRule:
    """What a ``--data-param`` or ``--protocol-param`` value must be: read as ``value_type`` (``int``,
    ``float``, ``bool`` or ``str``), within ``range``, one of ``choices`` (compared after reading).
    Datasets declare theirs in :attr:`DatasetSpec.param_rules` (a parameter without a rule is
    read as its default's type), tasks in :attr:`TaskSpec.params`."""

    value_type: type = str
    range: Range = Range()
    choices: tuple[Any, ...] = ()

    def problem(self, raw: Any) -> str | None:
        """Why ``raw`` (a command-line string or a value) is not valid, or None."""
        text = str(raw).strip()
        try:
            if self.value_type is bool:
                if text.lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                    raise ValueError(text)
                value: Any = text.lower() in {"1", "true", "yes", "on"}
            elif self.value_type in (int, float):
                value = self.value_type(text)
            else:
                value = str(raw)
        except ValueError:
            return f"not {'an' if self.value_type is int else 'a'} {self.value_type.__name__}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}"
        return self.range.check(value)


def check_params(what: str, given: Mapping[str, Any], rules: Mapping[str, ParamRule],
                 defaults: Mapping[str, Any] = {}) -> None:  # noqa: B006 - read only
    """Refuse, with one line naming ``what`` and the parameter, a key that neither ``rules`` nor
    ``defaults`` declares, or a value its rule (else its default's type) does not allow."""
    known = {**{k: ParamRule(type(v) if isinstance(v, (bool, int, float)) else str) for k, v in defaults.items()},
             **rules}
    for key, raw in given.items():
        rule = known.get(key)
        if rule is None:
            valid = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{what} has no parameter {key!r} (valid: {valid})")
        problem = rule.problem(raw)
        if problem is not None:
            raise ValueError(f"{what}: parameter {key}={raw!r}: {problem}")


def bounded(default: Any, **bounds: Any) -> Any:
    """A config field with a declared range: ``steps: int = bounded(3, ge=0)``.

    Subclasses may override the default with a plain ``steps: int = 5``: the range declared on the
    base class still applies (:func:`field_range` looks the name up along the MRO).
    """
    return field(default=default, metadata={RANGE_KEY: Range(**bounds)})


#: Ranges of the conventional option names, for fields that declare none (so a new method's
#: ``steps``/``lr`` are checked even before its author declares anything).
CONVENTIONAL_RANGES: dict[str, Range] = {"steps": Range(ge=0), "lr": Range(gt=0), "weight_decay": Range(ge=0)}


def field_range(config_cls: type, name: str) -> Range:
    """The range declared for field ``name`` on ``config_cls`` or any dataclass base of it, else
    the conventional one of its name (:data:`CONVENTIONAL_RANGES`), else finiteness only."""
    for klass in getattr(config_cls, "__mro__", (config_cls,)):
        if dataclasses.is_dataclass(klass):
            for f in dataclasses.fields(klass):
                if f.name == name and RANGE_KEY in f.metadata:
                    return f.metadata[RANGE_KEY]  # type: ignore[no-any-return]
    return CONVENTIONAL_RANGES.get(name, Range())


def check_config(config: Any) -> None:
    """Enforce the declared ranges (and finiteness of floats) of a method config dataclass."""
    if not dataclasses.is_dataclass(config):
        return
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = field_range(type(config), f.name).check(value)
        if problem is not None:
            raise ValueError(f"option {f.name}={value!r} of {type(config).__name__}: {problem}")


def config_from_pairs(config_cls: type, pairs: Sequence[tuple[str, str]] | Mapping[str, Any]) -> Any:
    """Build a config dataclass from ``key=value`` strings, coercing to the field types and
    enforcing the declared ranges (:func:`bounded`, :func:`check_config`).

    Unknown keys are an error that lists the valid ones.
    """
    if config_cls is type(None):
        if pairs:
            raise ValueError("this method takes no options")
        return None
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    kwargs: dict[str, Any] = {}
    for key, raw in items:
        if key not in fields:
            raise ValueError(f"unknown option {key!r}; valid options: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(raw, fields[key], config_cls)
    config = config_cls(**kwargs)
    check_config(config)
    return config


def _coerce(raw: Any, f: dataclasses.Field[Any], owner: type) -> Any:
    if not isinstance(raw, str):
        return raw
    default = f.default if f.default is not dataclasses.MISSING else None
    type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    text = raw.strip()
    if text.lower() in {"none", "null"} and ("None" in type_name or default is None):
        return None
    try:
        if isinstance(default, bool) or type_name.startswith("bool"):
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        if isinstance(default, int) or type_name.startswith("int"):
            return int(text)
        if isinstance(default, float) or type_name.startswith("float"):
            return float(text)
        if isinstance(default, tuple) or type_name.startswith("tuple"):
            return tuple(json.loads(text)) if text.startswith("[") else tuple(s for s in text.split(",") if s)
    except ValueError as exc:
        raise ValueError(f"option {f.name!r} of {owner.__name__}: cannot read {raw!r} as {type_name}") from exc
    return text
