"""The bounded queue and the background batch writer behind ``TelemetryCallback``.

The caller's thread only appends to a bounded deque (``enqueue``), which never blocks and never
raises: when the queue is full the oldest event is dropped and counted. A daemon thread is woken
when ``batch_size`` events are queued, or every ``flush_interval``, and then drains the queue,
idempotent on ``event_id``: one batch per write, or when a backlog has built up (more than one
batch queued), up to ``max_batches`` batches in one write. When the database is away, the batch
goes back to the front of the queue and the writer retries with exponential backoff while new
events keep buffering up to the bound, so memory never exceeds ``queue_size`` events plus one batch,
whatever the load (while a write of more than one batch is in flight, what it holds beyond one batch
counts against the queue's room).

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
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from ..redact import first_line
from ..store import Store
from ..store.partitions import ensure_event_partitions, event_insert_sql
from .events import TelemetryRecord

__all__ = ["BatchWriter", "PartialWrite", "WriterStats", "encode_frame", "encode_row", "write_frame", "write_records"]

log = logging.getLogger("recsys.telemetry")


_COLUMNS = tuple(f.name for f in fields(TelemetryRecord))
_STARTED, _ENDED, _TAGS = _COLUMNS.index("started_at"), _COLUMNS.index("ended_at"), _COLUMNS.index("tags")
_VALUES = operator.attrgetter(*_COLUMNS)
_CAST = {"latency_ms": "DOUBLE PRECISION", "ttft_ms": "DOUBLE PRECISION", "cost": "DOUBLE PRECISION",
         "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT", "cache_hit": "BOOLEAN"}


def _utc_text(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC: what SQLite stores, and exact text for Postgres."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(" ", "microseconds")[:26]


def encode_row(record: TelemetryRecord) -> list[Any]:
    """One event as a frame row: its values in column order, times as UTC text, tags a list."""
    values = list(_VALUES(record))
    values[_STARTED] = _utc_text(values[_STARTED])
    if values[_ENDED] is not None:
        values[_ENDED] = _utc_text(values[_ENDED])
    values[_TAGS] = list(values[_TAGS])
    return values


def encode_frame(records: Iterable[TelemetryRecord]) -> str:
    """A batch as one JSON array of rows (``encode_row``): what ``write_frame`` inserts."""
    return encode_batch(records)[0]


def encode_batch(records: Iterable[TelemetryRecord]) -> tuple[str, set[str]]:
    """``encode_frame``'s text and the UTC days of the batch's start times (ISO ``YYYY-MM-DD``), read
    off the same rows: what ``write_frame`` needs as ``days`` without parsing the frame again."""
    rows = [encode_row(r) for r in records]
    return json.dumps(rows, separators=(",", ":"), allow_nan=False), {row[_STARTED][:10] for row in rows}


def _postgres_value(index: int, column: str) -> str:
    if column in ("started_at", "ended_at"):
        return f"CAST(r ->> {index} AS TIMESTAMP) AT TIME ZONE 'UTC'"
    if column == "tags":
        return f"CAST(r -> {index} AS JSON)"
    if column in _CAST:
        return f"CAST(r ->> {index} AS {_CAST[column]})"
    return f"r ->> {index}"


_NAMES = ", ".join(_COLUMNS)
# The event insert, one statement per batch on each backend: the server unpacks the frame (C code),
# so the writer process never builds a Python object per event. WITH ORDINALITY / ORDER BY keep the
# frame's order, so of two rows with one event id the first is stored (DO NOTHING skips the second).
_INSERT = {
    # Postgres: the unique key is (event_id, started_at) on the day-partitioned table, and
    # event_insert_sql adds the dedupe of an event id stored with a start within a minute of the row's.
    "postgresql": sa.text(event_insert_sql(_NAMES, (
        f"(SELECT {', '.join(f'{_postgres_value(i, c)} AS {c}' for i, c in enumerate(_COLUMNS))} "  # noqa: S608 - constants
        "FROM jsonb_array_elements(CAST(:frame AS JSONB)) WITH ORDINALITY AS e(r, n) ORDER BY n)"))),
    # SQLite: WHERE true is SQLite's required disambiguation between a SELECT and an upsert clause.
    "sqlite": sa.text(
        f"INSERT INTO telemetry_event ({_NAMES}) "  # noqa: S608 - constants
        f"SELECT {', '.join(f'value ->> {i}' if c != 'tags' else f'value -> {i}' for i, c in enumerate(_COLUMNS))} "
        "FROM json_each(:frame) WHERE true ORDER BY key "
        "ON CONFLICT (event_id) DO NOTHING"),
}


# The insert's plan, for this transaction only (set_config(..., true) is SET LOCAL), in one round trip.
# The event id dedupe must probe the unique index once per row (store.partitions, DEDUPE_WINDOW), and
# the planner does not always see it: it costs the frame at 100 rows whatever its size, and a day
# partition whose statistics lag behind its growth looks small enough to hash whole, every batch. And
# psycopg prepares a statement run five times on one connection, after which Postgres may keep a
# generic plan made while the day's partition was empty. On one writer connection from an empty day,
# that took 500-event inserts from 22,000 to 2,000 events/s within 400,000 events. So: a fresh plan
# per batch (about 0.4 ms), with no hash or merge join, which leaves the nested loop of index probes.
_POSTGRES_SETTINGS = ("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                      "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)")
# The callback's writes also commit without waiting for the WAL flush (write_frame, durable=False).
_POSTGRES_SETTINGS_NOT_DURABLE = f"{_POSTGRES_SETTINGS}, set_config('synchronous_commit', 'off', true)"


def write_records(store: Store, records: Sequence[TelemetryRecord], *,
                  claim: Callable[[sa.Connection], None] | None = None, durable: bool = True) -> int:
    """Insert ``records``, skipping event ids already stored; returns how many were new.

    One event id can appear twice in ``records`` (a hook fired twice): the first is kept. ``claim``
    runs first in the write transaction (a job's ``RunHandle.claim``: a run that lost its job lock
    writes nothing). ``durable`` as for ``write_frame``.
    """
    if not records:
        return 0
    # One event id can appear twice in a batch (a hook fired twice): keep the first.
    unique: dict[str, TelemetryRecord] = {}
    for record in records:
        unique.setdefault(record.event_id, record)
    return write_frame(store, encode_frame(unique.values()), claim=claim, durable=durable,
                       days={r.started_at for r in unique.values()})


def _frame_days(frame: str) -> set[date]:
    """The UTC days of a frame's start times (``encode_row`` writes them as UTC text)."""
    return {date.fromisoformat(day) for day in {row[_STARTED][:10] for row in json.loads(frame)}}


