"""Which process computes what, without torch: shards of a run by sample id, and where a process
sits in a torchrun launch (docs/scaling-out.md). :mod:`rlcf_bench.distributed` runs the shares."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def sample_slot(sample_id: str, count: int) -> int:
    """The shard (0 ≤ slot < count) that computes ``sample_id``: a stable hash (not Python's
    salted ``hash``), identical in every process, on every machine, in every session."""
    digest = hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 ≤ index < count): a torchrun rank or a job-array task."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` → ``Shard(K, N)``; anything else is a one-line :class:`ValueError`."""
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"--shard {text!r}: expected K/N, shard K of N counted from 0 (e.g. --shard 0/4)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1:
            raise ValueError(f"--shard {text!r}: expected N >= 1 shards")
        if index >= count:
            raise ValueError(f"--shard {text!r}: expected 0 <= K < N "
                             f"(the shards of {count} are 0/{count} ... {count - 1}/{count})")
        return cls(index, count)

    def takes_sample(self, sample_id: str) -> bool:
        return sample_slot(sample_id, self.count) == self.index

    def takes_stream(self, position: int) -> bool:
        """Whether the ``position``-th stream (a run that carries state) is this shard's."""
        return position % self.count == self.index

    def others(self, items: Sequence[tuple[int, str]], stream: bool) -> set[str]:
        """The ids of ``items`` that other shards compute. A stream found only at run time (a
        method whose state carrying was not known before set-up) goes to shard 0 whole."""
        if stream:
            return set() if self.index == 0 else {sid for _, sid in items}
        return {sid for _, sid in items if not self.takes_sample(sid)}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Launch:
    """What ``torchrun`` (or ``srun`` with the same variables) tells a process about its place."""

    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Launch | None:
        """The launch, or None for a plain single process (also ``--nproc-per-node 1``)."""
        env = os.environ if env is None else env
        if "RANK" not in env or "WORLD_SIZE" not in env or int(env["WORLD_SIZE"]) <= 1:
            return None
        world = int(env["WORLD_SIZE"])
        return cls(rank=int(env["RANK"]), world=world, local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
                   local_world=int(env.get("LOCAL_WORLD_SIZE", world)))

    @property
    def several_nodes(self) -> bool:
        return self.world > self.local_world

    @property
    def label(self) -> str:
        return f"[rank {self.rank}] "


def launched() -> bool:
    return Launch.from_env() is not None


def leads() -> bool:
    """Whether this process shows progress and the summary: a single process, a ``--shard``
    task, or rank 0 of a torchrun job."""
    launch = Launch.from_env()
    return launch is None or launch.rank == 0
