"""The bounded queue and the background batch writer behind ``TelemetryCallback``.

The caller's thread only appends to a bounded deque (``enqueue``), which never blocks and never
raises: when the queue is full the oldest event is dropped and counted. A daemon thread takes
batches by size (``batch_size``) or time (``flush_interval``) and inserts them, idempotent on
``event_id``. When the database is away, the batch goes back to the front of the queue and the
writer retries with exponential backoff while new events keep buffering up to the bound, so
memory never exceeds ``queue_size`` events whatever the load.

The backoff holds whoever is waiting: ``flush`` waits for the writer's next attempt instead of
forcing one (so a flush against a dead store makes a few attempts, not thousands), and only
``close`` cuts a backoff short, to stop. ``close(timeout)`` returns within ``timeout`` even when the
writer thread is stuck in a connection attempt (it is a daemon thread: it does not hold up exit).
"""

from __future__ import annotations

import json
import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import sqlalchemy as sa

from ..redact import first_line
from ..store import Store
from ..store.bulk import copy_rows
from ..store.partitions import ensure_event_partitions, event_insert_sql
from ..store.tables import TelemetryEvent
from .events import TelemetryRecord

__all__ = ["BatchWriter", "WriterStats", "write_records"]

log = logging.getLogger("recsys.telemetry")


_COLUMNS = tuple(f.name for f in fields(TelemetryRecord))
_STAGE = "recsys_telemetry_stage"
# Every column but the last (``tags``, written as JSON text).
assert _COLUMNS[-1] == "tags"  # noqa: S101 - a field order the COPY below relies on
_ROW_VALUES = operator.attrgetter(*_COLUMNS[:-1])


def write_records(store: Store, records: Sequence[TelemetryRecord], *,
                  claim: Callable[[sa.Connection], None] | None = None) -> int:
    """Insert ``records``, skipping event ids already stored; returns how many were new.

    Postgres: ``COPY`` into a session-local staging table, then one ``INSERT ... SELECT ... ON
    CONFLICT DO NOTHING`` (fast, and its row count is exact). SQLite: an executemany insert.
    ``claim`` runs first in the write transaction (a job's ``RunHandle.claim``: a run that lost its
    job lock writes nothing).
    """
    if not records:
        return 0
    # One event id can appear twice in a batch (a hook fired twice): keep the first.
    unique: dict[str, TelemetryRecord] = {}
    for record in records:
        unique.setdefault(record.event_id, record)
    # Postgres: the day partitions of these events exist before the write transaction (partitions.py).
    ensure_event_partitions(store, (r.started_at for r in unique.values()))
    if store.dialect == "postgresql":
        return _write_postgres(store, list(unique.values()), claim)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    table = TelemetryEvent.__table__  # type: ignore[attr-defined]
    statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=["event_id"])
    with store.connect() as conn:
        if claim is not None:
            claim(conn)
        result = conn.execute(statement, [r.as_row() for r in unique.values()])
    count = result.rowcount
    return count if count is not None and count >= 0 else len(unique)


def _write_postgres(store: Store, records: list[TelemetryRecord],
                    claim: Callable[[sa.Connection], None] | None) -> int:
    columns = ", ".join(_COLUMNS)
    with store.connect() as conn:
        if claim is not None:
            claim(conn)
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "  # noqa: S608 - constants
            f"SELECT {columns} FROM telemetry_event WITH NO DATA")
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            copy_rows(cursor, _STAGE, _COLUMNS,
                      ((*_ROW_VALUES(r), json.dumps(list(r.tags))) for r in records))
        finally:
            cursor.close()
        # ON CONFLICT (event_id, started_at), plus a NOT EXISTS on event_id: partitions.event_insert_sql.
        result = conn.exec_driver_sql(event_insert_sql(columns, _STAGE))
        return int(result.rowcount)


@dataclass(frozen=True)
class WriterStats:
    """Counters of a writer since it started."""

    queued: int
    written: int
    dropped: int
    failed_batches: int
    last_error: str | None


class BatchWriter:
    """A bounded queue drained into a store by one background thread.

    ``sink`` receives each batch; it defaults to ``write_records`` on ``store``. ``clock`` and
    ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        sink: Callable[[Sequence[TelemetryRecord]], int],
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        name: str = "recsys-telemetry-writer",
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self._sink = sink
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._queue: deque[TelemetryRecord] = deque(maxlen=queue_size)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._last_error: str | None = None
        self._closing = False
        # Set by close: ends a backoff wait at once (a flush's wake-up does not).
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- the caller's side --------------------------------------------------------------------

    def enqueue(self, record: TelemetryRecord) -> None:
        """Queue one record; never blocks. A full queue drops its oldest record and counts it."""
        with self._lock:
            if self._closing:
                self._dropped += 1
                return
            if len(self._queue) == self.queue_size:
                self._dropped += 1
            self._queue.append(record)  # the deque's maxlen evicts the oldest
            full = len(self._queue) >= self.batch_size
        if full:
            self._wake.set()

    def enqueue_many(self, records: Iterable[TelemetryRecord]) -> None:
        for record in records:
            self.enqueue(record)

    @property
    def dropped(self) -> int:
        return self._dropped

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(queued=len(self._queue) + self._in_flight, written=self._written,
                               dropped=self._dropped, failed_batches=self._failed,
                               last_error=self._last_error)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` passed first.

        The writer is asked to write now, unless it is backing off from a failed attempt: then the
        flush waits for its next attempt (the backoff holds, however often flush is called).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._wake.set()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(remaining, 0.05))
            return True

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread; returns within ``timeout``.

        Events queued after close are dropped and counted.
        """
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._lock:
            self._closing = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        return flushed

    # --- the writer thread --------------------------------------------------------------------

    def _take(self) -> list[TelemetryRecord]:
        with self._lock:
            count = min(len(self._queue), self.batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _give_back(self, batch: list[TelemetryRecord]) -> None:
        """Put a failed batch back at the front, keeping the bound (the oldest go first)."""
        with self._lock:
            room = self.queue_size - len(self._queue)
            keep = batch[len(batch) - room:] if room < len(batch) else batch
            self._dropped += len(batch) - len(keep)
            self._queue.extendleft(reversed(keep))
            self._in_flight = 0
            self._idle.notify_all()

    def _done(self, written: int) -> None:
        with self._lock:
            self._written += written
            self._in_flight = 0
            self._idle.notify_all()

    def _run(self) -> None:
        backoff = 0.0
        while True:
            if backoff:
                # The store is away: wait out the backoff whoever asks; only close ends it (and
                # then the writer stops without another attempt: close has already waited).
                if self._stop.wait(backoff):
                    return
            else:
                self._wake.wait(self.flush_interval)
            self._wake.clear()
            closing = self._stop.is_set()
            while True:
                batch = self._take()
                if not batch:
                    with self._lock:
                        self._idle.notify_all()
                    break
                try:
                    written = self._sink(batch)
                except Exception as exc:  # any store failure: keep the events and retry later
                    self._failed += 1
                    # Redacted: a driver message may carry the DSN, and library users' logs have no filter.
                    self._last_error = f"{type(exc).__name__}: {first_line(exc)}"
                    if backoff == 0.0:
                        log.warning("telemetry writer: store unavailable, buffering events: %s", self._last_error)
                    self._give_back(batch)
                    backoff = min(max(backoff * 2, self.backoff_initial), self.backoff_max)
                    break
                else:
                    if backoff:
                        log.info("telemetry writer: store reachable again")
                    backoff = 0.0
                    self._done(written)
                    # Keep draining: a wake-up (size, time, flush or close) empties the queue.
            if closing:
                return
