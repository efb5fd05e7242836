"""The telemetry writer out of the caller's interpreter: a child process fed through a pipe."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent
from recommender_core.telemetry.events import TelemetryRecord
from recommender_core.telemetry.writer import encode_frame
from recommender_core.telemetry.writer_process import (
    WriterProcess,
    WriterProcessError,
    _decode,
    _encode,
    _message,
    _unpack,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning:pydantic"),
    pytest.mark.usefixtures("litellm_event_loop"),
]

T0 = datetime(2026, 11, 28, 12, 0, 0, 123457, tzinfo=UTC)


def _record(i: int, **extra: Any) -> TelemetryRecord:
    values: dict[str, Any] = dict(event_id=f"ev-{i}", model="gpt-4o-mini", status="success",
                                  started_at=T0 + timedelta(microseconds=i), ended_at=T0 + timedelta(seconds=1),
                                  latency_ms=12.5, prompt_tokens=3, completion_tokens=4, cost=1e-6,
                                  tags=("task:coding", "x"), task="coding")
    values.update(extra)
    return TelemetryRecord(**values)


def _count(store: Store) -> int:
    with store.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(TelemetryEvent)).scalar_one())


@pytest.fixture
def callbacks() -> Iterator[list[Any]]:
    saved = list(litellm.callbacks)
    made: list[Any] = []
    try:
        yield made
    finally:
        litellm.callbacks = saved
        for callback in made:
            callback.close(timeout=5)


def test_a_record_crosses_the_pipe_unchanged() -> None:
    for record in (_record(1), _record(2, ended_at=None, tags=(), cost=None, cache_hit=True, task=None)):
        assert _decode(_encode(record)) == record


def test_a_batch_message_carries_the_utc_days_of_its_start_times() -> None:
    """The child creates partitions from the days line alone, so it must name every UTC day of the
    batch: here a start at 23:30 at UTC-5 is the next UTC day, and a newline inside a value stays
    escaped in the frame, so the first newline still ends the days line."""
    late = datetime(2026, 11, 28, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    records = [_record(1), _record(2, started_at=late, model="a\nb"), _record(3)]
    days, frame = _unpack(_message(records))
    assert sorted(days) == [date(2026, 11, 28), date(2026, 11, 29)]
    assert frame == encode_frame(records)
    for broken in ("[]", "2026-13-01\n[]"):
        with pytest.raises(ValueError):
            _unpack(broken)


def test_the_callback_writes_through_a_child_process(store: Store, callbacks: list[Any]) -> None:
    from recommender_core.telemetry.callback import TelemetryCallback

    callback = TelemetryCallback(store.url, flush_interval=0.05)
    callbacks.append(callback)
    litellm.callbacks = [callback]
    for _ in range(5):
        litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], mock_response="ok")
    deadline = time.monotonic() + 20
    while callback.stats().written + callback.stats().queued < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert callback.flush(timeout=60)
    pid = callback.writer_pid
    assert pid is not None and pid != os.getpid()
    # the database URL went through the pipe, never into the child's argv
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert "recommender_core.telemetry.writer_process" in cmdline and store.url not in cmdline
    assert callback.stats().written == 5 and _count(store) == 5
    assert callback.close(timeout=10)
    assert callback.writer_pid is None
    with pytest.raises(ProcessLookupError):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # gone (reaped by close)
            time.sleep(0.05)


def test_a_dead_writer_process_is_replaced_and_nothing_is_lost(store: Store) -> None:
    from recommender_core.telemetry.writer import BatchWriter

    process = WriterProcess(store.url)
    writer = BatchWriter(sink=process, queue_size=1000, batch_size=50, flush_interval=0.05,
                         backoff_initial=0.05, backoff_max=0.2)
    try:
        writer.enqueue_many(_record(i) for i in range(100))
        assert writer.flush(timeout=60)
        first = process.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)
        writer.enqueue_many(_record(i) for i in range(100, 300))
        assert writer.flush(timeout=60)
        stats = writer.stats()
        assert stats.written == 300 and stats.dropped == 0  # a dead child is noticed and replaced
        assert process.pid not in (None, first)
        assert _count(store) == 300
    finally:
        writer.close(timeout=5)
        process.close()


def test_the_child_reports_store_errors_as_one_line(tmp_path: Path) -> None:
    # a database without the schema: the child answers with the store's error, the caller raises it
    process = WriterProcess(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(WriterProcessError, match=r"StoreSchemaError: The database at .* has no recsys schema"):
            process([_record(1)])
    finally:
        process.close()
    with pytest.raises(WriterProcessError, match="closed"):
        process([_record(2)])


def test_in_memory_sqlite_and_explicit_stores_write_in_this_process(memory_store: Store) -> None:
    from recommender_core.telemetry.callback import TelemetryCallback

    for callback in (TelemetryCallback("sqlite://"), TelemetryCallback(store=memory_store),
                     TelemetryCallback(store=memory_store, writer="thread")):
        try:
            assert callback._process is None
        finally:
            callback.close(timeout=5)
    with pytest.raises(ValueError, match="writer must be"):
        TelemetryCallback(store=memory_store, writer="fork")


# --- throughput: bigger writes for a backlog, lanes side by side, the frame written by the server ----

def test_a_backlog_is_drained_in_writes_of_up_to_max_batches() -> None:
    """Below one batch a write takes what is queued; with a backlog it takes up to max_batches batches."""
    import threading

    from recommender_core.telemetry.writer import BatchWriter

    for max_batches, expected in ((10, [50, 300]), (4, [50, 200, 100]), (1, [50, 50, 50, 50, 50, 50, 50])):
        gate = threading.Event()
        sizes: list[int] = []

        def sink(batch: Any, gate: threading.Event = gate, sizes: list[int] = sizes) -> int:
            gate.wait(10)  # the first write holds while the backlog builds
            sizes.append(len(batch))
            return len(batch)

        writer = BatchWriter(sink=sink, queue_size=1000, batch_size=50, flush_interval=60, max_batches=max_batches)
        try:
            writer.enqueue_many(_record(i) for i in range(50))  # one batch: the writer wakes and takes it
            deadline = time.monotonic() + 10
            while writer.stats().queued and writer._queue and time.monotonic() < deadline:
                time.sleep(0.01)
            writer.enqueue_many(_record(i) for i in range(50, 350))
            gate.set()
            assert writer.flush(timeout=20)
            assert sizes == expected
            assert writer.stats().written == 350
        finally:
            writer.close(timeout=5)


def test_a_part_written_is_counted_and_only_the_rest_is_retried() -> None:
    from recommender_core.telemetry.writer import BatchWriter, PartialWrite

    calls: list[list[str]] = []

    def sink(batch: Any) -> int:
        calls.append([r.event_id for r in batch])
        if len(calls) == 1:
            raise PartialWrite("lane 2 lost", written=20, unwritten=batch[20:])
        return len(batch)

    writer = BatchWriter(sink=sink, queue_size=100, batch_size=40, flush_interval=0.05, backoff_initial=0.05)
    try:
        writer.enqueue_many(_record(i) for i in range(40))
        assert writer.flush(timeout=10)
        stats = writer.stats()
        assert (stats.written, stats.dropped, stats.failed_batches) == (40, 0, 1)
        assert calls[1] == [f"ev-{i}" for i in range(20, 40)]
    finally:
        writer.close(timeout=5)


def test_two_lanes_write_one_batch_side_by_side(store: Store) -> None:
    process = WriterProcess(store.url, lanes=2, lane_min=50)
    try:
        assert process([_record(i) for i in range(60)]) == 60  # below two lanes' worth: one child
        assert len(process.pids) == 1
        assert process([_record(i) for i in range(60, 260)]) == 200
        assert len(process.pids) == 2 and os.getpid() not in process.pids
        assert process([_record(i) for i in range(250, 270)]) == 10  # idempotent on event_id
        assert _count(store) == 270
        for pid in process.pids:  # each child yields the CPU to the caller
            nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
            assert nice == os.getpriority(os.PRIO_PROCESS, 0) + 10 or nice == 19
    finally:
        process.close()
    assert process.pids == []


def test_a_lane_that_fails_gives_back_its_part_only(store: Store) -> None:
    """A row the database refuses (no model: NOT NULL) fails its lane; the other lane's part is stored."""
    from recommender_core.telemetry.writer_process import PartialWriteError

    process = WriterProcess(store.url, lanes=2, lane_min=10)
    batch = [_record(i) for i in range(20)]
    batch[15] = _record(15, model=None)
    try:
        with pytest.raises(PartialWriteError) as raised:
            process(batch)
        assert raised.value.written == 10
        assert [r.event_id for r in raised.value.unwritten] == [f"ev-{i}" for i in range(10, 20)]
        assert _count(store) == 10
    finally:
        process.close()


