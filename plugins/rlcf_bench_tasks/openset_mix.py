"""The open-set stream: a seeded mix of an in-distribution (ID) classification set and one or more
OOD sets at a stated ratio (``docs/open-set.md#the-mix``).

Every ID sample is kept; ``round(n_id * r / (1 - r))`` OOD samples (``r`` = ``ood_ratio``, the
OOD share of the mix) are drawn without replacement, split evenly over the OOD sets (the first
sets take the remainder), and the whole mix is put in one seeded order, so a fixed-order online
stream meets ID and OOD samples interleaved. Sample ids carry their group: ``id:<ID sample id>``
and ``ood:<OOD set>:<sample id>``. OOD samples have the label ``-1``.

Dataset plugins compose their own sets with :func:`open_set_spec` (the micro suite's
``micro-openset``, ``imagenet-openset``); no central list names them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

from rlcf_bench import DatasetSpec
from rlcf_bench.types import ParamRule, Range

DEFAULT_OOD_RATIO = 0.5
ID_GROUP, OOD_GROUP = "id", "ood"
#: The mix's own ``--data-param`` rules (the member datasets declare the rest).
MIX_RULES: dict[str, ParamRule] = {
    "ood_ratio": ParamRule(float, Range(gt=0.0, lt=1.0)),
    "mix_seed": ParamRule(int, Range(ge=0)),
    "ood": ParamRule(str),
}


class OpenSetMix:
    """ID samples and OOD samples in one seeded order (a classification dataset with OOD flags)."""

    def __init__(self, id_data: Any, oods: Sequence[tuple[str, Any]], ood_ratio: float = DEFAULT_OOD_RATIO,
                 mix_seed: int = 0, name: str = "open-set") -> None:
        ratio = float(ood_ratio)
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ood_ratio must be strictly between 0 and 1, got {ood_ratio}")
        if not oods:
            raise ValueError("an open-set mix needs at least one OOD set")
        self.name = name
        self.id_data = id_data
        self.oods = tuple(oods)
        self.ood_ratio = ratio
        self.mix_seed = int(mix_seed)
        self.classnames: tuple[str, ...] = tuple(id_data.classnames)
        self.templates: tuple[str, ...] = tuple(id_data.templates)
        ensemble = getattr(id_data, "ensemble_templates", None)
        self.ensemble_templates = tuple(ensemble) if ensemble else None

    @cached_property
    def _entries(self) -> list[tuple[int, int]]:
        """``(source, index)`` in mix order; source ``-1`` is the ID set, ``k`` the k-th OOD set."""
        import numpy as np

        n_id = len(self.id_data)
        n_ood = round(n_id * self.ood_ratio / (1.0 - self.ood_ratio))
        share, extra = divmod(n_ood, len(self.oods))
        rng = np.random.default_rng([self.mix_seed, 29])
        entries = [(-1, i) for i in range(n_id)]
        for k, (ood_name, data) in enumerate(self.oods):
            want = share + (k < extra)
            if want > len(data):
                raise ValueError(f"OOD set {ood_name!r} has {len(data)} images, the mix needs {want} "
                                 f"({n_id} ID images at ood_ratio={self.ood_ratio}); lower ood_ratio or the ID size")
            entries.extend((k, int(i)) for i in sorted(rng.choice(len(data), size=want, replace=False)))
        order = rng.permutation(len(entries))
        return [entries[int(j)] for j in order]

    @property
    def n_ood(self) -> int:
        return sum(1 for src, _ in self._entries if src >= 0)

    @cached_property
    def content_version(self) -> str | None:
        """A hash of the members' content versions and the mix settings, where every member has one."""
        versions = [getattr(d, "content_version", None) for d in (self.id_data, *(d for _, d in self.oods))]
        if not all(versions):
            return None
        text = "|".join([*map(str, versions), str(self.ood_ratio), str(self.mix_seed)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self._entries):
            raise IndexError(f"index {index} out of range for {self.name} with {len(self._entries)} images")
        return self._entries[index]

    def is_ood(self, index: int) -> bool:
        return self._entry(index)[0] >= 0

    def sample_id(self, index: int) -> str:
        src, i = self._entry(index)
        if src < 0:
            return f"{ID_GROUP}:{self.id_data.sample_id(i)}"
        name, data = self.oods[src]
        return f"{OOD_GROUP}:{name}:{data.sample_id(i)}"

    def label(self, index: int) -> int:
        src, i = self._entry(index)
        return int(self.id_data.label(i)) if src < 0 else -1

    def load_image(self, index: int) -> Any:
        src, i = self._entry(index)
        return self.id_data.load_image(i) if src < 0 else self.oods[src][1].load_image(i)


def parse_ood_names(value: str, known: Sequence[str]) -> tuple[str, ...]:
    """``"ninco,textures"`` → the names, each one of ``known`` (one-line error otherwise)."""
    names = tuple(dict.fromkeys(n.strip() for n in str(value).split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise ValueError(f"ood must be a comma-separated list of {', '.join(known)}; got {value!r}")
    return names


#: Builds a member dataset: ``(data root, that member's params) -> dataset object``.
MemberBuilder = Callable[[Any, Mapping[str, Any]], Any]


def open_set_spec(name: str, version: str, id_build: MemberBuilder, oods: Mapping[str, MemberBuilder], *,
                  default_ood: str, params: Mapping[str, Any] | None = None, id_params: Sequence[str] = (),
                  param_rules: Mapping[str, ParamRule] | None = None, root_name: str | None = None,
                  check: Callable[..., Any] | None = None, description: str = "") -> DatasetSpec:
    """A :class:`DatasetSpec` (task kind ``classification``, run with ``--task open-set``) for the
    mix of ``id_build``'s set and the OOD sets named by the ``ood`` parameter (default
    ``default_ood``). ``id_params`` are handed to the ID builder; the mix takes ``ood``,
    ``ood_ratio`` and ``mix_seed``."""
    parse_ood_names(default_ood, tuple(oods))

    defaults = {"ood": default_ood, "ood_ratio": DEFAULT_OOD_RATIO, "mix_seed": 0, **(params or {})}

    def build(root: Any = None, **given: Any) -> OpenSetMix:
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise TypeError(f"dataset {name!r} has no parameter {', '.join(unknown)} (valid: {', '.join(sorted(defaults))})")
        values = {**defaults, **given}
        names = parse_ood_names(values["ood"], tuple(oods))
        member = {k: v for k, v in values.items() if k in id_params}
        return OpenSetMix(id_build(root, member), [(n, oods[n](root, {})) for n in names],
                          ood_ratio=float(values["ood_ratio"]), mix_seed=int(values["mix_seed"]), name=name)

    return DatasetSpec(name=name, version=version, task_kinds=frozenset({"classification"}), build=build,
                       check=check, root_name=root_name, params=defaults, description=description,
                       param_rules={**MIX_RULES, **(param_rules or {})})
