"""Sharing the planned runs among processes: ``torchrun`` ranks, or ``--shard K/N`` job-array tasks.

Every process plans the same runs (docs/scaling-out.md). A run of an episodic method is
*shared*: a process computes the samples whose stable hash of the sample id falls in its slot
(:func:`rlcf_bench.sharding.sample_slot`), so which process computes a sample depends on
nothing but its id and the number of shards, and never changes a result. A run whose method
carries state across the stream (online methods, RLCF with momentum) is never split: the i-th
such run goes whole to process ``i mod N``. Each process stores its own samples; the run's metrics are stored once
every sample is.

Under ``torchrun`` the ranks form a gloo process group (each rank on its own GPU when CUDA is
used: :mod:`rlcf_bench.gpus`; no NCCL communicator, since no tensor is ever exchanged). Per shared
run, rank 0 opens (or, resuming, finds) the run and broadcasts its id; each rank computes its
shard; the ranks then exchange their outcomes and rank 0 finalises. These control messages have
a long timeout, because a rank can legitimately wait hours for a slower one. With ``--shard K/N`` there is no group:
each task computes its shard and whichever finds the run complete finalises it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import click

from .plugins import PluginHost
from .runner import ExecutionOptions, Runner, RunnerError
from .sharding import Launch, Shard
from .store import Store
from .types import RunRequest, RunSpec
from .workers import RunOutcome

TIMEOUT_ENV = "RLCF_BENCH_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 7 * 24 * 3600  # a rank may wait for a slower one's whole shard

RunOne = Callable[[Runner, RunRequest, "Shard | None"], Any]  # cli._run_one: a RunOutcome


def carries_state(host: PluginHost, req: RunRequest) -> bool:
    """Whether ``req``'s method carries state across samples (then its stream cannot be split).
    A request whose config does not even build is treated as shareable: it fails the same way
    in every process."""
    methods = host.registry("methods")
    methods.implementations(req.method)  # an unknown name fails here, with suggestions
    try:
        kind = host.registry("tasks").get(req.task).kind
        spec = methods.get(req.method, kind)
        return bool(spec.method_cls(methods.config(req.method, kind, req.method_options)).carries_state)
    except Exception:
        return False


def assign(host: PluginHost, requests: Sequence[RunRequest], shard: Shard) -> list[tuple[RunRequest, Shard | None]]:
    """This shard's work, in order: every shared run (with the shard), then its whole streams
    (shard ``None``). Shared runs come first so that the ranks meet at their synchronisation
    points early and the long single-rank streams overlap at the end."""
    stream = [carries_state(host, r) for r in requests]
    shared = [r for r, s in zip(requests, stream) if not s]
    streams = [r for r, s in zip(requests, stream) if s]
    return [(r, shard) for r in shared] + [(r, None) for i, r in enumerate(streams) if shard.takes_stream(i)]


def rank_device(launch: Launch, requested: str | None) -> str:
    """The rank's device: GPU ``LOCAL_RANK mod GPUs`` when CUDA is used, refused (one line,
    before the group forms) when ranks would share a GPU without ``RLCF_BENCH_RANKS_PER_GPU``
    (:mod:`rlcf_bench.gpus`); a CPU ``--device`` passes unchanged."""
    from .gpus import DeviceMappingError, process_device

    try:
        return process_device(launch.local_rank, launch.local_world, requested, what="ranks")
    except DeviceMappingError as exc:
        raise click.UsageError(str(exc)) from exc


def check_store_for(launch: Launch, url: str) -> None:
    """SQLite's locking (and its WAL's shared memory) holds among processes of one host only; a
    job on several nodes needs a server database."""
    if launch.several_nodes and url.startswith("sqlite"):
        raise click.UsageError(
            f"a job on several nodes ({launch.world} ranks, {launch.local_world} per node) needs a server "
            f"database, not SQLite ({url}): pass --db postgresql+pg8000://user@host/db")


class Group:
    """The process group, on gloo: the ranks exchange only small control messages (Python
    objects, host-side), never tensors, so no NCCL communicator is created (it would hold GPU
    memory and a stream for nothing). A rank on a GPU makes it its current device."""

    def __init__(self, launch: Launch, device: str) -> None:
        import torch
        import torch.distributed as dist

        self.launch, self._dist = launch, dist
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="gloo", timeout=timeout)
        self.backend = "gloo"
        self.control: Any = None  # the default (gloo) group carries the control messages

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0, on every rank."""
        box = [obj]
        self._dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, by rank, on every rank."""
        out: list[Any] = [None] * self.launch.world
        self._dist.all_gather_object(out, obj, group=self.control)
        return out

    def close(self) -> None:
        self._dist.destroy_process_group()


def _why(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class RankRunner(Runner):
    """A runner whose shared runs are run together with the other ranks of a process group.

    Per shared run every rank takes part in exactly three exchanges, in order, whatever fails
    where: (1) rank 0 broadcasts the run it opened (or why it could not); (2) all ranks gather
    their outcomes; (3) rank 0 broadcasts whether it finalised. A rank that fails early catches
    up on the exchanges it missed, so the ranks never wait on mismatched messages and go on to
    the next run together."""

    def __init__(self, host: PluginHost, store: Store, options: ExecutionOptions, group: Group) -> None:
        super().__init__(host, store, options)
        self.group = group
        self._shared = False
        self._stage = 0

    @property
    def _rank(self) -> int:
        return self.group.launch.rank

    def run(self, req: RunRequest, shard: Shard | None = None) -> Any:
        self._shared, self._stage = shard is not None, 0
        if shard is None:  # a whole stream: this rank's alone
            return super().run(req)
        try:
            result = super().run(req, shard)
        except Exception as exc:
            self._catch_up(_why(exc))
            raise
        self._catch_up(None)
        return result

    def _catch_up(self, error: str | None) -> None:
        if self._stage < 1:
            self.group.broadcast((None, error) if self._rank == 0 else None)
        if self._stage < 2:
            self.group.gather(error)
        if self._stage < 3:
            self.group.broadcast(None)
        self._stage = 3

    def _open_run(self, spec: RunSpec, **kwargs: Any) -> tuple[Any, bool]:
        if not self._shared:
            return super()._open_run(spec, **kwargs)
        opened: tuple[int, str] | None = None
        failure: Exception | None = None
        if self._rank == 0:
            try:
                run, _ = super()._open_run(spec, **kwargs)
                opened = (run.id, spec.key)
            except Exception as exc:
                failure = exc
        opened, error = self.group.broadcast((opened, None if failure is None else _why(failure)))
        self._stage = 1
        if failure is not None:
            raise failure
        if opened is None:
            raise RunnerError(f"rank 0 could not open the run: {error}")
        run_id, key = opened
        if key != spec.key:
            raise RunnerError(f"rank {self._rank} planned another run than rank 0 (key {spec.key}, rank 0: {key}): "
                              "every rank must run the same code, options, weights and data")
        return self.store.get_run(run_id), True

    def _finalise(self, run_id: int, task: Any, method: Any, episodic: bool, items: Sequence[tuple[int, str]],
                  policy: Any) -> None:
        if not self._shared:
            return super()._finalise(run_id, task, method, episodic, items, policy)
        outcomes = self.group.gather(None)
        self._stage = 2
        failed = [f"rank {r}: {e}" for r, e in enumerate(outcomes) if e]
        failure: Exception | None = None
        if not failed and self._rank == 0:
            try:
                super()._finalise(run_id, task, method, episodic, items, policy)
            except Exception as exc:
                failure = exc
        final = self.group.broadcast(None if failure is None else _why(failure))
        self._stage = 3
        if failed:
            raise RunnerError("the run is not finalised, another rank failed (" + "; ".join(failed) + ")")
        if failure is not None:
            raise failure
        if final is not None:
            raise RunnerError(f"rank 0 could not finalise the run: {final}")


@dataclass
class Shared:
    """What ``execute`` leaves to the command: the store, one outcome per planned run (a run's
    error on any rank wins) and whether this process prints the summary."""

    store: Store
    outcomes: list[Any]
    lead: bool


def execute(host: PluginHost, requests: Sequence[RunRequest], *, db: str | None, options: ExecutionOptions,
            shard: Shard | None, quiet: bool, run_one: RunOne, references: Callable[[Store], None],
            progress: Any) -> Shared:
    """Run this process's share of ``requests``: as a torchrun rank, or as ``--shard K/N``."""
    launch = Launch.from_env()
    if launch is None:
        if shard is None:
            raise click.UsageError("nothing to share: pass --shard K/N or start the command with torchrun")
        store = Store(db)
        references(store)
        done = _loop(Runner(host, store, options), _numbered(host, requests, shard), quiet, f"[shard {shard}] ",
                     run_one, progress)
        return Shared(store, [o for _, o in done], lead=True)
    if shard is not None:
        raise click.UsageError("--shard K/N is for jobs without a process group; "
                               "under torchrun the ranks are the shards")
    if "RLCF_BENCH_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["RLCF_BENCH_THREADS"] = str(max(1, cores // launch.local_world))
    options = replace(options, device=rank_device(launch, options.device))
    group = Group(launch, options.device or "cpu")
    try:
        store = _open_store_everywhere(group, db, references)
        runner = RankRunner(host, store, options, group)
        work = _numbered(host, requests, Shard(launch.rank, launch.world))
        done = _loop(runner, work, quiet or launch.rank != 0, launch.label, run_one, progress)
        everyone = group.gather(done)  # every rank learns every outcome and exits with the job's status
        merged: dict[int, Any] = {}
        for i, outcome in (pair for pairs in everyone for pair in pairs):
            if i not in merged or (outcome.error is not None and merged[i].error is None):
                merged[i] = outcome
        return Shared(store, [merged[i] for i in sorted(merged)], lead=launch.rank == 0)
    finally:
        group.close()


