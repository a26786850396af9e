"""Merging leaderboards written on several machines (``rlcf-bench store merge``).

Runs are identified as the runner identifies them: by their key, the hash of everything that
decides their numbers (task, dataset, method and its configuration, models and versions,
protocol hash, seed; ``RunSpec.key``). For each key the *latest finished attempt* of a source
store is considered, and:

* the destination has no attempt of that key → the run is copied with its sample rows and
  metrics (a new row id; attempt 1);
* the destination's latest attempt is finished and stores the same per-sample results
  (prediction, target, score for every sample id) → nothing to do (*identical*);
* it is finished with other per-sample results → a **conflict**: the destination's run is kept
  and the conflict is reported (two machines computed the same protocol differently: a
  different library or a non-deterministic device, worth knowing before ranking either);
* it is running (a process may be computing it) → a conflict, reported, nothing written;
* it failed or was interrupted → the source's finished run is added as the next attempt, so it
  is the run that reports (and a resumed ``run``) use.

Unfinished source runs are never copied (they are counted); a run hidden in its source
(``rlcf-bench runs hide``) is hidden in the destination too. Paper reference rows missing from
the destination are added; a reference stored with another value is a conflict. Everything is
written in one transaction, so a merge is whole or not at all; a source store is only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import Session

from .store import HiddenRun, Metric, Reference, Run, SampleResult, Store, TaskInfo, run_label

#: Columns of a run that a merge copies (every one but the row id and the attempt number).
_RUN_COLUMNS = tuple(c.key for c in sa_inspect(Run).columns if c.key not in ("id", "attempt"))
_SAMPLE_COLUMNS = tuple(c.key for c in sa_inspect(SampleResult).columns if c.key not in ("id", "run_id"))
_METRIC_COLUMNS = tuple(c.key for c in sa_inspect(Metric).columns if c.key not in ("id", "run_id"))
_REFERENCE_IDENTITY = ("task", "dataset", "method", "model", "reward_model", "metric", "source")


@dataclass
class MergeOutcome:
    """What merging one source did (or would do, with ``dry_run``)."""

    source: str
    added: list[str] = field(default_factory=list)          # labels of copied runs
    added_samples: int = 0
    identical: int = 0
    unfinished_skipped: int = 0
    references_added: int = 0
    conflicts: list[str] = field(default_factory=list)

    def summary(self, dry_run: bool = False) -> str:
        verb = "would add" if dry_run else "added"
        return (f"{self.source}: {verb} {len(self.added)} run(s) ({self.added_samples} sample rows) and "
                f"{self.references_added} reference row(s); {self.identical} run(s) already present and identical; "
                f"{self.unfinished_skipped} unfinished run(s) not copied; {len(self.conflicts)} conflict(s)")


def _samples(s: Session, run_id: int) -> dict[str, tuple[Any, Any, float | None]]:
    rows = s.execute(select(SampleResult.sample_id, SampleResult.prediction, SampleResult.target, SampleResult.score)
                     .where(SampleResult.run_id == run_id))
    return {sid: (pred, target, score) for sid, pred, target, score in rows}


def _latest_finished(s: Session) -> tuple[dict[str, Run], int]:
    """``key -> latest finished attempt`` of a store, and how many keys have no finished attempt."""
    finished: dict[str, Run] = {}
    unfinished: set[str] = set()
    for run in s.scalars(select(Run).order_by(Run.key, Run.attempt)):
        if run.status == "finished":
            finished[run.key] = run
            unfinished.discard(run.key)
        elif run.key not in finished:
            unfinished.add(run.key)
    return finished, len(unfinished)


def _copy_run(dst: Session, src: Session, run: Run, attempt: int, hidden: str | None, write: bool) -> int:
    """Copy ``run`` with its samples and metrics as ``attempt`` (only counted unless ``write``);
    returns its number of sample rows."""
    samples = src.scalars(select(SampleResult).where(SampleResult.run_id == run.id)).all()
    if not write:
        return len(samples)
    copy = Run(attempt=attempt, **{c: getattr(run, c) for c in _RUN_COLUMNS})
    dst.add(copy)
    dst.flush()
    if hidden is not None:  # a run hidden where it was computed stays hidden
        dst.add(HiddenRun(run_id=copy.id, reason=hidden))
    dst.add_all(SampleResult(run_id=copy.id, **{c: getattr(r, c) for c in _SAMPLE_COLUMNS}) for r in samples)
    metrics = src.scalars(select(Metric).where(Metric.run_id == run.id)).all()
    dst.add_all(Metric(run_id=copy.id, **{c: getattr(m, c) for c in _METRIC_COLUMNS}) for m in metrics)
    return len(samples)


def _merge_runs(dst: Session, src: Session, src_hidden: dict[int, str], outcome: MergeOutcome,
                write: bool) -> None:
    finished, outcome.unfinished_skipped = _latest_finished(src)
    for key, run in finished.items():
        latest = dst.scalars(select(Run).where(Run.key == key).order_by(Run.attempt.desc()).limit(1)).first()
        label = run_label(run)
        if latest is None or latest.status in ("failed", "interrupted"):
            outcome.added_samples += _copy_run(dst, src, run, 1 if latest is None else latest.attempt + 1,
                                               src_hidden.get(run.id), write)
            outcome.added.append(label)
        elif latest.status != "finished":
            outcome.conflicts.append(f"{label}: the destination's attempt {latest.attempt} is {latest.status} "
                                     "(a process may be computing it); not merged — merge again when it has finished")
        else:
            ours, theirs = _samples(dst, latest.id), _samples(src, run.id)
            if ours == theirs:
                outcome.identical += 1
                continue
            differ = sum(1 for sid in ours.keys() | theirs.keys() if ours.get(sid) != theirs.get(sid))
            outcome.conflicts.append(f"{label}: the two stores hold different per-sample results for the same "
                                     f"protocol ({differ} of {len(ours.keys() | theirs.keys())} samples differ); "
                                     f"kept the destination's run {latest.id}")


def _merge_side_tables(dst: Session, src: Session, outcome: MergeOutcome, write: bool) -> None:
    for ref in src.scalars(select(Reference)):
        ident = {c: getattr(ref, c) for c in _REFERENCE_IDENTITY}
        mine = dst.scalars(select(Reference).filter_by(**ident)).first()
        if mine is None:
            if write:
                dst.add(Reference(value=ref.value, note=ref.note, **ident))
            outcome.references_added += 1
        elif mine.value != ref.value:
            outcome.conflicts.append(f"reference {ref.method} on {ref.dataset} ({ref.metric}, {ref.source}): "
                                     f"{mine.value:g} here, {ref.value:g} in the source; kept {mine.value:g}")
    for info in src.scalars(select(TaskInfo)):
        if write and dst.get(TaskInfo, info.task) is None:
            dst.add(TaskInfo(task=info.task, version=info.version, metrics=info.metrics))


def merge_store(dest: Store, source: Store, *, dry_run: bool = False) -> MergeOutcome:
    """Merge ``source`` into ``dest`` in one transaction (``dry_run``: only count, write nothing)."""
    if dest.location == source.location:
        raise ValueError(f"cannot merge {dest.location} into itself")
    outcome = MergeOutcome(source=source.location)
    src_hidden = {} if dry_run else source.hidden_runs()  # a dry run only counts: hidden flags change no count
    if src_hidden:
        dest.ensure_hidden_table()
    with source.session() as src:
        with dest.session() as dst:
            _merge_runs(dst, src, src_hidden, outcome, write=not dry_run)
            _merge_side_tables(dst, src, outcome, write=not dry_run)
            if not dry_run:
                dst.commit()
    return outcome