def write_frame(store: Store, frame: str, *, claim: Callable[[sa.Connection], None] | None = None,
                durable: bool = True, days: Iterable[datetime | date] | None = None) -> int:
    """Insert a batch encoded by ``encode_frame`` in one statement; returns how many events were new.

    On Postgres the day partitions of the batch's events are made first, in a transaction of their
    own (``store.partitions``): from ``days`` when the caller knows them (the writer process gets
    them with each frame), else read from the frame; a known day costs no query.

    The one place a batch of events is written. ``durable=False`` (the callback's writer) commits
    without waiting for the WAL flush on Postgres (``synchronous_commit = off`` for this transaction
    only): a server crash can lose the last fraction of a second of telemetry, never a partial batch,
    and never anything else (docs/performance.md, "Writer throughput").
    """
    if store.dialect == "postgresql":
        ensure_event_partitions(store, _frame_days(frame) if days is None else days)
    with store.connect() as conn:
        if claim is not None:
            claim(conn)
        if store.dialect == "postgresql":
            conn.exec_driver_sql(_POSTGRES_SETTINGS if durable else _POSTGRES_SETTINGS_NOT_DURABLE)
        result = conn.execute(_INSERT[store.dialect], {"frame": frame})
        return int(result.rowcount)


class PartialWrite(ConnectionError):
    """A sink wrote part of a batch: ``written`` events are stored, ``unwritten`` go back to the queue."""

    def __init__(self, message: str, *, written: int, unwritten: Sequence[TelemetryRecord]) -> None:
        super().__init__(message)
        self.written = written
        self.unwritten = list(unwritten)


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

    ``sink`` receives each batch (``write_records`` on a store, or a ``WriterProcess``): at most
    ``batch_size`` events, or up to ``max_batches * batch_size`` when more than one batch is queued.
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
        max_batches: int = 10,
        name: str = "recsys-telemetry-writer",
    ) -> None:
        if queue_size < 1 or batch_size < 1 or max_batches < 1:
            raise ValueError("queue_size, batch_size and max_batches must be at least 1")
        self.max_batches = max_batches
        self._sink = sink
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._queue: deque[TelemetryRecord] = deque()
        # What the queue may hold now: ``queue_size``, less what a write in flight holds beyond one
        # batch, so the events in memory never exceed ``queue_size`` plus one batch.
        self._room = queue_size
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
            if len(self._queue) >= self._room:  # full: the oldest goes
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(record)
            # Wake the writer once, when the queue reaches a batch: it then drains until empty.
            full = len(self._queue) == self.batch_size
        if full:
            self._wake.set()

    def enqueue_many(self, records: Iterable[TelemetryRecord]) -> None:
        """Queue records under one lock; same rules as ``enqueue``."""
        with self._lock:
            if self._closing:
                self._dropped += sum(1 for _ in records)
                return
            before = len(self._queue)
            for record in records:
                if len(self._queue) >= self._room:
                    self._queue.popleft()
                    self._dropped += 1
                self._queue.append(record)
            full = before < self.batch_size <= len(self._queue)
        if full:
            self._wake.set()

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

    def _take(self, *, drain: bool) -> list[TelemetryRecord]:
        with self._lock:
            queued = len(self._queue)
            # A backlog (more than one batch queued) is drained in one bigger write, up to
            # ``max_batches`` batches: fewer round trips and transactions when the store lags. Not
            # while the store is failing (``drain`` False): while a write of several batches is in
            # flight the queue's room shrinks, so new events push out queued ones, all newer than
            # the write's; if that write then fails, keeping its events would keep older events
            # than those pushed out. One batch at a time leaves the room whole.
            many = drain and queued > self.batch_size
            count = min(queued, self.batch_size * self.max_batches if many else self.batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            self._room = self.queue_size - max(count - self.batch_size, 0)
            return batch

    def _give_back(self, batch: list[TelemetryRecord]) -> None:
        """Put a failed batch back at the front, keeping the bound (the oldest go first)."""
        with self._lock:
            room = self.queue_size - len(self._queue)
            keep = batch[len(batch) - room:] if room < len(batch) else batch
            self._dropped += len(batch) - len(keep)
            self._queue.extendleft(reversed(keep))
            self._in_flight = 0
            self._room = self.queue_size
            self._idle.notify_all()

    def _done(self, written: int) -> None:
        with self._lock:
            self._written += written
            self._in_flight = 0
            self._room = self.queue_size
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
                batch = self._take(drain=backoff == 0.0)
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
                    if isinstance(exc, PartialWrite):  # what was stored counts; the rest is retried
                        with self._lock:
                            self._written += exc.written
                        batch = exc.unwritten
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
