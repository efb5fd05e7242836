"""Retention of raw telemetry: ``recsys telemetry prune`` removes old events, then the rollups of the
hours wholly before the cutoff (the hour and day that hold it are rebuilt, so rollups never describe
pruned events).

On Postgres ``telemetry_event`` is partitioned by UTC day (``store.partitions``): the partitions of
the days wholly before the cutoff are dropped, one short transaction each (counted first, so
``deleted`` stays exact), and the partitions of today and tomorrow are made sure of. Then, on both
backends, what is left before the cutoff (the cutoff's own day, the DEFAULT partition, a partition
whose drop timed out; on SQLite everything) is deleted in batches of ``batch_size`` rows per
transaction, so no lock is held long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from ..config import MAX_RETENTION_DAYS
from ..store import Store
from ..store.locks import JobLock
from ..store.partitions import LOCK_TIMEOUT, day_partitions, ensure_event_partitions, forget_partitions
from ..store.tables import TelemetryEvent
from .rollups import _DIRTY, _ROLLUP, _day_key, _epoch_hour, _mark, catch_up_rollups, hour_floor, mark_hours_dirty

__all__ = ["PRUNE_BATCH", "PRUNE_JOB", "PruneResult", "prune_events"]

log = logging.getLogger("recsys.telemetry")

PRUNE_BATCH = 5_000
PRUNE_JOB = "telemetry-prune"


@dataclass(frozen=True)
class PruneResult:
    """What ``prune_events`` deleted: ``deleted`` events in all, of which those of ``partitions_dropped``
    whole-day partitions (Postgres) went with their partition, the rest in ``batches`` batches."""

    cutoff: datetime
    deleted: int
    batches: int
    rollups_deleted: int = 0
    partitions_dropped: int = 0


def prune_events(
    store: Store, *, older_than_days: int, now: datetime | None = None, batch_size: int = PRUNE_BATCH
) -> PruneResult:
    """Delete raw events that started before ``now - older_than_days``: on Postgres first by dropping
    the day partitions wholly before it; then ``batch_size`` rows per transaction, so a large backlog
    never holds one long lock; then delete the rollups of the hours wholly before the cutoff and
    recompute the hour that holds it. Takes the ``telemetry-prune`` lock."""
    if not 1 <= older_than_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"older_than_days must be from 1 to {MAX_RETENTION_DAYS}")
    now = now or store.clock.now()
    cutoff = now - timedelta(days=older_than_days)
    deleted = batches = rollups_deleted = dropped = 0
    with store.job_lock(PRUNE_JOB) as lock:
        if store.dialect == "postgresql":
            dropped, deleted = _drop_partitions(store, lock, cutoff)
            ensure_event_partitions(store, [store.clock.now()])  # writers then rarely create one
        started = col(TelemetryEvent.started_at)
        while True:
            with store.session() as session:
                lock.check(session.connection())  # a prune that lost its lock deletes nothing more
                ids = session.execute(
                    sa.select(col(TelemetryEvent.id)).where(started < cutoff)
                    .order_by(started, col(TelemetryEvent.id)).limit(batch_size)
                ).scalars().all()
                if not ids:
                    break
                # started_at too: Postgres then looks for the ids only in the partitions before the cutoff.
                session.execute(sa.delete(TelemetryEvent).where(col(TelemetryEvent.id).in_(ids), started < cutoff))
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
    return PruneResult(cutoff=cutoff, deleted=deleted, batches=batches, rollups_deleted=rollups_deleted,
                       partitions_dropped=dropped)


def _drop_partitions(store: Store, lock: JobLock, cutoff: datetime) -> tuple[int, int]:
    """Drop the day partitions wholly before ``cutoff``; returns (partitions dropped, events in them).

    ``DROP TABLE`` of a partition takes an ACCESS EXCLUSIVE lock on ``telemetry_event`` for its short
    transaction; one that cannot get it within the lock timeout is left to the batched delete.
    """
    with store.connect() as conn:
        days = day_partitions(conn)
    dropped = rows = 0
    for day, name in sorted(days.items()):
        if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) > cutoff:
            continue
        with store.connect() as conn:
            lock.check(conn)
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            try:
                with conn.begin_nested():
                    count = int(conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one())  # noqa: S608 - a partition's name
                    conn.exec_driver_sql(f"DROP TABLE {name}")
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                log.warning("telemetry prune: %s is in use; its events are deleted in batches instead", name)
                continue
        forget_partitions(store, [day])
        dropped += 1
        rows += count
    return dropped, rows
