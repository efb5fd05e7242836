"""Retention of raw telemetry: ``recsys telemetry prune`` deletes old events in small batches, then the
rollups of the hours wholly before the cutoff (the hour and day that hold it are rebuilt,
so rollups never describe pruned events). Postgres does not partition ``telemetry_event``: see
docs/performance.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from ..config import MAX_RETENTION_DAYS
from ..store import Store
from ..store.tables import TelemetryEvent
from .rollups import _DIRTY, _ROLLUP, _day_key, _epoch_hour, _mark, catch_up_rollups, hour_floor, mark_hours_dirty

__all__ = ["PRUNE_BATCH", "PRUNE_JOB", "PruneResult", "prune_events"]

PRUNE_BATCH = 5_000
PRUNE_JOB = "telemetry-prune"


@dataclass(frozen=True)
class PruneResult:
    """What ``prune_events`` deleted."""

    cutoff: datetime
    deleted: int
    batches: int
    rollups_deleted: int = 0


def prune_events(
    store: Store, *, older_than_days: int, now: datetime | None = None, batch_size: int = PRUNE_BATCH
) -> PruneResult:
    """Delete raw events that started before ``now - older_than_days``, ``batch_size`` rows per
    transaction, so a large backlog never holds one long lock; then delete the rollups of the hours
    wholly before the cutoff and recompute the hour that holds it. Takes the ``telemetry-prune`` lock."""
    if not 1 <= older_than_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"older_than_days must be from 1 to {MAX_RETENTION_DAYS}")
    now = now or store.clock.now()
    cutoff = now - timedelta(days=older_than_days)
    deleted = batches = rollups_deleted = 0
    with store.job_lock(PRUNE_JOB) as lock:
        while True:
            with store.session() as session:
                lock.check(session.connection())  # a prune that lost its lock deletes nothing more
                ids = session.execute(
                    sa.select(col(TelemetryEvent.id)).where(col(TelemetryEvent.started_at) < cutoff)
                    .order_by(col(TelemetryEvent.id)).limit(batch_size)
                ).scalars().all()
                if not ids:
                    break
                session.execute(sa.delete(TelemetryEvent).where(col(TelemetryEvent.id).in_(ids)))
            deleted += len(ids)
            batches += 1
            if len(ids) < batch_size:
                break
        with store.connect() as conn:
            lock.check(conn)
            first_kept = hour_floor(cutoff)
            r = _ROLLUP.c
            rollups_deleted = int(conn.execute(sa.delete(_ROLLUP).where(sa.or_(
                sa.and_(r.span_hours == 1, r.hour_start < first_kept),
                sa.and_(r.span_hours == 24, r.hour_start < first_kept.replace(hour=0))))).rowcount)
            conn.execute(sa.delete(_DIRTY).where(_DIRTY.c.hour >= 0, _DIRTY.c.hour < _epoch_hour(first_kept)))
            if cutoff != first_kept:
                mark_hours_dirty(conn, [cutoff])
            # The cutoff's day keeps its row, rebuilt from the hour rows left.
            _mark(conn, [_day_key(_epoch_hour(first_kept) // 24)])
    catch_up_rollups(store)
    return PruneResult(cutoff=cutoff, deleted=deleted, batches=batches, rollups_deleted=rollups_deleted)
