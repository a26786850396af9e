"""Memories of past test samples, shared by the online TTA methods (TDA, DMN-ZS, DPE, BoostAdapter).

Three primitives, each defined once here (docs/online.md explains the conventions):

* :func:`normalised_entropy` — the entropy of a prediction divided by ``log2 C``. The official
  TDA, DPE and BoostAdapter code measure the entropy in **nats** and divide it by ``log2`` of the
  class count (``ĥ = H / log2 C = ln 2 · H / ln C``, so ``ĥ`` never reaches 1); their thresholds
  (TDA's negative-cache gate 0.2–0.5, DPE's 0.1) are meant in that unit. ``log2_quirk=False``
  gives the textbook normalisation ``H / ln C`` instead.
* :func:`cache_logits` — Tip-Adapter's cache read-out ``α · exp(−β (1 − q·K)) · V`` for a query
  ``q``, keys ``K`` and values ``V`` (one-hot labels or class masks).
* :class:`ClassCache` — a per-class, capacity-bounded priority cache: each class keeps at most
  ``capacity`` entries, the ones with the lowest score (entropy) seen so far (or, with
  ``fifo=True``, the latest ones: BoostAdapter's negative cache). Storage is
  pre-allocated tensors on the device (``[C, slots, d]`` keys, ``[C, slots]`` scores, optional
  ``[C, slots, P]`` payloads), so its memory is fixed by the capacity whatever the stream length;
  an insert and a read are a handful of tensor operations with no host synchronisation.

The capacity rule, exactly: a class's filled slots are always a prefix. If fewer than
``capacity`` are filled, the new entry goes into the next free slot. Otherwise it replaces the
*worst* filled entry — the highest score, and among equal highest scores the most recently
written one (the entry a stable sort by score puts last, as in the official code) — but only if
its own score is strictly lower; otherwise it is dropped (``replace_always=True``: it replaces the
worst entry whatever its own score, as TTA-VLM's DMN-weak memory). A ``fifo`` cache always writes:
into the next free slot, else over the class's oldest entry (the earliest written).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..lazy import LazyModule

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)


def normalised_entropy(entropy_nats: Any, n_classes: int, *, log2_quirk: bool = True) -> Any:
    """``H / log2 C`` (the official code's unit, default) or ``H / ln C`` (``log2_quirk=False``)."""
    if n_classes < 2:
        raise ValueError(f"normalised entropy needs at least 2 classes, got {n_classes}")
    return entropy_nats / (math.log2(n_classes) if log2_quirk else math.log(n_classes))


def affinity_weights(query: torch.Tensor, keys: torch.Tensor, beta: float) -> torch.Tensor:
    """``exp(−β (1 − q·k))`` for queries ``[B, d]`` and keys ``[..., d]`` → ``[B, ...]``."""
    sim = torch.einsum("bd,...d->b...", query.float(), keys.float())
    return torch.exp(-beta * (1.0 - sim))


def cache_logits(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, alpha: float,
                 beta: float) -> torch.Tensor:
    """Tip-Adapter's cache logits ``α · exp(−β (1 − q Kᵀ)) V``: query ``[B, d]``, keys ``[M, d]``,
    values ``[M, C]`` → ``[B, C]``. An empty cache (M = 0) gives zeros."""
    if keys.shape[0] == 0:
        return torch.zeros(query.shape[0], values.shape[-1], device=query.device)
    return alpha * affinity_weights(query, keys, beta) @ values.float()


class ClassCache:
    """Per-class priority cache with pre-allocated device storage (module docstring: the rule).

    ``slots`` (≥ ``capacity``) is the allocated room per class; inserts use ``capacity`` unless a
    larger one is passed (BoostAdapter's per-sample extension writes into a copy with
    ``capacity + δ``).
    """

    def __init__(self, n_classes: int, capacity: int, dim: int, *, device: Any, slots: int | None = None,
                 payload_dim: int = 0, fifo: bool = False, replace_always: bool = False) -> None:
        slots = capacity if slots is None else slots
        if capacity < 1 or slots < capacity:
            raise ValueError(f"cache capacity must be ≥ 1 and ≤ slots, got capacity={capacity}, slots={slots}")
        self.n_classes, self.capacity, self.slots, self.dim = int(n_classes), int(capacity), int(slots), int(dim)
        self.fifo, self.replace_always = fifo, replace_always
        self.keys = torch.zeros(n_classes, slots, dim, device=device)
        self.scores = torch.full((n_classes, slots), math.inf, device=device)
        self.written = torch.zeros(n_classes, slots, dtype=torch.long, device=device)  # write sequence number
        self.payload = torch.zeros(n_classes, slots, payload_dim, device=device) if payload_dim else None
        self._seq = torch.zeros((), dtype=torch.long, device=device)  # writes so far, kept on the device

    # ------------------------------------------------------------------ writes
    def insert(self, cls: Any, key: torch.Tensor, score: Any, payload: torch.Tensor | None = None,
               capacity: int | None = None, when: torch.Tensor | None = None) -> torch.Tensor:
        """Offer ``(key, score[, payload])`` to class ``cls`` (an int or a 0-d tensor); ``when`` (a
        0-d bool tensor) gates the offer without a host synchronisation. Returns a 0-d bool tensor:
        written or not."""
        cap = self.capacity if capacity is None else int(capacity)
        if not 1 <= cap <= self.slots:
            raise ValueError(f"capacity {cap} outside 1..{self.slots}")
        dev = self.scores.device
        c = torch.as_tensor(cls, device=dev).long().reshape(())
        s = torch.as_tensor(score, device=dev, dtype=self.scores.dtype).reshape(())
        row, seq = self.scores[c, :cap], self.written[c, :cap]
        filled = torch.isfinite(row).sum()
        worst_score = row.max()
        tied = row == worst_score
        worst = torch.where(tied, seq, torch.full_like(seq, -1)).argmax()  # latest write among the worst
        has_room = filled < cap
        if self.fifo:
            oldest = torch.where(torch.isfinite(row), seq, torch.full_like(seq, torch.iinfo(seq.dtype).max)).argmin()
            slot = torch.where(has_room, filled.clamp(max=cap - 1), oldest)
            do = torch.ones((), dtype=torch.bool, device=dev)
        else:
            slot = torch.where(has_room, filled.clamp(max=cap - 1), worst)
            do = has_room | (s < worst_score) | self.replace_always
        if when is not None:
            do = do & when.to(dev).reshape(())
        self._seq += 1
        self.keys[c, slot] = torch.where(do, key.to(self.keys.dtype).reshape(-1), self.keys[c, slot])
        self.scores[c, slot] = torch.where(do, s, self.scores[c, slot])
        self.written[c, slot] = torch.where(do, self._seq, self.written[c, slot])
        if self.payload is not None:
            assert payload is not None, "this cache stores a payload with every entry"
            self.payload[c, slot] = torch.where(do, payload.to(self.payload.dtype).reshape(-1), self.payload[c, slot])
        return do

    def copy(self, rows: torch.Tensor | None = None) -> ClassCache:
        """A copy (of all classes, or only of ``rows``, re-indexed 0..len(rows)-1)."""
        new = ClassCache.__new__(ClassCache)
        new.__dict__.update(self.__dict__)
        pick: Callable[[Any], Any] = (lambda t: t.clone()) if rows is None else (lambda t: t[rows].clone())
        new.keys, new.scores, new.written = pick(self.keys), pick(self.scores), pick(self.written)
        new._seq = self._seq.clone()
        new.payload = None if self.payload is None else pick(self.payload)
        new.n_classes = self.n_classes if rows is None else int(rows.numel())
        return new

    # ------------------------------------------------------------------ reads
    @property
    def valid(self) -> torch.Tensor:
        """``[C, slots]`` bool: which slots hold an entry."""
        return torch.isfinite(self.scores)

    def class_logits(self, query: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        """Cache logits with one-hot values (the label of an entry is its class): ``[B, d]`` →
        ``[B, C]`` = ``α Σ_slots exp(−β(1 − q·k)) 1[filled]`` per class."""
        w = affinity_weights(query, self.keys, beta) * self.valid
        return alpha * w.sum(-1)

    def payload_logits(self, query: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        """Cache logits whose values are the stored payloads ``[C, slots, P]`` → ``[B, P]``."""
        assert self.payload is not None
        w = affinity_weights(query, self.keys, beta) * self.valid
        return alpha * torch.einsum("bcs,csp->bp", w, self.payload)

    def class_means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(which classes hold at least one entry ``[C]`` bool, the mean of each class's keys
        ``[C, d]``, zeros for an empty class). Fixed shapes, so no host synchronisation."""
        valid = self.valid
        counts = valid.sum(-1)
        sums = (self.keys * valid.unsqueeze(-1)).sum(1)
        return counts > 0, sums / counts.clamp(min=1).unsqueeze(-1)

    # ------------------------------------------------------------------ size
    def entries(self) -> int:
        return int(self.valid.sum())

    def nbytes(self) -> int:
        tensors = [self.keys, self.scores, self.written] + ([self.payload] if self.payload is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)
