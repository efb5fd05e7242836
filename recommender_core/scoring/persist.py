"""Persisting a scoring run: its rows and its becoming current, in one transaction; rollback; pruning.

The run's lifecycle (start, abandon, failure) is ``store.runs``'s, shared with ingest; this module
only writes what a successful run adds: the utility rows (``store.bulk``), the run's details and the
``is_current`` flag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ..errors import ScoringError
from ..redact import redact_text
from ..scored import ScoredModel
from ..store import Store
from ..store.bulk import insert_utility_scores
from ..store.locks import JobLock
from ..store.runs import SCORE_JOB, claim_run, record_failure
from ..store.tables import RunStatus, ScoringRun, UtilityScore

__all__ = ["make_current", "prune_scoring_runs", "record_scoring_failure", "save_scores"]


def save_scores(store: Store, lock: JobLock, run_id: int, scores: Sequence[ScoredModel],
                details: Mapping[str, Any]) -> None:
    """Store run ``run_id``'s rows, record it successful with ``details`` and make it current, atomically.

    Claims the run first (``store.runs.claim_run``): a run that lost its job commits nothing.
    """
    with store.session() as session:
        claim_run(session.connection(), lock, ScoringRun, run_id)  # still this run's job?
        insert_utility_scores(session, run_id=run_id, scores=scores)  # COPY / executemany
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.is_current).is_(True))
                        .values(is_current=False))
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.id) == run_id).values(
            status=RunStatus.SUCCESS, is_current=True, finished_at=store.clock.now(), details=dict(details)))


def record_scoring_failure(store: Store, run_id: int, exc: BaseException) -> None:
    """Record run ``run_id`` failed with ``exc``'s one line, through ``store.runs.record_failure``."""
    def failed(session: Session, message: str) -> None:
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.id) == run_id).values(
            status=RunStatus.FAILED, finished_at=store.clock.now(), error=redact_text(message)))

    record_failure(store, exc, failed)


def prune_scoring_runs(store: Store, keep: int) -> None:
    """Delete all but the newest ``keep`` scoring runs (the current one is never deleted), with their rows."""
    with store.session() as session:
        ids = session.exec(
            select(ScoringRun.id).where(col(ScoringRun.status) != RunStatus.RUNNING,
                                        col(ScoringRun.is_current).is_(False))
            .order_by(col(ScoringRun.id).desc()).offset(max(keep - 1, 0))
        ).all()
        doomed = [i for i in ids if i is not None]
        if doomed:
            session.execute(sa.delete(UtilityScore).where(col(UtilityScore.run_id).in_(doomed)))
            session.execute(sa.delete(ScoringRun).where(col(ScoringRun.id).in_(doomed)))


def make_current(store: Store, run_id: int) -> tuple[str, datetime, tuple[ScoredModel, ...]]:
    """Make an earlier successful scoring run current again, atomically: its policy hash, start and rows."""
    with store.job_lock(SCORE_JOB) as lock, store.session() as session:
        lock.check(session.connection())
        run = session.get(ScoringRun, run_id)
        if run is None or run.status != RunStatus.SUCCESS:
            ok = session.exec(select(ScoringRun.id).where(col(ScoringRun.status) == RunStatus.SUCCESS)
                              .order_by(col(ScoringRun.id).desc()).limit(10)).all()
            what = "does not exist" if run is None else f"has status '{run.status}'"
            listed = ", ".join(str(i) for i in ok) or "none (run 'recsys score' first)"
            raise ScoringError(f"Scoring run {run_id} {what}; only successful runs can be made current. "
                               f"Successful runs: {listed}.")
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.is_current).is_(True)).values(is_current=False))
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.id) == run_id).values(is_current=True))
        rows = session.exec(select(UtilityScore).where(col(UtilityScore.run_id) == run_id)).all()
        scores = tuple(ScoredModel.from_row(r) for r in rows)
        return run.policy_hash or "", run.started_at, scores


