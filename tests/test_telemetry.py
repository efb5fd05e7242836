"""Telemetry without litellm: event mapping, the bounded queue and writer, rollups, pruning."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.errors import RejectedRow
from recommender_core.stats import percentile
from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent, TelemetryRollup
from recommender_core.telemetry.events import TelemetryRecord, record_from_standard_logging, task_from
from recommender_core.telemetry.retention import prune_events
from recommender_core.telemetry.rollups import read_window
from recommender_core.telemetry.sketch import DOCUMENTED_RELATIVE_ERROR
from recommender_core.telemetry.writer import BatchWriter, write_records

from ._relay import TcpRelay

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
runner = CliRunner()


def _record(i: int, *, model: str = "gpt-4o", task: str | None = "coding", status: str = "success",
            latency: float | None = 100.0, ago: timedelta = timedelta(minutes=1), cost: float | None = 0.001,
            cache_hit: bool = False, ttft: float | None = None, group: str | None = None) -> TelemetryRecord:
    started = NOW - ago
    return TelemetryRecord(
        event_id=f"evt-{i}", model=model, model_group=group, task=task, status=status, started_at=started,
        ended_at=started + timedelta(milliseconds=latency or 0), latency_ms=latency, ttft_ms=ttft,
        prompt_tokens=100, completion_tokens=100, cost=cost, cache_hit=cache_hit,
        error_class="RateLimitError" if status == "failure" else None, tags=(f"task:{task}",) if task else ())


def _slo(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "chatcmpl-1", "trace_id": "trace-1", "model_group": "smart", "model": "gpt-4o",
        "custom_llm_provider": "openai", "status": "success", "response_cost": 0.0025,
        "prompt_tokens": 12, "completion_tokens": 34, "startTime": 1_790_000_000.0,
        "endTime": 1_790_000_000.25, "completionStartTime": 1_790_000_000.05, "cache_hit": None,
        "request_tags": ["team:x", "task:coding"], "stream": True,
        "messages": [{"role": "user", "content": "SECRET PROMPT"}], "response": {"text": "SECRET ANSWER"},
        "error_information": {"error_class": "", "error_message": ""}, "metadata": {},
    }
    base.update(overrides)
    return base


# --- mapping ------------------------------------------------------------------------------------

def test_standard_logging_object_maps_every_field() -> None:
    record = record_from_standard_logging(_slo(), now=NOW)
    assert (record.event_id, record.trace_id, record.model_group, record.model, record.provider) == (
        "chatcmpl-1", "trace-1", "smart", "gpt-4o", "openai")
    assert record.status == "success" and record.error_class is None
    assert record.task == "coding" and record.tags == ("team:x", "task:coding")
    assert record.latency_ms == pytest.approx(250.0, abs=0.01)
    assert record.ttft_ms == pytest.approx(50.0, abs=0.01)
    assert (record.prompt_tokens, record.completion_tokens, record.cost) == (12, 34, 0.0025)
    assert record.started_at == datetime.fromtimestamp(1_790_000_000.0, UTC)
    assert "SECRET" not in repr(record.as_row())


def test_failure_unstreamed_and_task_from_metadata() -> None:
    record = record_from_standard_logging(
        _slo(status="failure", stream=None, request_tags=[], response_cost=0.0,
             error_information={"error_class": "RateLimitError", "error_message": "SECRET"}),
        metadata={"task": "math"}, now=NOW)
    assert record.status == "failure" and record.error_class == "RateLimitError"
    assert record.ttft_ms is None  # not streamed: the first token is the end of the call
    assert record.task == "math"
    with pytest.raises(RejectedRow, match=r"^no event id$"):
        record_from_standard_logging(_slo(id=None), now=NOW)
    assert task_from(["task:"]) is None


# --- the writer ---------------------------------------------------------------------------------

def test_queue_is_bounded_and_drops_the_oldest() -> None:
    gate = threading.Event()
    written: list[str] = []

    def sink(batch: Sequence[TelemetryRecord]) -> int:
        gate.wait(10)
        written.extend(r.event_id for r in batch)
        return len(batch)

    writer = BatchWriter(sink=sink, queue_size=50, batch_size=10, flush_interval=0.01)
    try:
        first = [_record(i) for i in range(10)]
        writer.enqueue_many(first)
        time.sleep(0.2)  # the writer takes the first batch and blocks in the sink
        writer.enqueue_many(_record(i) for i in range(10, 210))
        stats = writer.stats()
        assert stats.queued <= 50 + 10  # the bound, plus the one batch in flight
        assert writer.dropped == 200 - 50
        gate.set()
        assert writer.flush(timeout=5)
    finally:
        gate.set()
        writer.close()
    # the newest 50 survive, in order, after the batch that was in flight
    assert written == [f"evt-{i}" for i in range(10)] + [f"evt-{i}" for i in range(160, 210)]


def test_writer_retries_with_backoff_and_keeps_the_bound() -> None:
    failing = threading.Event()
    failing.set()
    calls: list[int] = []
    written: list[str] = []

    def sink(batch: Sequence[TelemetryRecord]) -> int:
        calls.append(len(batch))
        if failing.is_set():
            raise ConnectionError("database away")
        written.extend(r.event_id for r in batch)
        return len(batch)

    writer = BatchWriter(sink=sink, queue_size=20, batch_size=5, flush_interval=0.01, backoff_initial=0.01,
                         backoff_max=0.05)
    try:
        writer.enqueue_many(_record(i) for i in range(30))
        assert not writer.flush(timeout=0.3)
        stats = writer.stats()
        assert stats.failed_batches >= 2 and stats.queued == 20 and stats.dropped == 10
        assert "database away" in (stats.last_error or "")
        failing.clear()
        assert writer.flush(timeout=5)
    finally:
        writer.close()
    assert written == [f"evt-{i}" for i in range(10, 30)]


def test_close_flushes_and_later_events_are_counted_as_dropped() -> None:
    written: list[str] = []
    writer = BatchWriter(sink=lambda b: written.extend(r.event_id for r in b) or len(b), queue_size=100,
                         batch_size=1000, flush_interval=60)
    writer.enqueue_many(_record(i) for i in range(7))
    assert writer.close(timeout=5)
    assert len(written) == 7
    writer.enqueue(_record(99))
    assert writer.dropped == 1


def test_write_records_is_idempotent_on_event_id(store: Store) -> None:
    records = [_record(i) for i in range(5)]
    assert write_records(store, records) == 5
    assert write_records(store, [*records, _record(5), _record(5)]) == 1
    with store.session() as session:
        rows = session.execute(sa.select(TelemetryEvent.event_id, TelemetryEvent.tags)).all()  # type: ignore[call-overload]
    assert len(rows) == 6
    assert dict(rows)["evt-0"] == ["task:coding"]


# --- the writer against a database that goes away and comes back -----------------------------------

@pytest.mark.postgres
def test_writer_survives_postgres_going_away_and_coming_back(relayed_postgres: tuple[str, TcpRelay],
                                                             postgres_url: str) -> None:
    url, relay = relayed_postgres
    store = Store(url)
    writer = BatchWriter(sink=lambda b: write_records(store, b), queue_size=1000, batch_size=50,
                         flush_interval=0.02, backoff_initial=0.05, backoff_max=0.2)
    try:
        writer.enqueue_many(_record(i) for i in range(100))
        assert writer.flush(timeout=10)
        relay.stop()  # the database goes away: existing connections die, new ones are refused
        writer.enqueue_many(_record(i) for i in range(100, 300))
        assert not writer.flush(timeout=1.0)
        assert writer.stats().failed_batches >= 1
        assert writer.stats().queued == 200
        relay.start()  # and comes back
        assert writer.flush(timeout=15), writer.stats()
    finally:
        writer.close(timeout=1)
        store.dispose()
    direct = Store(postgres_url)
    try:
        with direct.session() as session:
            count = session.execute(sa.select(sa.func.count()).select_from(TelemetryEvent)).scalar_one()
    finally:
        direct.dispose()
    assert count == 300
    assert writer.stats().dropped == 0


# --- rollups and pruning --------------------------------------------------------------------------

def test_rollups_per_model_and_task_with_sketched_percentiles(store: Store) -> None:
    latencies = [float(v) for v in range(10, 1010, 10)]  # 100 values
    records = [_record(i, latency=lat, ago=timedelta(hours=1)) for i, lat in enumerate(latencies)]
    records += [_record(200 + i, status="failure", latency=5.0, cost=0.0, ago=timedelta(hours=2))
                for i in range(4)]
    records.append(_record(300, latency=1.0, cache_hit=True))  # counted, excluded from latency
    records.append(_record(301, task=None, latency=2000.0, ago=timedelta(days=3)))  # 7d only
    records.append(_record(302, task=None, ago=timedelta(days=9)))  # outside both windows
    records.append(_record(303, model="deployment-a", group="smart", task="math", latency=50.0))
    write_records(store, records)

    day = read_window(store, since=NOW - timedelta(hours=24), task_latency=True)
    coding = day.by_model_task[("gpt-4o", "coding")]
    assert (coding.calls, coding.errors) == (105, 4)
    assert coding.error_rate == pytest.approx(4 / 105)
    expected = sorted(latencies)
    for q in (50, 95, 99):
        assert coding.latency_percentile(q) == pytest.approx(percentile(expected, q), rel=DOCUMENTED_RELATIVE_ERROR)
    assert coding.latency_samples == 100
    assert coding.mean_cost_per_call == pytest.approx((101 * 0.001) / 105)
    # The one cost definition: priced calls (a cost and tokens), failures at their cost of 0 included.
    assert coding.cost_per_1k_tokens == pytest.approx(1000 * (101 * 0.001) / (105 * 200))
    assert set(day.by_model_task) == {("gpt-4o", "coding"), ("smart", "math")}  # the model group names it
    assert {m: a.calls for m, a in day.by_model.items()} == {"gpt-4o": 105, "smart": 1}
    week = read_window(store, since=NOW - timedelta(hours=168)).by_model
    assert week["gpt-4o"].calls == 106 and week["gpt-4o"].latency_samples == 101
    with store.session() as session:
        count = session.execute(sa.select(sa.func.count()).select_from(TelemetryRollup)).scalar_one()
    # One row per (hour, model, task) that holds calls (4 hours, 5 of them), one per (hour, model),
    # and one per (day, model): gpt-4o and smart on the 26th, gpt-4o 3 and 9 days earlier.
    assert count == 5 + 5 + 4


def test_prune_deletes_old_events_in_bounded_batches(store: Store) -> None:
    write_records(store, [_record(i, ago=timedelta(days=40, minutes=i)) for i in range(25)])
    write_records(store, [_record(100 + i, ago=timedelta(days=1)) for i in range(5)])
    result = prune_events(store, older_than_days=30, now=NOW, batch_size=10)
    # Postgres drops the partition of their day (they all started on 2026-10-17) instead, and the
    # next day's, made ahead by the writer and empty.
    partitioned = store.dialect == "postgresql"
    assert (result.deleted, result.batches, result.partitions_dropped) == ((25, 0, 2) if partitioned else (25, 3, 0))
    with store.session() as session:
        left = session.execute(sa.select(TelemetryEvent.event_id)).scalars().all()  # type: ignore[call-overload]
    assert sorted(left) == [f"evt-{100 + i}" for i in range(5)]
    assert prune_events(store, older_than_days=30, now=NOW).deleted == 0


def test_cli_prune_uses_the_retention_setting(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(database_url)
    store.upgrade()
    now = datetime.now(UTC)
    try:
        write_records(store, [
            TelemetryRecord(event_id="old", model="m", status="success", started_at=now - timedelta(days=10)),
            TelemetryRecord(event_id="new", model="m", status="success", started_at=now - timedelta(days=1)),
        ])
        monkeypatch.setenv("RECSYS_TELEMETRY_RETENTION_DAYS", "5")
        result = runner.invoke(app, ["--database-url", database_url, "telemetry", "prune", "--json"])
        assert result.exit_code == 0, result.output
        assert '"deleted": 1' in result.stdout
        result = runner.invoke(app, ["--database-url", database_url, "telemetry", "prune", "--older-than", "0"])
        assert result.exit_code == 2
        with store.session() as session:
            left = session.execute(sa.select(TelemetryEvent.event_id)).scalars().all()  # type: ignore[call-overload]
        assert left == ["new"]
    finally:
        store.dispose()
