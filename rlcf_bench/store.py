"""The leaderboard store: SQLAlchemy 2 ORM over SQLite (any SQLAlchemy URL works).

Tables: ``runs`` (identity, provenance, status, latency summary), ``sample_results`` (one row per
test sample, unique per run, so a resumed run never double-counts), ``metrics`` (value with a
confidence interval), ``references`` (numbers reported by papers), ``task_info`` (each task's
metric metadata, so reports need no plugin), ``hidden_runs`` (runs left out of reports) and
``schema_info``.

Each executed batch is written in one transaction together with the run's progress counter, so
a process killed at any point leaves a consistent store and the next start resumes after the
last stored sample.

Several processes (same or different commands, any host for PostgreSQL) may write at once
(docs/concurrency.md): a process *claims* the samples it is about to compute (``claims``, unique
per run and sample), stores them and drops its claims in one transaction; claims of a dead owner
(same host: its pid is gone; else no heartbeat for ``$RLCF_BENCH_CLAIM_LEASE_S`` seconds) are
taken over. Whichever process finds a run complete finalises its metrics, once
(:meth:`Store.begin_finalise` is a compare-and-set on the run's status). Creation races (tables,
the schema row, references, a run's first attempt) are retried as conflicts.

Opening is careful: the schema version is read before any DDL, and a file that is not a
leaderboard, has another schema version, is truncated or cannot be written is refused with a
:class:`~rlcf_bench.errors.StoreError` and left untouched.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from .errors import StoreError
from .types import SKIPPED, LatencyStats, MetricValue, ReferenceResult, RunSpec, SampleRecord

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
LEASE_ENV = "RLCF_BENCH_CLAIM_LEASE_S"
SQLITE_MAGIC = b"SQLite format 3\x00"
FINALISE_CLAIM = "::finalise::"  # a pseudo sample id (no dataset names a sample so)

T = TypeVar("T")


class SchemaVersionError(StoreError):
    pass


def owner_id() -> str:
    """This process as a claim owner: ``host:pid:nonce`` (the nonce guards against pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str, heartbeat: datetime | None, lease_s: float) -> bool:
    """A claim's owner is alive if it runs on this host with its pid present, or (another host)
    its heartbeat is younger than the lease."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if heartbeat is None:
        return False
    if heartbeat.tzinfo is None:
        heartbeat = heartbeat.replace(tzinfo=timezone.utc)
    return (_now() - heartbeat).total_seconds() < lease_s


def _utc(moment: datetime) -> datetime:
    """An aware UTC time (SQLite gives back the stored UTC times without their zone)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ExecutedBatch:
    """One executed batch's results and timings, as the runner hands them to the store."""

    records: tuple[SampleRecord, ...]
    adapt_ms: float
    predict_ms: float
    reward_ms: float | None
    warmup: bool


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


