"""Stream protocols of online methods: continual domain streams, label-correlated streams and
batched online adaptation (docs/protocols.md).

Three ``--protocol-param`` keys, all part of the protocol hash:

* ``stream=iid`` (the default: the protocol's seeded i.i.d. order, ``rlcf_bench.online_protocol``),
  ``stream=continual`` — the datasets of a run group (same task, method, model, options and
  protocol) become one run on a *continual stream*: the domains one after another in an order
  seeded by the ``order_seed`` (``--orders N`` spreads over domain orders too), each domain's
  samples in their own seeded order, one method state through all of them, never reset. The
  run's dataset is named ``continual:A+B+…`` (the domains sorted: the order is the protocol's,
  not the name's). Besides the run's overall metrics it stores top-1 per domain
  (``domain_top1_<domain>``) and per segment of the stream (``segment_top1_<k>``, the k-th domain
  met), so what a method forgets — or gains — as the domains change is visible.
* ``stream=dirichlet:γ`` — a label-correlated order: the samples are dealt into as many time slots
  as there are classes, each class over the slots by a draw from Dirichlet(γ, …, γ) (TTAB's
  non-i.i.d. sampler, after NOTE); small γ gives long runs of one class, large γ approaches i.i.d.
* ``online_batch=B`` — batched online adaptation: a method that adapts per batch
  (``Method.adapts_per = "batch"``: Tent, SAR, ETA, LAME) receives the stream in consecutive batches of B
  and adapts on each before predicting it; per-sample methods are unaffected (their results are
  the same, under a protocol of their own).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .stream_spec import (  # the names, parsed without the rest of this module (no import cycle)
    CONTINUAL,
    CONTINUAL_PREFIX,
    ONLINE_BATCH,
    STREAM,
    StreamError,
    parse_stream,
)
from .types.components import DatasetSpec
from .types.data import MetricValue, SampleRecord
from .types.suites import RunRequest

#: The minimum a time slot of the Dirichlet sampler holds (NOTE's ``min_size``), capped by N / slots.
MIN_SLOT = 10
_MAX_DRAWS = 1000


def online_batch_of(params: Any) -> int | None:
    """The protocol's ``online_batch`` (None when not set)."""
    value = dict(params).get(ONLINE_BATCH)
    return None if value is None else int(value)


def stream_batch(method_spec: Any, protocol: Any) -> int:
    """How many samples of the stream a method that carries state receives at once: 1 for a
    per-sample method, the protocol's ``online_batch`` for a per-batch one (which must have it)."""
    if getattr(method_spec, "adapts_per", "sample") != "batch":
        return 1
    size = online_batch_of(protocol.params) if protocol is not None else None
    if size is None:
        raise StreamError(f"method {method_spec.name!r} adapts per batch: give the stream's batch size with "
                          "--protocol-param online_batch=B (e.g. 16 or 64)")
    return size


def protocol_overrides_params(request: RunRequest) -> Any:
    """A request's protocol overrides in the shape :func:`stream_batch` reads (``.params``)."""
    from .types.protocol import RunProtocol

    return RunProtocol(params=tuple(request.protocol_overrides))


