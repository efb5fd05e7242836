"""Run bookkeeping shared by every ingest job: lock, record, finish, prune.

A job takes its lock before any source I/O, records its run as ``running`` at once, and finishes
it as ``success``, ``unchanged`` or ``failed``. A run left ``running`` by a dead process is marked
``abandoned`` by the next run of the same job, which holds the lock; until then ``list_runs`` (and
the snapshot) show a ``running`` run whose lock is free as abandoned, so a killed job is visible at once.

The run row is also the run's fencing token. Every transaction that commits a run's results starts
with ``claim_run``: a conditional update of its own row from ``running`` to ``running`` (which
also row-locks it until the commit), then the job lock's check. A newer run that took the job over
has already marked the old row ``abandoned``, so the old run's claim matches no row and it commits
nothing; if the newer run comes while the old one is committing, its update of the old row waits for
that commit, and it starts after it, never beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ..errors import RecsysError
from ..redact import redact_text
from .engine import Store
from .locks import JobLock, lock_lost
from .tables import IngestRun, RunStatus, ScoringRun

__all__ = [
    "ABANDONED_ERROR",
    "SCORE_JOB",
    "RunHandle",
    "RunSummary",
    "claim_run",
    "current_ingest_run",
    "failure_message",
    "finish_ingest_run",
    "gone_running_runs",
    "ingest_job",
    "ingest_job_name",
    "list_runs",
    "prune_ingest_runs",
    "record_failure",
    "settle_running_runs",
    "start_ingest_run",
    "start_run",
]


SCORE_JOB = "score"
# What a run left ``running`` by a process that is gone is shown and recorded with.
ABANDONED_ERROR = "abandoned (process gone): the process running it stopped before recording an outcome"


def ingest_job_name(source: str) -> str:
    """The job (and lock) that ingests ``source``: ``ingest-lmsys`` for ``lmsys``."""
    return f"ingest-{source}"


def claim_run(conn: sa.Connection, lock: JobLock, table: type[IngestRun] | type[ScoringRun], run_id: int) -> None:
    """First statement of a transaction that commits a run's results: raise ``LockLostError``
    unless the run may still commit (its row still ``running``, its job lock still held).

    The row is updated, not read, so it stays locked until this transaction ends (Postgres row
    lock; SQLite's single writer): a newer run's marking it ``abandoned`` waits for the commit.
    """
    claimed = conn.execute(
        sa.update(table).where(col(table.id) == run_id, col(table.status) == RunStatus.RUNNING)
        .values(status=RunStatus.RUNNING))
    if claimed.rowcount != 1:
        raise lock_lost(lock.job, f"a newer run took the job over and marked run {run_id} abandoned")
    lock.check(conn)


@dataclass
class RunHandle:
    """What a job fills in while it runs; ``ingest_job`` records it when the block ends."""

    run_id: int
    source: str
    lock: JobLock
    status: str = RunStatus.SUCCESS
    source_version: str | None = None
    rows_accepted: int = 0
    rows_rejected: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    # Set when the job already wrote its final status inside its own data transaction.
    finished: bool = False

    def claim(self, conn: sa.Connection) -> None:
        """``claim_run`` for this run: call it first in every transaction that writes its results."""
        claim_run(conn, self.lock, IngestRun, self.run_id)


@dataclass(frozen=True)
class RunSummary:
    """One ingest or scoring run, for ``recsys runs`` and the snapshot."""

    kind: str  # ingest | score
    id: int
    source: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    source_version: str | None
    rows_accepted: int
    rows_rejected: int
    error: str | None
    details: dict[str, Any]


def start_run(store: Store, run: IngestRun | ScoringRun, *, same_job: Sequence[sa.ColumnElement[bool]] = ()) -> int:
    """Mark the job's dead ``running`` runs abandoned and record ``run`` (a new ``running`` row); its id.

    ``same_job`` narrows the runs to mark to the job's own (ingest runs: their ``source``); the
    caller holds the job lock, so a ``running`` run of the job belongs to a process that is gone.
    Ingest and scoring both start their runs here.
    """
    table = type(run)
    with store.session() as session:
        session.execute(
            sa.update(table).where(col(table.status) == RunStatus.RUNNING, *same_job)
            .values(status=RunStatus.ABANDONED, finished_at=run.started_at, error=ABANDONED_ERROR))
        session.add(run)
        session.flush()
        assert run.id is not None  # noqa: S101 - flush assigns the key
        return run.id


def start_ingest_run(store: Store, source: str) -> int:
    """Mark dead ``running`` runs of ``source`` abandoned and record a new running run."""
    return start_run(store, IngestRun(source=source, status=RunStatus.RUNNING, started_at=store.clock.now()),
                     same_job=[col(IngestRun.source) == source])


def failure_message(exc: BaseException) -> str:
    """The one line a failed run records for ``exc``: a ``RecsysError``'s message, else its type and text."""
    message = str(exc) if isinstance(exc, RecsysError) else f"{type(exc).__name__}: {exc}"
    return message or type(exc).__name__


def record_failure(store: Store, exc: BaseException, record: Callable[[Session, str], None]) -> None:
    """Record a run's failure: ``record(session, message)`` in its own transaction.

    A store error while recording is swallowed: the store itself is what failed, the original error
    is the one to report, and the next run of the job marks this one abandoned. Every job (ingest and
    scoring) records its failures here.
    """
    try:
        with store.session() as session:
            record(session, failure_message(exc))
    except RecsysError:
        pass


def finish_ingest_run(session: Session, handle: RunHandle, *, now: datetime, error: str | None = None) -> None:
    """Record the outcome of a run inside ``session`` (so data and outcome commit together), finished at ``now``.

    A success is claimed first (``claim_run``): a run that lost its lock records nothing. A failure
    is recorded whatever happened to the lock; it changes no data.
    """
    if error is None:
        handle.claim(session.connection())
    run = session.get(IngestRun, handle.run_id)
    if run is None:
        raise RuntimeError(f"ingest run {handle.run_id} vanished")
    run.status = RunStatus.FAILED if error is not None else handle.status
    run.finished_at = now
    run.source_version = handle.source_version
    run.rows_accepted = handle.rows_accepted
    run.rows_rejected = handle.rows_rejected
    run.details = dict(handle.details)
    run.error = redact_text(error) if error is not None else None
    session.add(run)
    handle.finished = True


def prune_ingest_runs(store: Store, source: str, keep: int) -> int:
    """Delete all but the newest ``keep`` finished runs of ``source`` (and their evidence).

    The current run (latest success) is never pruned, however old.
    """
    current = current_ingest_run(store, source)
    with store.session() as session:
        ids = session.exec(
            select(IngestRun.id)
            .where(col(IngestRun.source) == source, col(IngestRun.status) != RunStatus.RUNNING)
            .order_by(col(IngestRun.id).desc())
            .offset(keep)
        ).all()
        doomed = [i for i in ids if i is not None and (current is None or i != current.id)]
        if doomed:
            from .tables import BenchmarkEvidence

            # Evidence first: SQLite only cascades when foreign keys are on, so be explicit.
            session.execute(sa.delete(BenchmarkEvidence).where(col(BenchmarkEvidence.run_id).in_(doomed)))
            session.execute(sa.delete(IngestRun).where(col(IngestRun.id).in_(doomed)))
        return len(doomed)


def current_ingest_run(store: Store, source: str) -> IngestRun | None:
    """The latest successful run of ``source``: its evidence is the current evidence."""
    with store.session() as session:
        return session.exec(
            select(IngestRun)
            .where(col(IngestRun.source) == source, col(IngestRun.status) == RunStatus.SUCCESS)
            .order_by(col(IngestRun.id).desc())
            .limit(1)
        ).first()


@contextmanager
def ingest_job(store: Store, *, job: str, source: str, keep_runs: int = 30) -> Iterator[RunHandle]:
    """Lock ``job``, record a running run of ``source``, and record its outcome when the block ends.

    Any exception marks the run failed (with the error's one-line message) and propagates.
    If the block already called ``finish_ingest_run`` inside its own transaction, only pruning is left.
    Every other transaction that writes the run's results calls ``handle.claim`` first.
    """
    if job != ingest_job_name(source):
        raise ValueError(f"the job ingesting {source!r} must be named {ingest_job_name(source)!r}, not {job!r}")
    with store.job_lock(job) as lock:
        handle = RunHandle(run_id=start_ingest_run(store, source), source=source, lock=lock)
        try:
            yield handle
        except BaseException as exc:
            record_failure(store, exc, lambda session, message: finish_ingest_run(
                session, handle, now=store.clock.now(), error=message))
            raise
        if not handle.finished:
            with store.session() as session:
                finish_ingest_run(session, handle, now=store.clock.now())
        prune_ingest_runs(store, source, keep_runs)


def list_runs(store: Store, *, source: str | None = None, limit: int = 20) -> Sequence[RunSummary]:
    """Newest first: ingest runs (optionally of one source) and scoring runs (source ``score``)."""
    summaries: list[RunSummary] = []
    with store.session() as session:
        if source in (None, "score"):
            for s in session.exec(select(ScoringRun).order_by(col(ScoringRun.id).desc()).limit(limit)):
                assert s.id is not None  # noqa: S101 - rows read from the table always have a key
                summaries.append(RunSummary(
                    kind="score", id=s.id, source="score", status=s.status, started_at=s.started_at,
                    finished_at=s.finished_at, source_version=s.policy_hash, rows_accepted=0,
                    rows_rejected=0, error=s.error, details=dict(s.details)))
        if source != "score":
            query = select(IngestRun).order_by(col(IngestRun.id).desc()).limit(limit)
            if source is not None:
                query = query.where(col(IngestRun.source) == source)
            for r in session.exec(query):
                assert r.id is not None  # noqa: S101 - rows read from the table always have a key
                summaries.append(RunSummary(
                    kind="ingest", id=r.id, source=r.source, status=r.status, started_at=r.started_at,
                    finished_at=r.finished_at, source_version=r.source_version,
                    rows_accepted=r.rows_accepted, rows_rejected=r.rows_rejected, error=r.error,
                    details=dict(r.details)))
    summaries.sort(key=lambda s: s.started_at, reverse=True)
    return settle_running_runs(store, summaries[:limit])


def gone_running_runs(store: Store, table: type[IngestRun] | type[ScoringRun], jobs: dict[int, str]) -> set[int]:
    """The ids among ``jobs`` (run id -> job) whose job lock is free and that are still ``running``.

    A finished run records its outcome before it releases its lock, so a row still ``running``
    after its lock was seen free belongs to a process that is gone (or that lost its lock and will
    fail when it tries to commit).
    """
    free = {job for job in set(jobs.values()) if not store.job_lock_is_held(job)}
    suspects = [run_id for run_id, job in jobs.items() if job in free]
    if not suspects:
        return set()
    with store.session() as session:
        still = session.exec(select(table.id).where(col(table.id).in_(suspects),
                                                    col(table.status) == RunStatus.RUNNING)).all()
    return {run_id for run_id in still if run_id is not None}


def settle_running_runs(store: Store, runs: Iterable[RunSummary]) -> list[RunSummary]:
    """``runs`` with every ``running`` run whose job lock is free shown as abandoned (process gone).

    Only what is shown changes: the store is not written (read commands work with read-only access);
    the next run of the job records the abandonment.
    """
    runs = list(runs)
    running = [r for r in runs if r.status == RunStatus.RUNNING]
    if not running:
        return runs
    gone = {("ingest", i) for i in gone_running_runs(store, IngestRun, {
        r.id: ingest_job_name(r.source) for r in running if r.kind == "ingest"})}
    gone |= {("score", i) for i in gone_running_runs(store, ScoringRun, {
        r.id: SCORE_JOB for r in running if r.kind == "score"})}
    return [replace(r, status=RunStatus.ABANDONED, error=ABANDONED_ERROR) if (r.kind, r.id) in gone else r
            for r in runs]
