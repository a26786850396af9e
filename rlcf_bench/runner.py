"""The runner: executes one (task, dataset, method, model) run under the task's frozen protocol.

It owns the clock and the record. ``adapt`` (reset + adaptation + online bookkeeping) and
``predict`` are timed separately per executed batch, device-synchronised, with the first
``warmup`` batches of a process excluded from the latency summary; peak memory is CUDA's
``max_memory_allocated`` on GPU, the RSS high-water mark on CPU. Each batch's records are stored
in one transaction, so a killed run resumes where it stopped without double-counting.

A run may be shared by several processes (``torchrun`` ranks or ``--shard K/N`` jobs, see
:mod:`rlcf_bench.distributed`): ``run(req, shard=...)`` then computes only the shard's samples
(a stream that carries state is never split: shard 0 computes all of it), and whichever process
finds every sample stored finalises the metrics.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .device import (
    AmpHelper,
    Clock,
    PeakMemory,
    SectionTimer,
    apply_precision_settings,
    configure_threads,
    device_name,
    resolve_precision,
    select_device,
)
from .errors import BenchError, DataError, describe, resume_hint
from .online_protocol import online_metrics
from .plugins import PluginHost
from .session import ComponentSession
from .store import ExecutedBatch, Store
from .streams import segment_metrics, stream_batch
from .task import TaskRuntime
from .types import (
    SKIPPED,
    LatencyStats,
    MethodContext,
    MethodSpec,
    MetricValue,
    RunError,
    RunProtocol,
    RunRequest,
    RunResult,
    RunSpec,
    SampleRecord,
    StepRecord,
    protocol_overrides,
    resolve_view_policy,
)

if TYPE_CHECKING:
    from .sharding import Shard
    from .types import DatasetSpec, TaskSpec


@dataclass
class ExecutionOptions:
    """How to run (never part of the protocol): device, batch size, warm-up, data root."""

    device: str | None = None
    batch_size: int | None = None
    warmup: int = 1
    data_root: str | None = None
    fresh: bool = False
    #: With ``fresh``: when the command began. An attempt of the same run started since then was
    #: started by another process of the same ``--fresh`` command, and is joined, not doubled.
    fresh_since: datetime | None = None
    progress: Callable[[str], None] | None = None
    on_corrupt: str = "fail"  # a sample whose file cannot be decoded: "fail" the run, or "skip" it (recorded)
    feature_cache: str | None = None  # folder of the shared frozen view-feature cache (rlcf_bench.view_cache)
    #: A method that carries state runs one sample at a time; its results are stored every
    #: ``stream_flush`` samples or ``stream_flush_s`` seconds, at the end, and when the run fails. A process
    #: killed outright loses at most the unstored ones: a resumed run replays the stored prefix
    #: and recomputes them, the same results (docs/concurrency.md#streams).
    stream_flush: int = 16
    stream_flush_s: float = 2.0


class RunnerError(RuntimeError):
    pass


#: ``MethodContext`` fields the runner fills; a task's context fields may fill the others.
_RUNNER_FIELDS = frozenset({"task", "protocol", "device", "amp", "model", "reward_model", "seed", "cache", "dataset",
                            "task_fields"})
_CONTEXT_FIELDS = frozenset(f.name for f in dataclasses.fields(MethodContext)) - _RUNNER_FIELDS


def context_kwargs(fields: dict[str, Any]) -> dict[str, Any]:
    """A task's context fields as ``MethodContext`` arguments: the context's optional fields by
    name, any other key in ``task_fields`` (a new task needs no new field on the host's context)."""
    clash = sorted(set(fields) & _RUNNER_FIELDS)
    if clash:
        raise RunnerError(f"a task's context fields may not set {', '.join(clash)} (the runner's)")
    known = {k: v for k, v in fields.items() if k in _CONTEXT_FIELDS}
    return {**known, "task_fields": {k: v for k, v in fields.items() if k not in _CONTEXT_FIELDS}}


POLL_S = 0.5  # how often a process waiting for another's claims looks again
#: Samples adapted at once when ``--batch-size`` is not given (capped by a method's ``max_batch``;
#: 1 for methods that carry state). 8 on the CPU too: the image-tower tuners run their per-sample
#: weight copies as grouped convolutions, whose fixed per-operation cost 8 samples share better than
#: 4 (about a quarter less time per sample, docs/performance.md#batch-size).
DEFAULT_BATCH_SIZE = 8


class MethodError(BenchError):
    """A method's own code failed (``phase``: setup, adapt, predict ...); names its plugin."""

    def __init__(self, spec: Any, phase: str, exc: BaseException) -> None:
        super().__init__(f"method {spec.name!r} (plugin {spec.provider or '?'}) failed in {phase}", describe(exc))
        self.exit_code = 1


class Runner:
    """Runs requests against one store with one plugin host; loaded models are cached across
    the runs of a session (methods restore whatever they tune when a run ends)."""

    def __init__(self, host: PluginHost, store: Store, options: ExecutionOptions | None = None,
                 session: ComponentSession | None = None) -> None:
        self.host = host
        self.store = store
        self.options = options or ExecutionOptions()
        configure_threads()
        self.device = select_device(self.options.device)
        self.session = session or ComponentSession(host, device=self.device, data_root=self.options.data_root)
        self._stream_state = False  # set while this process holds a stream method's state
        self._stream_unit = 1  # the running stream's batch: 1, or the protocol's online_batch (rlcf_bench.streams)
        self._amp: AmpHelper | None = None  # the running run's (its loss scales restart per batch)

    # ------------------------------------------------------------------ one run
    def prepare(self, req: RunRequest) -> tuple[RunSpec, TaskSpec, DatasetSpec, tuple[MethodSpec, object]]:
        """Resolve names to specs and build the run's identity (no model is loaded here)."""
        task_spec = self.host.registry("tasks").get(req.task)
        ds_spec = self.host.dataset(req.dataset, dict(req.dataset_params))
        methods = self.host.registry("methods")
        supported = methods.tasks_of(req.method)
        if task_spec.kind not in ds_spec.task_kinds:
            raise RunnerError(f"dataset {ds_spec.name!r} has no {task_spec.kind} split (it supports "
                              f"{', '.join(sorted(ds_spec.task_kinds))})")
        if task_spec.kind not in supported:
            raise RunnerError(f"method {req.method!r} does not support task {task_spec.kind!r} "
                              f"(it supports {', '.join(sorted(supported))})")
        method_spec = methods.get(req.method, task_spec.kind)
        if "reward_model" in method_spec.requires and not req.reward_model:
            raise RunnerError(f"method {method_spec.name!r} needs --reward-model")
        config = methods.config(req.method, task_spec.kind, req.method_options)
        config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else {}
        protocol = task_spec.protocol.replace(augmix=ds_spec.augmix)
        try:
            overrides = protocol_overrides(dict(req.protocol_overrides))
        except ValueError as exc:
            raise RunnerError(str(exc)) from exc
        params = dict(protocol.params)
        for key in list(overrides):
            if key not in {f.name for f in dataclasses.fields(RunProtocol)}:
                params[key] = overrides.pop(key)
        protocol = protocol.replace(**overrides, params=tuple(sorted(params.items())))
        try:
            protocol = resolve_view_policy(protocol, method_spec.view_policy, ds_spec.name)
        except ValueError as exc:
            raise RunnerError(str(exc)) from exc
        protocol = protocol.replace(precision=resolve_precision(protocol.precision, self.device))
        try:
            stream_batch(method_spec, protocol)  # a per-batch method needs the protocol's online_batch
        except ValueError as exc:
            raise RunnerError(str(exc)) from exc
        uses_reward = "reward_model" in method_spec.requires
        spec = RunSpec(
            task=task_spec.name, task_version=task_spec.version, dataset=ds_spec.name, dataset_version=ds_spec.version,
            dataset_params=dict(req.dataset_params), method=method_spec.name, method_version=method_spec.version,
            method_config=config_dict, model=req.model, model_version="", reward_model=req.reward_model if uses_reward else None,
            protocol=protocol, seed=protocol.seed, device=self.device.type, bench_version=__version__,
        )
        return spec, task_spec, ds_spec, (method_spec, config)

    def run(self, req: RunRequest, shard: Shard | None = None) -> RunResult:
        """Run ``req`` to the end, or (``shard``) store the shard's samples and finalise the run
        only if that completes it."""
        spec, task_spec, ds_spec, (method_spec, config) = self.prepare(req)
        # Versions of weights are part of the identity: resolve them before looking up the run.
        spec = dataclasses.replace(
            spec, model_version=self.session.model_version(req.model),
            reward_model_version=self.session.reward_version(spec.reward_model) if spec.reward_model else None,
        )
        dataset = self.session.dataset(ds_spec, dict(req.dataset_params))
        content_version = getattr(dataset, "content_version", None)
        if content_version:  # data addressed by path: its identity is its content (a manifest hash)
            spec = dataclasses.replace(spec, dataset_version=str(content_version))
        task: TaskRuntime = task_spec.build(dataset, spec.protocol)
        items = task.samples()
        from .provenance import provenance

        prov = provenance()
        # the numeric switches of the run's precision (TF32, cuDNN), set now and stored with it
        prov["precision_settings"] = apply_precision_settings(spec.protocol.precision)
        official = spec.protocol.limit is None and not prov.get("git_dirty")
        plugins = [dataclasses.asdict(p) for p in self.host.plugin_infos()]
        run, resumed = self._open_run(
            spec, kind=task_spec.kind, n_total=len(items), provenance=prov, plugins=plugins,
            device_name=device_name(self.device), official=official, fresh=self.options.fresh,
            fresh_since=self.options.fresh_since,
        )
        self.store.record_task(task_spec.name, task_spec.version, task_spec.metrics.as_dict())
        if run.status == "finished" and run.n_done >= len(items):
            return dataclasses.replace(self._result_from_store(run.id, spec), reused=True)
        done = self.store.done_sample_ids(run.id)
        self.host.run_start(run.id, spec, len(items), len(done))
        method: Any = None
        ready = False  # reset() only a method whose setup succeeded: clean-up must not mask the cause
        try:
            policy = self.session.model(req.model)
            reward = self.session.reward_model(spec.reward_model, policy) if spec.reward_model else None
            amp = AmpHelper(self.device, spec.protocol.precision)
            timer = SectionTimer(self.device)
            ctx = MethodContext(
                task=task_spec.kind, protocol=spec.protocol, device=self.device, amp=amp, model=policy,
                reward_model=reward, seed=spec.seed, dataset=spec.dataset, timer=timer, stream_length=len(items),
                **context_kwargs(task.context_fields(policy, self.device)),
            )
            if self.options.feature_cache and self.device.type == "cpu":  # CPU only: docs/view-cache.md
                from .view_cache import CONTEXT_KEY, FeatureStore, RunViewFeatures, run_key

                store = FeatureStore(self.options.feature_cache)
                ctx.cache[CONTEXT_KEY] = RunViewFeatures(store, run_key(spec, policy), timer)
            method = method_spec.method_cls(config)
            try:
                method.setup(ctx)
            except Exception as exc:
                raise MethodError(method_spec, "setup", exc) from exc
            ready = True
            self._stream_unit = stream_batch(method_spec, spec.protocol)  # a stream's batch (replays use it)
            others = set() if shard is None else shard.others(items, method.carries_state)
            mine = [it for it in items if it[1] not in others]
            self._amp = amp
            if mine:
                self._execute(run.id, task, method, method_spec, mine, policy, timer, reward)
            self._finalise(run.id, task, method, method_spec.episodic, items, policy)
        except KeyboardInterrupt:
            self.store.fail_run(run.id, "interrupted", f"interrupted by the user ({resume_hint()})")
            raise
        except Exception as exc:
            tb = traceback.format_exc()
            self.store.fail_run(run.id, "failed", f"{describe(exc)}\n\n{tb}")  # the full traceback is kept
            try:  # a reporter that fails now must not replace the failure being reported
                self.host.run_error(RunError(run.id, spec, type(exc).__name__, str(exc), tb))
            except Exception:
                pass
            raise
        finally:
            in_flight = sys.exc_info()[1]
            if ready and (method_spec.episodic or method_spec.adapts_per == "batch"):  # restore the shared model
                try:
                    method.reset()
                except Exception:
                    if in_flight is None:
                        raise  # otherwise the original failure is what the user must see
        result = self._result_from_store(run.id, spec)
        self.host.run_finish(result)
        return result

    def _open_run(self, spec: RunSpec, **kwargs: Any) -> tuple[Any, bool]:
        """The stored run to work on (a seam: ranks of one job share the run rank 0 opens)."""
        return self.store.open_run(spec, **kwargs)

    def _batch_size(self, method_spec: Any, method: Any, protocol: RunProtocol | None = None) -> int:
        if method.carries_state:
            return stream_batch(method_spec, protocol)
        requested = self.options.batch_size or DEFAULT_BATCH_SIZE
        max_batch: int = method_spec.method_cls.max_batch
        return max(1, min(requested, max_batch))

    def _claimed_batches(self, run_id: int, task: TaskRuntime, method: Any, episodic: bool,
                         items: Sequence[tuple[int, str]], size: int, policy: Any,
                         before_claim: Callable[[], None] = lambda: None) -> Iterator[list[tuple[int, str]]]:
        """The batches this process computes, claimed from the store as it goes, so that any
        number of processes can share a run (docs/concurrency.md). A method that carries state
        claims the whole rest of the stream at once (one process computes it, in order, after
        replaying the stored prefix); the others wait for it, and take over if it dies.
        ``before_claim`` stores what was computed but not yet stored: a process's own claims stay
        claimable by it until their samples are stored."""
        ids = [sid for _, sid in items]
        by_id = dict((sid, it) for it in items for sid in [it[1]])
        stream = method.carries_state
        unit = size if stream else 1  # a stream's batches: 1 sample, or the protocol's online_batch
        while True:
            before_claim()
            claimed = self.store.claim(run_id, ids, None if stream else size)
            if claimed:
                if stream:
                    done = self.store.done_sample_ids(run_id)
                    if done:
                        self._replay_stream(task, method, episodic, items, done, policy, unit)
                    self._stream_state = True  # this process's method holds the stream's state
                    for k in range(0, len(claimed), unit):
                        yield [by_id[sid] for sid in claimed[k:k + unit]]
                else:
                    yield [by_id[sid] for sid in claimed]
                continue
            if set(ids) <= self.store.done_sample_ids(run_id):
                return
            time.sleep(POLL_S)  # other live processes hold the rest: wait for them (or their death)

    def _finalise(self, run_id: int, task: TaskRuntime, method: Any, episodic: bool, items: Sequence[tuple[int, str]],
                  policy: Any) -> None:
        """Store the metrics once: by whichever process wins the finalise claim; the others wait.
        The end-of-stream state metrics of a method that carries state need that state: a
        finaliser that did not compute the stream rebuilds it by replaying the stored stream.
        A shard (``--shard``, a rank) that leaves samples to others stores no metrics while any
        sample of the run is missing: whichever process completes the run finalises it."""
        ids = {sid for _, sid in items}
        while True:
            run = self.store.get_run(run_id)
            if run is not None and run.status == "finished":
                return
            if not ids <= self.store.done_sample_ids(run_id):
                return
            if self.store.begin_finalise(run_id):
                if method.carries_state and not self._stream_state:
                    self._replay_stream(task, method, episodic, items, self.store.done_sample_ids(run_id), policy,
                                        self._stream_unit)
                records = self.store.sample_records(run_id, include_skipped=True)
                kept = [r for r in records if SKIPPED not in r.extra]
                if not kept:
                    raise RunnerError("every sample was skipped (--on-corrupt skip): nothing to score")
                metrics = task.aggregate(kept)
                metrics.update(online_metrics(method, items, kept))
                metrics.update(segment_metrics(task.dataset, items, kept))
                if len(kept) < len(records):
                    n = len(records) - len(kept)
                    metrics = {**metrics, SKIPPED: MetricValue(float(n), None, None, len(records))}
                latency, reward_ms = self._latency(run_id)
                self.store.finish_run(run_id, metrics, latency, reward_ms)
                return
            time.sleep(POLL_S)

    def _execute(self, run_id: int, task: TaskRuntime, method: Any, method_spec: Any,
                 items: Sequence[tuple[int, str]], policy: Any, timer: SectionTimer, reward: Any = None) -> None:
        clock = Clock(self.device)
        memory = PeakMemory(self.device)
        self._stream_state = False
        size = self._batch_size(method_spec, method, task.protocol)
        memory.reset(policy, reward, batch_size=size)  # models are loaded: the baseline holds them
        warm_left = self.options.warmup
        stream = method.carries_state
        pending = _PendingStores(self.store, run_id, self.options.stream_flush if stream else 1,
                                 self.options.stream_flush_s)
        steps = self._claimed_batches(run_id, task, method, method_spec.episodic, items, size, policy, pending.flush)
        try:
            for chunk in (part for claimed in steps for part in task.batches(self._readable(run_id, task, claimed, policy))):
                batch = task.make_batch(chunk, policy, self.device)
                timer.reset()
                self._reset_amp()
                t0 = clock.now()
                if method_spec.episodic:
                    method.reset()
                method.adapt(batch)
                t1 = clock.now()
                predictions = method.predict(batch)
                t2 = clock.now()
                method.after_predict(batch)
                t3 = clock.now()
                records = task.score(batch, predictions)
                # credited: the measured cost of cached view features this batch reused (view_cache)
                adapt_ms, predict_ms = (t1 - t0) + (t3 - t2) + timer.credited_ms, t2 - t1
                n_done = pending.add(ExecutedBatch(tuple(records), adapt_ms, predict_ms, timer.totals.get("reward"),
                                                   warm_left > 0))
                warm_left -= 1
                self.host.run_step(StepRecord(run_id, tuple(batch.sample_ids), adapt_ms, predict_ms, n_done,
                                              len(items)))
        except BaseException:
            pending.flush_on_failure()
            raise
        pending.flush()
        self.store.update_peak_memory(run_id, memory.peak_mb(), memory.memory_kind, memory.details())

    def _reset_amp(self) -> None:
        """Every batch's samples start from the initial loss scale (per-sample fp16 semantics)."""
        if self._amp is not None:
            self._amp.reset()

    def _readable(self, run_id: int, task: TaskRuntime, chunk: list[tuple[int, str]], policy: Any, *,
                  store: bool = True) -> list[tuple[int, str]]:
        """The items of ``chunk`` whose data can be read. Under ``--on-corrupt skip`` an unreadable
        sample is stored as skipped (its reason in ``extra``; excluded from metrics, counted as
        the ``skipped`` metric); under ``fail`` the DataError naming the file stops the run."""
        if self.options.on_corrupt != "skip":
            return chunk
        good, skipped = [], []
        for item in chunk:
            try:
                task.make_batch([item], policy, self.device)
            except DataError as exc:
                skipped.append(SampleRecord(item[1], item[0], None, None, None, {SKIPPED: str(exc)}))
            else:
                good.append(item)
        if skipped and store:
            self.store.add_samples(run_id, skipped, adapt_ms=0.0, predict_ms=0.0, reward_ms=None, warmup=False)
        return good

    def _replay_stream(self, task: TaskRuntime, method: Any, episodic: bool, items: Sequence[tuple[int, str]],
                       done: set[str], policy: Any, unit: int = 1) -> None:
        """A stateful method's state is the product of the stream so far: rebuild it by replaying
        the already-stored samples (results discarded) before continuing, so a resumed run equals
        an uninterrupted one. ``unit``: the stream's batch (stored batches are whole ones, so the
        stored prefix cuts into the same batches)."""
        prefix = []
        for item in items:
            if item[1] not in done:
                break
            prefix.append(item)
        for k in range(0, len(prefix), unit):
            # a sample skipped when it was first met is skipped again
            for part in task.batches(self._readable(-1, task, prefix[k:k + unit], policy, store=False)):
                batch = task.make_batch(part, policy, self.device)
                self._reset_amp()
                if episodic:
                    method.reset()
                method.adapt(batch)
                method.predict(batch)
                method.after_predict(batch)

    def _latency(self, run_id: int) -> tuple[LatencyStats | None, float | None]:
        rows = [r for r in self.store.sample_rows(run_id) if SKIPPED not in (r.extra or {})]
        timed = [r for r in rows if not r.warmup] or rows
        if not timed:
            return None, None
        total = np.array([r.adapt_ms + r.predict_ms for r in timed])
        rewards = [r.reward_ms for r in timed if r.reward_ms is not None]
        run = self.store.get_run(run_id)
        stats = LatencyStats(
            ms_per_sample_mean=float(total.mean()), ms_per_sample_p50=float(np.percentile(total, 50)),
            ms_per_sample_p95=float(np.percentile(total, 95)),
            adapt_ms_mean=float(np.mean([r.adapt_ms for r in timed])),
            predict_ms_mean=float(np.mean([r.predict_ms for r in timed])),
            warmup_samples=len(rows) - len(timed), timed_samples=len(timed),
            peak_memory_mb=run.peak_memory_mb if run else None, memory_kind=(run.memory_kind if run else None) or "",
        )
        reward_ms = float(np.mean(rewards)) if rewards else None
        return stats, reward_ms

    def _result_from_store(self, run_id: int, spec: RunSpec) -> RunResult:
        run = self.store.get_run(run_id)
        assert run is not None
        latency = None
        if run.ms_per_sample_mean is not None:
            latency = LatencyStats(
                ms_per_sample_mean=run.ms_per_sample_mean, ms_per_sample_p50=run.ms_per_sample_p50 or math.nan,
                ms_per_sample_p95=run.ms_per_sample_p95 or math.nan, adapt_ms_mean=run.adapt_ms_mean or 0.0,
                predict_ms_mean=run.predict_ms_mean or 0.0, warmup_samples=run.warmup_samples or 0,
                timed_samples=run.n_done - (run.warmup_samples or 0), peak_memory_mb=run.peak_memory_mb,
                memory_kind=run.memory_kind or "",
            )
        return RunResult(run_id=run.id, spec=spec, metrics=self.store.metrics_of(run.id), latency=latency,
                         n_samples=run.n_done, status=run.status)


class _PendingStores:
    """The executed batches of a run not yet stored: stored at once (``every`` 1, batched
    methods) or every ``every`` samples or ``every_s`` seconds (a stream, whose per-sample
    transaction would otherwise cost about as much as most online methods' own work)."""

    def __init__(self, store: Store, run_id: int, every: int, every_s: float) -> None:
        self.store, self.run_id, self.every, self.every_s = store, run_id, max(1, int(every)), float(every_s)
        self.batches: list[ExecutedBatch] = []
        self.n_pending = 0
        self.n_done: int | None = None  # the run's stored count after the latest store
        self.since = time.monotonic()

    def add(self, batch: ExecutedBatch) -> int:
        """Queue ``batch`` (storing what is due); returns the run's count of done samples,
        the queued ones included."""
        self.batches.append(batch)
        self.n_pending += len(batch.records)
        if self.n_pending >= self.every or time.monotonic() - self.since >= self.every_s:
            self.flush()
            assert self.n_done is not None
            return self.n_done
        if self.n_done is None:
            run = self.store.get_run(self.run_id)
            self.n_done = run.n_done if run is not None else 0
        return self.n_done + self.n_pending

    def flush(self) -> None:
        if self.batches:
            self.n_done = self.store.add_executed(self.run_id, self.batches)
        self.batches, self.n_pending, self.since = [], 0, time.monotonic()

    def flush_on_failure(self) -> None:
        """The run is failing: store what was computed before the failure, without letting a
        second error (the store may be the cause) hide the first."""
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the original exception is the one to report
            self.batches = []
