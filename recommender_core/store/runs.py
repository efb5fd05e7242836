"""Run bookkeeping shared by every ingest job: lock, record, finish, prune.

A job takes its lock before any source I/O, records its run as ``running`` at once, and finishes
it as ``success``, ``unchanged`` or ``failed``. A run left ``running`` by a dead process is marked
``abandoned`` by the next run of the same job, which holds the lock, so the old one cannot be alive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ..errors import RecsysError
from ..redact import redact_text
from .engine import Store
from .tables import IngestRun, RunStatus, ScoringRun

__all__ = [
    "RunHandle",
    "RunSummary",
    "current_ingest_run",
    "finish_ingest_run",
    "ingest_job",
    "list_runs",
    "prune_ingest_runs",
    "start_ingest_run",
]


@dataclass
class RunHandle:
    """What a job fills in while it runs; ``ingest_job`` records it when the block ends."""

    run_id: int
    source: str
    status: str = RunStatus.SUCCESS
    source_version: str | None = None
    rows_accepted: int = 0
    rows_rejected: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    # Set when the job already wrote its final status inside its own data transaction.
    finished: bool = False


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


def start_ingest_run(store: Store, source: str) -> int:
    """Mark dead ``running`` runs of ``source`` abandoned and record a new running run."""
    now = store.clock.now()
    with store.session() as session:
        session.execute(
            sa.update(IngestRun)
            .where(col(IngestRun.source) == source, col(IngestRun.status) == RunStatus.RUNNING)
            .values(status=RunStatus.ABANDONED, finished_at=now,
                    error="abandoned: the process running it stopped before recording an outcome")
        )
        run = IngestRun(source=source, status=RunStatus.RUNNING, started_at=now)
        session.add(run)
        session.flush()
        assert run.id is not None  # noqa: S101 - flush assigns the key
        return run.id


def finish_ingest_run(session: Session, handle: RunHandle, *, now: datetime, error: str | None = None) -> None:
    """Record the outcome of a run inside ``session`` (so data and outcome commit together), finished at ``now``."""
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
    """
    with store.job_lock(job):
        handle = RunHandle(run_id=start_ingest_run(store, source), source=source)
        try:
            yield handle
        except BaseException as exc:
            message = str(exc) if isinstance(exc, RecsysError) else f"{type(exc).__name__}: {exc}"
            try:
                with store.session() as session:
                    finish_ingest_run(session, handle, now=store.clock.now(), error=message or type(exc).__name__)
            except RecsysError:
                # The store itself is what failed; the original error is the one to report, and
                # the next run will mark this one abandoned.
                pass
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
    return summaries[:limit]