def test_times_are_stored_exactly_whatever_the_timezone_given(store: Store) -> None:
    from datetime import timezone

    from recommender_core.telemetry.writer import write_records

    plus_two = timezone(timedelta(hours=2))
    records = [_record(1, started_at=(T0 + timedelta(microseconds=999_999)).astimezone(plus_two), ended_at=None),
               _record(2, started_at=T0.replace(microsecond=0), ended_at=T0 + timedelta(hours=1))]
    assert write_records(store, records) == 2
    with store.session() as session:
        stored = {e.event_id: (e.started_at, e.ended_at, e.tags, e.cache_hit, e.cost)
                  for e in session.execute(sa.select(TelemetryEvent)).scalars()}
    assert stored == {r.event_id: (r.started_at, r.ended_at, list(r.tags), r.cache_hit, r.cost) for r in records}


def test_a_big_write_in_flight_counts_against_the_queue_bound() -> None:
    """While a write of several batches is in flight, queued + in flight stays within queue_size + one batch."""
    import threading

    from recommender_core.telemetry.writer import BatchWriter

    gate = threading.Event()
    taken: list[int] = []

    def sink(batch: Any) -> int:
        taken.append(len(batch))
        gate.wait(10)
        return len(batch)

    writer = BatchWriter(sink=sink, queue_size=400, batch_size=50, flush_interval=60, max_batches=4)
    try:
        writer.enqueue_many(_record(i) for i in range(300))  # a backlog: the writer takes 200 at once
        deadline = time.monotonic() + 10
        while not taken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert taken == [200]
        writer.enqueue_many(_record(i) for i in range(300, 1300))
        stats = writer.stats()
        assert stats.queued == 400 + 50  # 200 in flight, 250 queued: the room is 400 - 150
        assert stats.dropped == 1300 - 450
        gate.set()
        assert writer.flush(timeout=20)
        assert writer.stats().written == 450
    finally:
        gate.set()
        writer.close(timeout=5)