# --------------------------------------------------------------------------- label-correlated order
def dirichlet_order(labels: Sequence[int], gamma: float, seed: int) -> list[int]:
    """Positions ``0..N-1`` in a label-correlated order (TTAB's non-i.i.d. sampler, after NOTE).

    The stream is cut into T = (number of classes) time slots. Each class's samples, shuffled, are
    split over the slots in proportions drawn from Dirichlet(γ·1_T); a slot already holding N/T
    samples gets no more (NOTE's balancing), and the draw is repeated until every slot holds at
    least ``min(10, N/T)`` samples. The slots are then played in turn, each one shuffled.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    classes = sorted(set(y.tolist()))
    slots = max(1, len(classes))
    min_size = min(MIN_SLOT, n // slots)
    chosen: list[list[int]] = []
    for _ in range(_MAX_DRAWS):
        chosen = [[] for _ in range(slots)]
        for c in classes:
            idx = np.flatnonzero(y == c)
            rng.shuffle(idx)
            p = rng.dirichlet(np.full(slots, gamma))
            p = np.array([q * (len(s) < n / slots) for q, s in zip(p, chosen)])
            p = p / p.sum() if p.sum() > 0 else np.full(slots, 1.0 / slots)
            cuts = (np.cumsum(p) * len(idx)).astype(int)[:-1]
            for s, part in zip(chosen, np.split(idx, cuts)):
                s.extend(int(i) for i in part)
        if min(len(s) for s in chosen) >= min_size:
            break
    out: list[int] = []
    for s in chosen:
        perm = rng.permutation(len(s))
        out.extend(s[int(i)] for i in perm)
    return out


# --------------------------------------------------------------------------- continual streams
def continual_name(datasets: Sequence[str]) -> str:
    return CONTINUAL_PREFIX + "+".join(sorted(set(datasets)))


def continual_members(name: str) -> tuple[str, ...] | None:
    """The domains of a ``continual:A+B`` dataset name (None for any other name)."""
    if not name.startswith(CONTINUAL_PREFIX):
        return None
    members = tuple(m.strip() for m in name[len(CONTINUAL_PREFIX):].split("+"))
    if len(members) < 2 or any(not m for m in members) or len(set(members)) != len(members):
        raise StreamError(f"dataset {name!r}: a continual stream names two or more distinct domains, "
                          "continual:A+B[+…]")
    return members


class ContinualData:
    """The domains of a continual stream as one classification dataset: the samples of every
    domain, in the order the domains are named, with ``domain_of(index)``. The domains must share
    their class names (one classifier through the stream); sample ids are the domains' own when
    they are unique across domains, else prefixed with the domain."""

    def __init__(self, members: Sequence[tuple[str, Any]]) -> None:
        first_name, first = members[0]
        for name, data in members[1:]:
            if tuple(data.classnames) != tuple(first.classnames):
                raise StreamError(f"continual stream: {name!r} and {first_name!r} have different class names "
                                  "(a continual stream needs one label set)")
        self.domains = tuple(name for name, _ in members)
        self._parts = [data for _, data in members]
        self._where = [(d, j) for d, data in enumerate(self._parts) for j in range(len(data))]
        self.classnames = tuple(first.classnames)
        self.templates = tuple(first.templates)
        ensemble = getattr(first, "ensemble_templates", None)
        if ensemble:
            self.ensemble_templates = tuple(ensemble)
        ids = [self._parts[d].sample_id(j) for d, j in self._where]
        self._prefix = len(set(ids)) != len(ids)

    def __len__(self) -> int:
        return len(self._where)

    def domain_of(self, index: int) -> str:
        return self.domains[self._where[index][0]]

    def sample_id(self, index: int) -> str:
        d, j = self._where[index]
        sid = self._parts[d].sample_id(j)
        return f"{self.domains[d]}/{sid}" if self._prefix else str(sid)

    def label(self, index: int) -> int:
        d, j = self._where[index]
        return int(self._parts[d].label(j))

    def load_image(self, index: int) -> Any:
        d, j = self._where[index]
        return self._parts[d].load_image(j)


def continual_spec(name: str, members: Sequence[str], member_spec: Callable[[str], DatasetSpec]) -> DatasetSpec:
    """The :class:`~rlcf_bench.types.DatasetSpec` of a continual stream over ``members``
    (``member_spec(name)`` resolves a domain); each domain is built under the same data root, with
    its own layout check. The ``--data-param`` values apply to every domain."""
    from .dataset_build import build_dataset
    from .types.protocol import stable_hash

    specs = [member_spec(m) for m in members]
    kinds = frozenset({"classification"}).intersection(*(s.task_kinds for s in specs))
    if not kinds:
        raise StreamError(f"dataset {name!r}: every domain of a continual stream must have a classification split")
    if len({s.augmix for s in specs}) > 1:
        raise StreamError(f"dataset {name!r}: its domains differ in their protocol views (augmix)")

    def build(root: Any = None, **given: Any) -> ContinualData:
        return ContinualData([(s.name, build_dataset(s, given, root)) for s in specs])

    merged: dict[str, Any] = {}
    for s in specs:
        merged.update(s.params)
    rules: dict[str, Any] = {}
    for s in specs:
        rules.update(s.param_rules)
    return DatasetSpec(
        name=name, version=stable_hash([(s.name, s.version) for s in specs], length=12), task_kinds=kinds,
        build=build, params=merged, param_rules=rules, augmix=specs[0].augmix, provider="rlcf_bench",
        root_name=next((s.root_name for s in specs if s.root_name is not None), None),
        description="continual stream of " + ", ".join(members),
    )


def stream_items(items: Sequence[tuple[int, str]], stream: str | None, *, order_seed: int,
                 domain_of: Callable[[int], str] | None, label_of: Callable[[int], int] | None,
                 iid: Callable[[list[tuple[int, str]]], list[tuple[int, str]]]
                 ) -> list[tuple[int, str]]:
    """Order the protocol's samples by its ``stream`` kind. ``iid(part)`` is the i.i.d. order
    (dataset order or the protocol's permutation, cut to the limit, then the ``order_seed``
    permutation) applied to a part of the stream.

    * continual: the domains in an order seeded by ``order_seed``, each domain's samples by
      ``iid`` (so ``--limit`` cuts every domain);
    * dirichlet: the samples ``iid`` keeps, dealt by :func:`dirichlet_order` seeded by ``order_seed``.
    """
    import random

    kind, gamma = parse_stream(stream)
    if kind == "continual":
        if domain_of is None:
            raise StreamError("stream=continual: the run's dataset is not a continual stream "
                              "(plan it with two or more datasets, or name continual:A+B)")
        groups: dict[str, list[tuple[int, str]]] = {}
        for it in items:
            groups.setdefault(domain_of(it[0]), []).append(it)
        domains = sorted(groups)
        random.Random(order_seed).shuffle(domains)
        return [it for d in domains for it in iid(groups[d])]
    kept = iid(list(items))
    if kind == "dirichlet":
        if label_of is None:
            raise StreamError("stream=dirichlet needs labelled samples (a classification task)")
        assert gamma is not None
        return [kept[i] for i in dirichlet_order([label_of(i) for i, _ in kept], gamma, order_seed)]
    return kept


# --------------------------------------------------------------------------- planning
def merge_continual(requests: Sequence[RunRequest]) -> list[RunRequest]:
    """Under ``stream=continual``, one request per run group: the requests that differ only in
    their dataset become one request on ``continual:A+B+…``. A group of one dataset is an error
    (a continual stream needs two or more domains)."""
    import dataclasses

    out: list[RunRequest] = []
    groups: dict[RunRequest, list[str]] = {}
    for r in requests:
        kind, _ = parse_stream(dict(r.protocol_overrides).get(STREAM))
        if kind != CONTINUAL or r.dataset.startswith(CONTINUAL_PREFIX):
            out.append(r)
            continue
        key = dataclasses.replace(r, dataset="")
        if key not in groups:
            groups[key] = []
            out.append(key)
        if r.dataset not in groups[key]:
            groups[key].append(r.dataset)
    merged = []
    for r in out:
        if r.dataset:
            merged.append(r)
            continue
        names = groups[r]
        if len(names) < 2:
            raise StreamError(f"stream=continual: {r.method!r} on the {r.task} task has one dataset ({names[0]}); "
                              "a continual stream needs two or more (--dataset A --dataset B …)")
        merged.append(dataclasses.replace(r, dataset=continual_name(names)))
    return merged


# --------------------------------------------------------------------------- metrics
def metric_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "domain"


def segment_metrics(dataset: Any, items: Sequence[tuple[int, str]],
                    records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
    """Top-1 (%) per domain (``domain_top1_<domain>``) and per segment of the stream
    (``segment_top1_<k>``: the k-th domain met, k from 1), with Wilson intervals; nothing for a
    dataset that is not a continual stream."""
    from .stats import wilson_interval

    domain_of = getattr(dataset, "domain_of", None)
    if domain_of is None:
        return {}
    score = {r.sample_id: r.score for r in records}
    per: dict[str, list[float]] = {}
    for index, sid in items:
        if sid in score:
            per.setdefault(domain_of(index), []).append(float(score[sid] or 0.0))
    out: dict[str, MetricValue] = {}
    for k, (domain, hits) in enumerate(per.items(), 1):  # dicts keep the stream's order
        n, h = len(hits), sum(hits)
        lo, hi = wilson_interval(int(h), n)
        value = MetricValue(100.0 * h / n, 100 * lo, 100 * hi, n)
        out[f"domain_top1_{metric_slug(domain)}"] = value
        out[f"segment_top1_{k:02d}"] = value
    return out
