"""The online protocol: stream orders, and what an online run stores besides its accuracy.

* **Order.** ``--protocol-param order_seed=N`` (the protocol parameter :data:`ORDER_SEED`) makes
  the stream a permutation, seeded by ``N`` alone, of the protocol's samples (after ``--limit``,
  so all orders of a run see the same samples; the views stay seeded by the protocol's ``seed``). Being a protocol parameter, it is part of the protocol hash. An episodic
  method's per-sample results do not depend on it; an online method's do.
* **Several orders.** :func:`expand_orders` gives every planned run of a task that an online
  method supports a stream order: ``orders`` of them (seeds 0..orders−1) for online methods, seed 0
  for episodic ones — so that order 0 of an online method is ranked with the episodic methods and
  the other orders give its spread (reports: mean and spread across orders), and a run planned
  alone has the protocol hash it has in a whole suite.
* **Diagnostics stored at the end of a run** (as metrics, so resume and reports need nothing
  new): for a method that carries state, the running accuracy after 10 %, 50 % and 100 % of the
  stream (:func:`stream_metrics`, in stream order) and the size of its state
  (:func:`state_metrics`, from ``Method.state_size()``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Sequence
from typing import Any

from .types.data import MetricValue, SampleRecord

ORDER_SEED = "order_seed"
_STATE_NAME = re.compile(r"state_[a-z0-9_]{1,58}")
STREAM_FRACTIONS: tuple[int, ...] = (10, 50, 100)


def stream_metric_name(percent: int) -> str:
    return f"stream_top1_{percent:03d}pct"  # zero-padded: the report sorts metric names


def order_seed_of(params: Any) -> int | None:
    """The order seed of a protocol's ``params`` (pairs or mapping), or None."""
    value = dict(params).get(ORDER_SEED)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{ORDER_SEED}={value!r}: expected an integer") from None


def stream_order(items: Sequence[Any], order: str, seed: int, params: Any, limit: int | None = None) -> list[Any]:
    """The protocol's stream: dataset order (``fixed``) or a permutation seeded by ``seed``
    (``shuffled``), cut to ``limit``, then — with an ``order_seed`` — permuted by that seed, so
    every order of a limited run has the same samples."""
    out = list(items)
    if order == "shuffled":
        random.Random(seed).shuffle(out)
    if limit is not None:
        out = out[:limit]
    order_seed = order_seed_of(params)
    if order_seed is not None:
        random.Random(order_seed).shuffle(out)
    return out


def state_metrics(method: Any) -> dict[str, MetricValue]:
    """The method's ``state_size()`` as exact metrics (the interval is the value itself). The
    names become metric names in every report format, so only ``state_*`` identifiers are taken."""
    sizes = method.state_size() if hasattr(method, "state_size") else {}
    for name in sizes:
        if not (isinstance(name, str) and _STATE_NAME.fullmatch(name)):
            raise ValueError(f"{type(method).__name__}.state_size(): key {name!r} is not a name like 'state_entries' "
                             "(expected 'state_' followed by lower-case letters, digits or '_', at most 64 characters)")
    return {name: MetricValue(float(v), float(v), float(v), None) for name, v in sizes.items()}


def stream_metrics(items: Sequence[tuple[int, str]], records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
    """Running top-1 (%) over the first ⌈p·N⌉ samples of the stream ``items``, p = 10/50/100 %,
    with Wilson intervals. Samples stored without a score (an open-set stream's OOD samples) are
    not counted: the curve is over the scored samples, in stream order."""
    from .stats import wilson_interval

    score = {r.sample_id: r.score for r in records if r.score is not None}
    stream = [float(score[sid]) for _, sid in items if sid in score]
    out: dict[str, MetricValue] = {}
    for pct in STREAM_FRACTIONS:
        n = max(1, math.ceil(pct * len(stream) / 100)) if stream else 0
        hits = sum(stream[:n])
        lo, hi = wilson_interval(int(hits), n)
        out[stream_metric_name(pct)] = MetricValue(100.0 * hits / n if n else math.nan, 100 * lo, 100 * hi, n)
    return out


def online_metrics(method: Any, items: Sequence[tuple[int, str]],
                   records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
    """What the runner stores at the end of a run: the running accuracy of a method that carries
    state, and the ``state_size()`` of any method that reports one (an episodic method's per-sample
    state, e.g. TTL's adapters)."""
    if not getattr(method, "carries_state", False):
        return state_metrics(method)
    return {**stream_metrics(items, records), **state_metrics(method)}


def running_accuracy(scores: Sequence[float | None]) -> list[float]:
    """``100 · mean(scores[:i+1])`` for every prefix (the stream curve)."""
    out, total = [], 0.0
    for i, s in enumerate(scores, 1):
        total += float(s or 0.0)
        out.append(100.0 * total / i)
    return out


def expand_orders(requests: Sequence[Any], orders: int, is_online: Any, ordered: Any) -> list[Any]:
    """Give every request ``ordered(req)`` selects a stream order: ``orders`` of them (seeds
    0..orders−1) when ``is_online(req)``, order seed 0 otherwise (so order 0 of an online method
    shares the protocol hash of the episodic runs it is ranked with). Other requests, and requests
    with an explicit ``order_seed``, are unchanged."""
    if orders < 1:
        raise ValueError(f"--orders must be ≥ 1, got {orders}")
    out: list[Any] = []
    for r in requests:
        overrides = dict(r.protocol_overrides)
        if not ordered(r) or ORDER_SEED in overrides:
            seeds: Sequence[int | None] = (None,)
        else:
            seeds = range(orders) if is_online(r) else (0,)
        for k in seeds:
            new = r if k is None else dataclasses.replace(
                r, protocol_overrides=tuple(sorted({**overrides, ORDER_SEED: k}.items())))
            if new not in out:
                out.append(new)
    return out
