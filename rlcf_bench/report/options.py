"""What tells two rows apart beyond the method name: non-default method options and protocol settings.

A run stores its method's *full* configuration. A report shows only the options that differ
from the method's defaults (read from the installed method's config dataclass), so runs with
``-m lr=1e-3`` and ``-m lr=1e-2`` are two distinguishable rows. When the method is not
installed (a store read elsewhere), the options that differ between stored runs of the same
method are shown instead: the best that can be said without the defaults.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost


def _plain(value: Any) -> Any:
    """The value as it reads back from the store's JSON column (tuples become lists, ...)."""
    return json.loads(json.dumps(value, default=str))


#: A method's implementation for a task kind: one public name can have one per task (its own config).
MethodKey = tuple[str, str]


def method_defaults(host: PluginHost | None) -> dict[MethodKey, dict[str, Any]]:
    """``(method name, task kind) -> default configuration`` for every installed implementation
    whose config dataclass can be built without arguments (``zero-shot`` classifies and captions
    with different configs, so the defaults are per task)."""
    if host is None:
        return {}
    out: dict[MethodKey, dict[str, Any]] = {}
    for spec in host.registry("methods"):
        cls = spec.config_cls
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            defaults: dict[str, Any] | None = {}
        else:
            try:
                defaults = _plain(dataclasses.asdict(cls()))
            except TypeError:  # a config with required fields has no defaults to compare with
                defaults = None
        if defaults is not None:
            out.update({(spec.name, task): defaults for task in spec.tasks})
    return out


def non_default_options(method: MethodKey, config: Mapping[str, Any], defaults: Mapping[MethodKey, Mapping[str, Any]],
                        peers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The options of one run worth showing: those unlike its implementation's defaults, or
    (without defaults) those that differ among ``peers``, the stored configurations of the same
    method on the same task kind."""
    config = _plain(dict(config))
    if method in defaults:
        base = defaults[method]
        return {k: v for k, v in sorted(config.items()) if k not in base or base[k] != v}
    varying = {k for peer in peers for k, v in _plain(dict(peer)).items() if config.get(k) != v}
    return {k: config[k] for k in sorted(varying) if k in config}


def options_by_run(configs: Mapping[int, tuple[MethodKey, Mapping[str, Any]]],
                   defaults: Mapping[MethodKey, Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """``run id -> shown options`` for ``run id -> ((method, task kind), full config)``."""
    peers: dict[MethodKey, list[Mapping[str, Any]]] = defaultdict(list)
    for method, config in configs.values():
        peers[method].append(config)
    return {rid: non_default_options(method, config, defaults, peers[method])
            for rid, (method, config) in configs.items()}


def options_text(options: Mapping[str, Any]) -> str:
    """``lr=0.001, steps=3`` (empty for the defaults)."""
    return ", ".join(f"{k}={_value_text(v)}" for k, v in options.items())


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


#: Protocol settings shown first, in this order; anything else follows alphabetically.
_PROTOCOL_ORDER = ("n_views", "selection_ratio", "augmix", "order", "seed", "precision", "limit")


def protocol_text(protocol: Mapping[str, Any]) -> str:
    """The protocol's settings in words (``n_views=32, selection_ratio=0.1, ..., limit=none``)."""
    items = dict(protocol)
    params = items.pop("params", {}) or {}
    keys = [k for k in _PROTOCOL_ORDER if k in items] + sorted(k for k in items if k not in _PROTOCOL_ORDER)
    parts = [f"{k}={'none' if items[k] is None else _value_text(items[k])}" for k in keys]
    parts += [f"{k}={_value_text(v)}" for k, v in sorted(dict(params).items())]
    return ", ".join(parts)