def _numbered(host: PluginHost, requests: Sequence[RunRequest],
              shard: Shard) -> list[tuple[int, RunRequest, Shard | None]]:
    """:func:`assign`, each request with its position in the plan."""
    position = {id(r): i for i, r in enumerate(requests)}
    return [(position[id(r)], r, s) for r, s in assign(host, requests, shard)]


def _open_store_everywhere(group: Group, db: str | None, references: Callable[[Store], None]) -> Store:
    """Rank 0 creates the store (tables, references) first, then every rank opens it; a rank that
    cannot is named, and all ranks stop before anything is computed."""
    launch = group.launch
    store: Store | None = None
    error: str | None = None
    if launch.rank == 0:
        try:
            store = Store(db)
            check_store_for(launch, store.url)
            references(store)
        except click.UsageError as exc:
            error = exc.format_message()
        except Exception as exc:
            error = _why(exc)
    first = group.broadcast(error)
    if first is None and launch.rank != 0:
        try:
            store = Store(db)
        except Exception as exc:
            error = _why(exc)
    errors = group.gather((socket.gethostname(), error))
    bad = [f"rank {r} on {host} cannot use the store: {e}" for r, (host, e) in enumerate(errors) if e]
    if bad:
        raise click.ClickException("; ".join(bad) + " (nothing was run; check --db on every node)")
    assert store is not None
    return store


def _loop(runner: Runner, work: Sequence[tuple[int, RunRequest, Shard | None]], quiet: bool, label: str,
          run_one: RunOne, progress: Any) -> list[tuple[int, Any]]:
    """Run ``work`` in order; each run's plan position and outcome."""
    progress.n_runs = len(work)
    done: list[tuple[int, Any]] = []
    for n, (i, req, shard) in enumerate(work, 1):
        if not quiet:
            part = "its shard" if shard is not None else "whole (it carries state)"
            progress.write(f"[{n}/{len(work)}] {req.describe()}  — {part}")
        try:
            outcome = run_one(runner, req, shard)
        except Exception as exc:  # e.g. the store failing mid-run: this rank's error, then the next run
            outcome = RunOutcome("", _why(exc))
        progress.run_done(outcome.run_id)
        if outcome.error is not None:
            progress.write(f"{label}error [{req.describe()}]: {outcome.error}")
        elif not quiet:
            progress.write(f"      {outcome.line}")
        done.append((i, outcome))
    return done