def test_a_failing_store_is_retried_one_batch_at_a_time_and_the_newest_events_are_kept() -> None:
    """While writes fail, a write takes one batch, not a backlog: during a write of several batches
    the queue's room shrinks and new events push out queued ones, newer than the write's, which a
    failed write would then keep in their place. The sink simulates a store that is away: each
    attempt takes a few milliseconds (a refused or timed-out connect), then fails."""
    import threading

    from recommender_core.telemetry.writer import BatchWriter

    away = threading.Event()
    away.set()
    taken: list[int] = []
    stored: set[str] = set()

    def sink(batch: Any) -> int:
        taken.append(len(batch))
        if away.is_set():
            time.sleep(0.003)
            raise ConnectionError("store away")
        stored.update(r.event_id for r in batch)
        return len(batch)

    writer = BatchWriter(sink=sink, queue_size=100, batch_size=20, flush_interval=60, backoff_initial=0.002,
                         backoff_max=0.004, max_batches=10)
    try:
        writer.enqueue_many(_record(i) for i in range(50))  # a backlog: the first write takes all 50
        deadline = time.monotonic() + 10
        while writer.stats().failed_batches < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert taken[0] == 50
        for i in range(50, 600):  # the callback keeps queueing while the writer retries
            writer.enqueue(_record(i))
            if i % 10 == 0:
                time.sleep(0.001)
        while len(taken) < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(taken) >= 5 and max(taken[1:]) <= 20, taken  # one batch per attempt while it fails
        away.clear()
        assert writer.flush(timeout=20)
        stats = writer.stats()
    finally:
        writer.close(timeout=5)
    assert {f"ev-{i}" for i in range(500, 600)} <= stored  # the newest queue_size events
    assert stats.written + stats.dropped == 600 and stats.written == len(stored)
