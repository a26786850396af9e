"""The leaderboard store: SQLAlchemy 2 ORM over SQLite (any SQLAlchemy URL works).

Tables: ``runs`` (identity, provenance, status, latency summary), ``sample_results`` (one row per
test sample, unique per run, so a resumed run never double-counts), ``metrics`` (value with a
confidence interval), ``references`` (numbers reported by papers) and ``schema_info``.

Each executed batch is written in one transaction together with the run's progress counter, so
a process killed at any point leaves a consistent store and the next start resumes after the
last stored sample.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, event,
    func, select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from .types import LatencyStats, MetricValue, ReferenceResult, RunSpec, SampleRecord

SCHEMA_VERSION = 1
DB_ENV = "RLCF_BENCH_DB"
DB_FILE = "leaderboard.sqlite"


def default_db_path() -> Path:
    """The one default leaderboard, wherever the command runs from.

    From a checkout (the package sits next to the repository's ``pyproject.toml`` and
    ``leaderboard/``), it is ``<repository>/leaderboard/leaderboard.sqlite``; from an installed
    package, ``$XDG_DATA_HOME/rlcf-bench/leaderboard.sqlite`` (``~/.local/share/rlcf-bench/`` by
    default). Never relative to the working directory, so ``run`` in another folder adds to the
    same leaderboard that ``report`` reads.
    """
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "leaderboard").is_dir():
        return repo / "leaderboard" / DB_FILE
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "rlcf-bench" / DB_FILE

T = TypeVar("T")


class SchemaVersionError(RuntimeError):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SchemaInfo(Base):
    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("key", "attempt", name="uq_run_key_attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    task: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[str] = mapped_column(String(32))
    task_kind: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(128), index=True)
    dataset_version: Mapped[str] = mapped_column(String(32))
    dataset_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    method: Mapped[str] = mapped_column(String(64), index=True)
    method_version: Mapped[str] = mapped_column(String(32))
    method_config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config_hash: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(64))
    reward_model: Mapped[str | None] = mapped_column(String(512), nullable=True)
    reward_model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    protocol: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    protocol_hash: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    device_name: Mapped[str] = mapped_column(String(128), default="")
    bench_version: Mapped[str] = mapped_column(String(32))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    plugins: Mapped[list[Any]] = mapped_column(JSON, default=list)
    official: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    n_total: Mapped[int] = mapped_column(Integer, default=0)
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ms_per_sample_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    ms_per_sample_p50: Mapped[float | None] = mapped_column(Float, nullable=True)
    ms_per_sample_p95: Mapped[float | None] = mapped_column(Float, nullable=True)
    adapt_ms_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    predict_ms_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    reward_ms_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    warmup_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    peak_memory_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    memory_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)

    samples: Mapped[list[SampleResult]] = relationship(back_populates="run", cascade="all, delete-orphan")
    metrics: Mapped[list[Metric]] = relationship(back_populates="run", cascade="all, delete-orphan")


class SampleResult(Base):
    __tablename__ = "sample_results"
    __table_args__ = (UniqueConstraint("run_id", "sample_id", name="uq_sample_per_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(256))
    idx: Mapped[int] = mapped_column(Integer)
    prediction: Mapped[Any] = mapped_column(JSON, nullable=True)
    target: Mapped[Any] = mapped_column(JSON, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    adapt_ms: Mapped[float] = mapped_column(Float, default=0.0)
    predict_ms: Mapped[float] = mapped_column(Float, default=0.0)
    reward_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    batch_size: Mapped[int] = mapped_column(Integer, default=1)
    warmup: Mapped[bool] = mapped_column(Boolean, default=False)

    run: Mapped[Run] = relationship(back_populates="samples")


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_metric_per_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int | None] = mapped_column(Integer, nullable=True)

    run: Mapped[Run] = relationship(back_populates="metrics")


class Reference(Base):
    __tablename__ = "references"
    __table_args__ = (
        UniqueConstraint("task", "dataset", "method", "model", "reward_model", "metric", "source", name="uq_reference"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    reward_model: Mapped[str] = mapped_column(String(512), default="")
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")


def resolve_db_url(db: str | None = None) -> str:
    """``--db`` beats ``$RLCF_BENCH_DB`` beats :func:`default_db_path`.

    A plain path is turned into a SQLite URL; anything with ``://`` is used as is.
    """
    value = db or os.environ.get(DB_ENV) or str(default_db_path())
    if "://" in value:
        return value
    path = Path(value).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Store:
    """Open (and create or check) a leaderboard database."""

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_db_url(url)
        self.engine: Engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._init_schema()

    @property
    def location(self) -> str:
        """Where the leaderboard is, for people: the SQLite file's absolute path, or the URL
        with any password hidden."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database:
            return str(Path(url.database).resolve())
        return url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ schema
    def _init_schema(self) -> None:
        def create() -> None:
            Base.metadata.create_all(self.engine)
            with self._session.begin() as s:
                row = s.get(SchemaInfo, "schema_version")
                if row is None:
                    s.add(SchemaInfo(key="schema_version", value=str(SCHEMA_VERSION)))
                elif row.value != str(SCHEMA_VERSION):
                    raise SchemaVersionError(
                        f"leaderboard database {self.url} has schema version {row.value}, this rlcf-bench "
                        f"understands version {SCHEMA_VERSION}; use a matching rlcf-bench or a new --db"
                    )

        self._retry(create)

    @staticmethod
    def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
        delay = 0.05
        for i in range(attempts):
            try:
                return fn()
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or i == attempts - 1:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def session(self) -> Session:
        return self._session()

    # ------------------------------------------------------------------ runs
    def find_run(self, key: str) -> Run | None:
        with self.session() as s:
            return s.scalars(select(Run).where(Run.key == key).order_by(Run.attempt.desc()).limit(1)).first()

    def open_run(self, spec: RunSpec, *, kind: str, n_total: int, provenance: dict[str, Any],
                 plugins: list[Any], device_name: str, official: bool, fresh: bool = False) -> tuple[Run, bool]:
        """Return ``(run, resumed)``: the latest attempt with this key, or a new one."""

        def op() -> tuple[Run, bool]:
            with self._session.begin() as s:
                latest = s.scalars(select(Run).where(Run.key == spec.key).order_by(Run.attempt.desc()).limit(1)).first()
                if latest is not None and not fresh:
                    latest.status = "finished" if latest.status == "finished" else "running"
                    latest.provenance = provenance
                    s.flush()
                    return latest, True
                run = Run(
                    key=spec.key, attempt=(latest.attempt + 1) if latest else 1,
                    task=spec.task, task_version=spec.task_version, task_kind=kind,
                    dataset=spec.dataset, dataset_version=spec.dataset_version,
                    dataset_params=dict(spec.dataset_params), method=spec.method,
                    method_version=spec.method_version, method_config=json.loads(json.dumps(dict(spec.method_config), default=str)),
                    config_hash=spec.config_hash, model=spec.model, model_version=spec.model_version,
                    reward_model=spec.reward_model, reward_model_version=spec.reward_model_version,
                    protocol=spec.protocol.as_dict(), protocol_hash=spec.protocol_hash, seed=spec.seed,
                    device=spec.device, device_name=device_name, bench_version=spec.bench_version,
                    provenance=provenance, plugins=plugins, official=official, n_total=n_total,
                )
                s.add(run)
                s.flush()
                return run, False

        return self._retry(op)

    def done_sample_ids(self, run_id: int) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(SampleResult.sample_id).where(SampleResult.run_id == run_id)))

    def add_samples(self, run_id: int, records: Sequence[SampleRecord], *, adapt_ms: float, predict_ms: float,
                    reward_ms: float | None, warmup: bool) -> int:
        """Store one executed batch atomically; timings are split evenly over its samples."""
        n = len(records)

        def op() -> int:
            with self._session.begin() as s:
                for rec in records:
                    s.add(SampleResult(
                        run_id=run_id, sample_id=rec.sample_id, idx=rec.index, prediction=rec.prediction,
                        target=rec.target, score=rec.score, extra=dict(rec.extra), adapt_ms=adapt_ms / n,
                        predict_ms=predict_ms / n, reward_ms=None if reward_ms is None else reward_ms / n,
                        batch_size=n, warmup=warmup,
                    ))
                s.flush()
                count = s.scalar(select(func.count()).select_from(SampleResult).where(SampleResult.run_id == run_id))
                run = s.get(Run, run_id)
                assert run is not None
                run.n_done = int(count or 0)
                return run.n_done

        return self._retry(op)

    def sample_records(self, run_id: int) -> list[SampleRecord]:
        with self.session() as s:
            rows = s.scalars(select(SampleResult).where(SampleResult.run_id == run_id).order_by(SampleResult.idx))
            return [SampleRecord(r.sample_id, r.idx, r.prediction, r.target, r.score, r.extra or {}) for r in rows]

    def sample_rows(self, run_id: int) -> list[SampleResult]:
        with self.session() as s:
            return list(s.scalars(select(SampleResult).where(SampleResult.run_id == run_id).order_by(SampleResult.idx)))

    def finish_run(self, run_id: int, metrics: dict[str, MetricValue], latency: LatencyStats | None,
                   reward_ms_mean: float | None) -> None:
        def op() -> None:
            with self._session.begin() as s:
                run = s.get(Run, run_id)
                assert run is not None
                for m in list(run.metrics):
                    s.delete(m)
                s.flush()
                for name, mv in metrics.items():
                    s.add(Metric(run_id=run_id, name=name, value=mv.value, ci_low=mv.ci_low, ci_high=mv.ci_high, n=mv.n))
                if latency is not None:
                    run.ms_per_sample_mean = latency.ms_per_sample_mean
                    run.ms_per_sample_p50 = latency.ms_per_sample_p50
                    run.ms_per_sample_p95 = latency.ms_per_sample_p95
                    run.adapt_ms_mean = latency.adapt_ms_mean
                    run.predict_ms_mean = latency.predict_ms_mean
                    run.warmup_samples = latency.warmup_samples
                    run.peak_memory_mb = latency.peak_memory_mb
                    run.memory_kind = latency.memory_kind
                run.reward_ms_mean = reward_ms_mean
                run.status = "finished"
                run.error = None
                run.finished_at = _now()

        self._retry(op)

    def update_peak_memory(self, run_id: int, peak_mb: float | None, kind: str) -> None:
        """Keep the maximum peak memory seen across the attempts' sessions."""

        def op() -> None:
            with self._session.begin() as s:
                run = s.get(Run, run_id)
                assert run is not None
                if peak_mb is not None and (run.peak_memory_mb is None or peak_mb > run.peak_memory_mb):
                    run.peak_memory_mb = peak_mb
                    run.memory_kind = kind

        self._retry(op)

    def fail_run(self, run_id: int, status: str, message: str) -> None:
        def op() -> None:
            with self._session.begin() as s:
                run = s.get(Run, run_id)
                if run is not None:
                    run.status = status
                    run.error = message

        self._retry(op)

    def runs(self, *, status: str | None = "finished", task: str | None = None, dataset: str | None = None,
             method: str | None = None) -> list[Run]:
        with self.session() as s:
            q = select(Run).order_by(Run.id)
            if status:
                q = q.where(Run.status == status)
            if task:
                q = q.where(Run.task == task)
            if dataset:
                q = q.where(Run.dataset == dataset)
            if method:
                q = q.where(Run.method == method)
            return list(s.scalars(q))

    def get_run(self, run_id: int) -> Run | None:
        with self.session() as s:
            return s.get(Run, run_id)

    def metrics_of(self, run_id: int) -> dict[str, MetricValue]:
        with self.session() as s:
            rows = s.scalars(select(Metric).where(Metric.run_id == run_id))
            return {m.name: MetricValue(m.value, m.ci_low, m.ci_high, m.n) for m in rows}

    # ------------------------------------------------------------------ references
    def upsert_references(self, refs: Iterable[ReferenceResult]) -> int:
        def op() -> int:
            n = 0
            with self._session.begin() as s:
                for r in refs:
                    existing = s.scalars(select(Reference).where(
                        Reference.task == r.task, Reference.dataset == r.dataset, Reference.method == r.method,
                        Reference.model == r.model, Reference.reward_model == (r.reward_model or ""),
                        Reference.metric == r.metric, Reference.source == r.source,
                    )).first()
                    if existing is None:
                        s.add(Reference(task=r.task, dataset=r.dataset, method=r.method, model=r.model,
                                        reward_model=r.reward_model or "", metric=r.metric, value=r.value,
                                        source=r.source, note=r.note))
                        n += 1
                    else:
                        existing.value = r.value
                        existing.note = r.note
            return n

        return self._retry(op)

    def references(self) -> list[Reference]:
        with self.session() as s:
            return list(s.scalars(select(Reference).order_by(Reference.id)))