class Claim(Base):
    """A sample some live process is computing right now (deleted when its result is stored)."""

    __tablename__ = "claims"
    __table_args__ = (UniqueConstraint("run_id", "sample_id", name="uq_claim_per_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    sample_id: Mapped[str] = mapped_column(String(256))
    owner: Mapped[str] = mapped_column(String(160))
    heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


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


class HiddenRun(Base):
    """A run left out of reports and of ``store.runs()`` (``rlcf-bench runs hide``): kept in the
    store with its samples, and shown again by ``runs unhide``. Its own table, so a store gains it
    additively (no schema-version change) and a store without it simply hides nothing."""

    __tablename__ = "hidden_runs"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    hidden_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class TaskInfo(Base):
    """A task's metric metadata (:class:`~rlcf_bench.types.TaskMetrics`) as its latest run recorded
    it, so a report reads a store the same way whichever plugins are installed where it runs."""

    __tablename__ = "task_info"

    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def run_label(run: Run) -> str:
    """A run as a person names it: task/dataset/method on model, with seed and stream order."""
    order = (run.protocol or {}).get("order_seed")
    extras = [f"seed {run.seed}"] + ([f"order {order}"] if order not in (None, 0) else [])
    reward = f" (reward {run.reward_model})" if run.reward_model else ""
    return f"{run.task}/{run.dataset}/{run.method} on {run.model}{reward}, {', '.join(extras)}"


def resolve_db_url(db: str | None = None) -> str:
    """``--db`` beats ``$RLCF_BENCH_DB`` beats :func:`default_db_path`.

    A plain path is turned into a SQLite URL; anything with ``://`` is used as is. Only the
    default path's folder is created; a missing folder of a path the user gave is an error
    (a typo must not silently start a new leaderboard elsewhere).
    """
    value = db or os.environ.get(DB_ENV) or str(default_db_path())
    if "://" in value:
        return value
    path = Path(value).expanduser()
    if value == str(default_db_path()):
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Per-connection settings; none writes to the file (WAL is switched on once, after the
    schema check, in :meth:`Store._init_schema`)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _engine(url: str, *, read_only: bool) -> Engine:
    """The engine of ``url``. A SQLite store opened to read (``report``, ``compare``) gets
    read-only connections (``mode=ro``): nothing a reader does — not even the WAL checkpoint a
    closing connection makes — can change the file's bytes, and a write would be an error."""
    path = _sqlite_path(url)
    if not read_only or path is None:
        return create_engine(url, future=True)
    import sqlite3
    from urllib.parse import quote

    uri = f"file:{quote(os.fsencode(path.expanduser().resolve()))}?mode=ro"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
                         future=True)


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def check_sqlite_file(url: str, *, create: bool) -> None:
    """Refuse, before anything touches it, a SQLite store that cannot be used (see module doc)."""
    path = _sqlite_path(url)
    if path is None:
        return
    what = f"leaderboard database {path}"
    if not path.exists():
        if not create:
            raise StoreError(what, "does not exist", "check --db / $RLCF_BENCH_DB; `run` creates a store")
        if not path.parent.is_dir():
            raise StoreError(what, f"folder {path.parent} does not exist", "create it first or fix the path")
        if not os.access(path.parent, os.W_OK):
            raise StoreError(what, f"folder {path.parent} is not writable", "choose another --db")
        return
    if path.is_dir():
        raise StoreError(what, "is a folder", "pass the database file, e.g. DIR/leaderboard.sqlite")
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise StoreError(what, "is not a SQLite database", "pass a leaderboard file or a new path")
    no_write_bits = not path.stat().st_mode & 0o222  # read-only even for root, who passes os.access
    if create and (no_write_bits or not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))):
        raise StoreError(what, "is read-only (the file or its folder cannot be written)",
                         "make it writable, or copy it and pass the copy with --db")


class Store:
    """Open (and create or check) a leaderboard database."""

    def __init__(self, url: str | None = None, *, create: bool = True) -> None:
        """``create=False`` opens an existing store only (``report``, ``compare``), read-only:
        it never writes (no DDL, no rows; SQLite connections are opened ``mode=ro``)."""
        self.url = resolve_db_url(url)
        check_sqlite_file(self.url, create=create)
        self.owner = owner_id()
        self.lease_s = float(os.environ.get(LEASE_ENV, "900"))
        self._beats: dict[int, float] = {}  # run id → monotonic time of this process's last heartbeat
        try:
            self.engine: Engine = _engine(self.url, read_only=not create)
        except Exception as exc:  # a malformed URL or a missing driver
            raise StoreError(f"database URL {self.url!r}", str(exc).splitlines()[0],
                             "expected a SQLite path or a URL like postgresql+psycopg://user@host/db") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._init_schema(create)
        except DBAPIError as exc:  # unreachable server, not a database, truncated file, ...
            why = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise StoreError(f"leaderboard database {self.location}",
                             why, "check that it exists, is reachable and is an rlcf-bench store") from exc

    @property
    def location(self) -> str:
        """Where the leaderboard is, for people: the SQLite file's absolute path, or the URL
        with any password hidden."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database:
            return str(Path(url.database).resolve())
        return url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------ schema
    def _read_version(self) -> str | None:
        """The stored schema version (None: an empty database), read without any DDL."""
        with self.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if "schema_info" not in tables:
                if tables & {t.name for t in Base.metadata.sorted_tables}:
                    raise StoreError(f"leaderboard database {self.location}", "has rlcf-bench tables but no schema_info",
                                     "it was not made by rlcf-bench; pass a new --db")
                if tables:
                    raise StoreError(f"leaderboard database {self.location}", "is a database, but not an rlcf-bench "
                                     "leaderboard", "pass a leaderboard file or a new path")
                return None
            row = conn.execute(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version")).first()
            return None if row is None else str(row[0])

    def _init_schema(self, create: bool) -> None:
        version = self._retry(self._read_version)
        if version is not None and version != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"leaderboard database {self.location}", f"has schema version {version}, this rlcf-bench understands "
                f"version {SCHEMA_VERSION}", "use a matching rlcf-bench or a new --db")
        if not create:
            if version is None:
                raise StoreError(f"leaderboard database {self.location}", "is empty", "run something first or fix --db")
            return
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                self._retry(lambda: conn.exec_driver_sql("PRAGMA journal_mode=WAL"))

        def create_tables() -> None:
            Base.metadata.create_all(self.engine)  # additive: a known version gains new tables only
            with self._session.begin() as s:
                if s.get(SchemaInfo, "schema_version") is None:
                    s.add(SchemaInfo(key="schema_version", value=str(SCHEMA_VERSION)))

        self._retry(create_tables)

    @staticmethod
    def _retry(fn: Callable[[], T], attempts: int = 10) -> T:
        """Retry ``fn`` while another writer holds the lock or won a creation race."""
        delay = 0.05
        for i in range(attempts):
            try:
                return fn()
            except (OperationalError, IntegrityError, ProgrammingError) as exc:
                text = str(exc).lower()
                transient = any(w in text for w in (
                    "locked", "already exists", "duplicate", "unique", "deadlock", "could not serialize"))
                if not transient or i == attempts - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def session(self) -> Session:
        return self._session()

    # ------------------------------------------------------------------ runs
    def find_run(self, key: str) -> Run | None:
        with self.session() as s:
            return s.scalars(select(Run).where(Run.key == key).order_by(Run.attempt.desc()).limit(1)).first()

    def open_run(self, spec: RunSpec, *, kind: str, n_total: int, provenance: dict[str, Any],
                 plugins: list[Any], device_name: str, official: bool, fresh: bool = False,
                 fresh_since: datetime | None = None) -> tuple[Run, bool]:
        """Return ``(run, resumed)``: the latest attempt with this key, or a new one (``fresh``).
        A fresh request joins the latest attempt when it started at or after ``fresh_since`` (the
        command's start): two processes of one ``--fresh`` command make one attempt, not two."""

        def op() -> tuple[Run, bool]:
            with self._session.begin() as s:
                latest = s.scalars(select(Run).where(Run.key == spec.key).order_by(Run.attempt.desc()).limit(1)).first()
                joins = (latest is not None and fresh_since is not None
                         and _utc(latest.started_at) >= _utc(fresh_since))
                if latest is not None and (not fresh or joins):
                    latest.status = "finished" if latest.status == "finished" else "running"  # failed → resumed
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
        """Store one executed batch atomically (:meth:`add_executed` with one batch); returns the
        run's ``n_done``."""
        return self.add_executed(run_id, [ExecutedBatch(tuple(records), adapt_ms, predict_ms, reward_ms, warmup)])

    def add_executed(self, run_id: int, batches: Sequence[ExecutedBatch]) -> int:
        """Store executed batches in one transaction (all or none); each batch's timings are split
        evenly over its samples. Returns the run's ``n_done``.

        Per call the cost is independent of how much of the run is stored (it runs once per
        batch, or once per few samples of a stream, ``ExecutionOptions.stream_flush``): ``n_done``
        grows by the rows inserted, in the same transaction (an atomic increment, so concurrent
        writers never lose a count), and the heartbeat of this process's remaining claims is
        refreshed at most every :meth:`heartbeat_every_s` (a lease is
        ``$RLCF_BENCH_CLAIM_LEASE_S``; a stream's claims cover the rest of the run)."""
        beat = time.monotonic() - self._beats.get(run_id, -math.inf) >= self.heartbeat_every_s

        def op() -> int:
            with self._session.begin() as s:
                ids = [rec.sample_id for b in batches for rec in b.records]
                stored = set(s.scalars(select(SampleResult.sample_id).where(
                    SampleResult.run_id == run_id, SampleResult.sample_id.in_(ids))))
                rows = []
                for b in batches:
                    n = len(b.records)
                    rows += [SampleResult(
                        run_id=run_id, sample_id=rec.sample_id, idx=rec.index, prediction=rec.prediction,
                        target=rec.target, score=rec.score, extra=dict(rec.extra), adapt_ms=b.adapt_ms / n,
                        predict_ms=b.predict_ms / n, reward_ms=None if b.reward_ms is None else b.reward_ms / n,
                        batch_size=n, warmup=b.warmup,
                    ) for rec in b.records if rec.sample_id not in stored]  # else another process stored it
                s.add_all(rows)
                s.flush()
                s.execute(delete(Claim).where(Claim.run_id == run_id, Claim.owner == self.owner,
                                              Claim.sample_id.in_(ids)))
                if beat:
                    s.execute(update(Claim).where(Claim.run_id == run_id, Claim.owner == self.owner)
                              .values(heartbeat=_now()))
                if rows:
                    s.execute(update(Run).where(Run.id == run_id).values(n_done=Run.n_done + len(rows)))
                n_done = s.scalar(select(Run.n_done).where(Run.id == run_id))
                assert n_done is not None, f"run {run_id} is not in the store"
                return int(n_done)

        n_done = self._retry(op)
        if beat:
            self._beats[run_id] = time.monotonic()
        return n_done

    @property
    def heartbeat_every_s(self) -> float:
        """How often a working process refreshes its claims' heartbeat: a tenth of the lease
        (at most 30 s), so a live owner is never mistaken for a dead one."""
        return min(30.0, self.lease_s / 10)

    # ------------------------------------------------------------------ claims (several writers)
    def claim(self, run_id: int, candidates: Sequence[str], n: int | None) -> list[str]:
        """Claim up to ``n`` (None: all) of ``candidates`` (in their order) that are neither stored
        nor claimed by a live owner; claims of dead owners are taken over. Returns the claimed ids."""

        def op() -> list[str]:
            with self._session.begin() as s:
                done = set(s.scalars(select(SampleResult.sample_id).where(SampleResult.run_id == run_id)))
                held, dead = {}, []
                rows = s.execute(select(Claim.id, Claim.sample_id, Claim.owner, Claim.heartbeat)
                                 .where(Claim.run_id == run_id)).all()  # plain rows: no ORM object per claim
                for claim_id, sid, owner, heartbeat in rows:
                    if owner == self.owner or owner_alive(owner, heartbeat, self.lease_s):
                        held[sid] = owner
                    else:
                        dead.append(claim_id)
                if dead:
                    s.execute(delete(Claim).where(Claim.id.in_(dead)))
                free = [sid for sid in candidates if sid not in done and held.get(sid, self.owner) == self.owner]
                chosen = free if n is None else free[:n]
                for sid in chosen:
                    if sid not in held:
                        s.add(Claim(run_id=run_id, sample_id=sid, owner=self.owner))
                return chosen

        return self._retry(op)

    def others_working(self, run_id: int) -> bool:
        """Whether a live process other than this one holds claims on the run."""
        with self.session() as s:
            return any(c.owner != self.owner and owner_alive(c.owner, c.heartbeat, self.lease_s)
                       for c in s.scalars(select(Claim).where(Claim.run_id == run_id)))

    def release_claims(self, run_id: int) -> None:
        def op() -> None:
            with self._session.begin() as s:
                s.execute(delete(Claim).where(Claim.run_id == run_id, Claim.owner == self.owner))

        self._retry(op)

    def begin_finalise(self, run_id: int) -> bool:
        """True for exactly one of the processes that find the run complete: that one computes
        and stores the metrics (:meth:`finish_run`). The right to finalise is a claim on a
        pseudo-sample, so a finaliser that dies is replaced like any other claim owner."""
        run = self.get_run(run_id)
        if run is None or run.status == "finished":
            return False
        return bool(self.claim(run_id, [FINALISE_CLAIM], 1))

    def sample_records(self, run_id: int, *, include_skipped: bool = False) -> list[SampleRecord]:
        """The run's scored samples in index order (skipped unreadable ones only on request)."""
        with self.session() as s:
            rows = s.scalars(select(SampleResult).where(SampleResult.run_id == run_id).order_by(SampleResult.idx))
            records = [SampleRecord(r.sample_id, r.idx, r.prediction, r.target, r.score, r.extra or {}) for r in rows]
        return records if include_skipped else [r for r in records if SKIPPED not in r.extra]

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
                s.execute(delete(Claim).where(Claim.run_id == run_id))

        self._retry(op)

    def update_peak_memory(self, run_id: int, peak_mb: float | None, kind: str,
                           details: dict[str, Any] | None = None) -> None:
        """Keep the maximum peak memory seen across the attempts' sessions; ``details`` (what the
        figure is made of, e.g. its per-sample equivalent) go with it into the run's provenance
        under ``memory``."""

        def op() -> None:
            with self._session.begin() as s:
                run = s.get(Run, run_id)
                assert run is not None
                if peak_mb is not None and (run.peak_memory_mb is None or peak_mb > run.peak_memory_mb):
                    run.peak_memory_mb = peak_mb
                    run.memory_kind = kind
                    if details is not None:
                        run.provenance = {**(run.provenance or {}), "memory": details}

        self._retry(op)

    def fail_run(self, run_id: int, status: str, message: str) -> bool:
        """Drop this process's claims and mark the run ``status`` (failed/interrupted) — unless it
        is finished or another live process still works on it: a process never fails another's
        run. Returns whether the status was set."""

        def op() -> bool:
            with self._session.begin() as s:
                s.execute(delete(Claim).where(Claim.run_id == run_id, Claim.owner == self.owner))
                run = s.get(Run, run_id)
                if run is None or run.status == "finished":
                    return False
                if any(owner_alive(c.owner, c.heartbeat, self.lease_s)
                       for c in s.scalars(select(Claim).where(Claim.run_id == run_id))):
                    return False
                run.status = status
                run.error = message
                return True

        return self._retry(op)

    def runs(self, *, status: str | None = "finished", task: str | None = None, dataset: str | None = None,
             method: str | None = None, include_hidden: bool = False) -> list[Run]:
        """Runs in id order; hidden ones (``runs hide``) only with ``include_hidden``."""
        hidden = set() if include_hidden else self.hidden_runs()
        with self.session() as s:
            q = select(Run).order_by(Run.id)
            if hidden:
                q = q.where(Run.id.not_in(hidden))
            if status:
                q = q.where(Run.status == status)
            if task:
                q = q.where(Run.task == task)
            if dataset:
                q = q.where(Run.dataset == dataset)
            if method:
                q = q.where(Run.method == method)
            return list(s.scalars(q))

    def hidden_runs(self) -> dict[int, str]:
        """``run id -> reason`` of the hidden runs (none in a store that predates the table)."""
        with self.engine.connect() as conn:
            if HiddenRun.__tablename__ not in inspect(conn).get_table_names():
                return {}
        with self.session() as s:
            return {row.run_id: row.reason for row in s.scalars(select(HiddenRun))}

    def ensure_hidden_table(self) -> None:
        """Create ``hidden_runs`` in a store older than it (additive DDL: for write commands only)."""
        Base.metadata.tables[HiddenRun.__tablename__].create(self.engine, checkfirst=True)

    def set_hidden(self, run_ids: Sequence[int], hidden: bool, reason: str = "") -> list[int]:
        """Hide (or show again) runs; every id must exist — else nothing is written (``KeyError``
        naming the unknown ids). Returns the ids whose state changed."""
        def op() -> list[int]:
            self.ensure_hidden_table()
            with self._session.begin() as s:
                known = set(s.scalars(select(Run.id).where(Run.id.in_(run_ids))))
                unknown = sorted(set(run_ids) - known)
                if unknown:
                    raise KeyError(unknown)
                already = set(s.scalars(select(HiddenRun.run_id).where(HiddenRun.run_id.in_(run_ids))))
                if hidden:
                    changed = sorted(known - already)
                    s.add_all(HiddenRun(run_id=i, reason=reason) for i in changed)
                else:
                    changed = sorted(already)
                    s.execute(delete(HiddenRun).where(HiddenRun.run_id.in_(changed)))
                return changed

        return self._retry(op)

    def get_run(self, run_id: int) -> Run | None:
        with self.session() as s:
            return s.get(Run, run_id)

    def metrics_of(self, run_id: int) -> dict[str, MetricValue]:
        with self.session() as s:
            rows = s.scalars(select(Metric).where(Metric.run_id == run_id))
            return {m.name: MetricValue(m.value, m.ci_low, m.ci_high, m.n) for m in rows}

    # ------------------------------------------------------------------ task metadata
    def record_task(self, task: str, version: str, metrics: dict[str, Any]) -> None:
        """Keep ``task``'s metric metadata (``TaskMetrics.as_dict()``); written only when it changed."""
        def op() -> None:
            with self._session.begin() as s:
                row = s.get(TaskInfo, task)
                if row is None:
                    s.add(TaskInfo(task=task, version=version, metrics=metrics))
                elif (row.version, row.metrics) != (version, metrics):
                    row.version, row.metrics = version, metrics

        self._retry(op)

    def task_metrics(self) -> dict[str, dict[str, Any]]:
        """``task -> TaskMetrics.as_dict()`` of every task a run recorded (none in a store opened
        read-only that predates the table)."""
        with self.engine.connect() as conn:
            if TaskInfo.__tablename__ not in inspect(conn).get_table_names():
                return {}
        with self.session() as s:
            return {row.task: dict(row.metrics or {}) for row in s.scalars(select(TaskInfo))}

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
