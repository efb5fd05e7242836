"""telemetry_event by UTC day on Postgres (migration 0005, store/partitions.py): dedupe of event ids,
partitions made before inserts, the DEFAULT partition, prune dropping days, the migration both ways."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from recommender_core.clock import FixedClock
from recommender_core.store import Store, partitions
from recommender_core.store.tables import TelemetryEvent, TelemetryRollup
from recommender_core.telemetry.events import TelemetryRecord, record_from_standard_logging
from recommender_core.telemetry.retention import prune_events
from recommender_core.telemetry.rollups import catch_up_rollups, read_window
from recommender_core.telemetry.spend_logs import record_from_spend_log
from recommender_core.telemetry.writer import write_records

from .test_store import _alembic

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
DAY = NOW.date()
pg_only = pytest.mark.postgres


def _record(event_id: str, started: datetime, latency: float = 100.0) -> TelemetryRecord:
    return TelemetryRecord(event_id=event_id, model="gpt-4o", status="success", started_at=started,
                           ended_at=started + timedelta(milliseconds=latency), latency_ms=latency, task="chat")


def _where(store: Store) -> dict[str, str]:
    """Event id -> the relation that holds it (the table itself on SQLite)."""
    with store.engine.connect() as conn:
        if store.dialect != "postgresql":
            events = conn.execute(sa.text("SELECT event_id FROM telemetry_event")).scalars()
            return {e: "telemetry_event" for e in events}
        return dict(conn.execute(sa.text("SELECT event_id, tableoid::regclass::text FROM telemetry_event")).all())


def _days(store: Store) -> set[date]:
    with store.engine.connect() as conn:
        return set(partitions.day_partitions(conn))


def _dirty(store: Store) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT hour FROM telemetry_rollup_dirty WHERE hour >= 0")).scalars())


def _hour(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


# --- dedupe -----------------------------------------------------------------------------------------

def test_an_event_written_twice_is_stored_once(store: Store) -> None:
    """A writer's retried batch resends the same records; a SpendLogs re-import maps the same row to the
    same record; and one attempt both called back (start exact to the microsecond) and imported from
    the proxy's spend logs (TIMESTAMP(3): rounded to the millisecond) is one event, on both backends,
    though Postgres's unique key is (event_id, started_at)."""
    batch = [_record(f"r-{i}", NOW - timedelta(minutes=i)) for i in range(5)]
    assert write_records(store, batch) == 5
    assert write_records(store, batch) == 0  # the writer's retry of a batch that had committed

    row = {"request_id": "chatcmpl-x", "model": "gpt-4o", "model_group": "smart",
           "startTime": datetime(2026, 11, 26, 11, 0, 0, 123000), "endTime": datetime(2026, 11, 26, 11, 0, 1),
           "spend": 0.001, "prompt_tokens": 10, "completion_tokens": 5, "status": "success"}
    imported = record_from_spend_log(row, now=NOW)
    assert write_records(store, [imported]) == 1
    assert write_records(store, [record_from_spend_log(row, now=NOW)]) == 0  # the import re-read it

    # The same attempt, as the callback logged it: the exact start the proxy stored rounded.
    exact = datetime(2026, 11, 26, 11, 0, 0, 123456, tzinfo=UTC).timestamp()
    called_back = record_from_standard_logging(
        {"id": "chatcmpl-x", "model": "gpt-4o", "model_group": "smart", "status": "success",
         "startTime": exact, "endTime": exact + 0.9, "response_cost": 0.001}, now=NOW)
    assert called_back.event_id == imported.event_id and called_back.started_at != imported.started_at
    assert write_records(store, [called_back]) == 0
    # And the other way round: the callback's event first, then the import.
    second = {**row, "request_id": "chatcmpl-y"}
    assert write_records(store, [record_from_standard_logging(
        {"id": "chatcmpl-y", "model": "gpt-4o", "status": "success", "startTime": exact, "endTime": exact + 1},
        now=NOW)]) == 1
    assert write_records(store, [record_from_spend_log(second, now=NOW)]) == 0

    ids = sorted(_where(store))
    assert ids == sorted([f"r-{i}" for i in range(5)] + ["chatcmpl-x", "chatcmpl-y"])


# --- partitions before inserts ------------------------------------------------------------------------

@pg_only
def test_an_insert_on_a_new_day_creates_its_partition_and_the_next(postgres_url: str) -> None:
    store = Store(postgres_url)
    store.upgrade()
    try:
        assert _days(store) == set()  # a new database: no day yet, only the DEFAULT partition
        assert write_records(store, [_record("a", NOW), _record("b", NOW - timedelta(days=3))]) == 2
        wanted = {DAY, DAY + timedelta(days=1), DAY - timedelta(days=3), DAY - timedelta(days=2)}
        assert _days(store) == wanted
        assert _where(store) == {"a": partitions.partition_name(DAY),
                                 "b": partitions.partition_name(DAY - timedelta(days=3))}
        # Known days cost no query: nothing is created, and the cache says so without asking.
        assert partitions.ensure_event_partitions(store, [NOW]) == set()
        # The rollup trigger (statement level, on the parent) saw the rows routed to the partitions.
        assert _dirty(store) == {_hour(NOW), _hour(NOW - timedelta(days=3))}
        assert read_window(store, since=NOW - timedelta(days=4)).by_model["gpt-4o"].calls == 2
    finally:
        store.dispose()


@pg_only
def test_copy_into_the_parent_is_routed_and_marks_its_hours(postgres_url: str) -> None:
    """A bulk COPY straight into telemetry_event (no ensure call): rows go to their day's partition or
    the DEFAULT one, and the statement-level trigger marks every hour, from every partition."""
    store = Store(postgres_url)
    store.upgrade()
    try:
        partitions.ensure_event_partitions(store, [NOW])
        other = NOW - timedelta(days=10)  # no partition: the DEFAULT one takes it
        with store.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy("COPY telemetry_event (event_id, origin, model, status, started_at, cache_hit, tags) "
                             "FROM STDIN") as copy:
                copy.write_row(("c-1", "callback", "m", "success", NOW, False, "[]"))
                copy.write_row(("c-2", "callback", "m", "success", other, False, "[]"))
        assert _where(store) == {"c-1": partitions.partition_name(DAY), "c-2": partitions.DEFAULT_PARTITION}
        assert _dirty(store) == {_hour(NOW), _hour(other)}
    finally:
        store.dispose()


@pg_only
def test_a_day_held_by_the_default_partition_still_takes_inserts(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Rows of a day that reached the DEFAULT partition block that day's partition (Postgres refuses to
    create it): the writer logs it, writes to the DEFAULT partition, and prune sweeps it in batches."""
    store = Store(postgres_url)
    store.upgrade()
    old = NOW - timedelta(days=20)
    try:
        with store.engine.begin() as conn:  # an insert path that made no partition
            conn.execute(sa.insert(TelemetryEvent.__table__), [  # type: ignore[attr-defined]
                _record("early", old).as_row()])
        assert _where(store) == {"early": partitions.DEFAULT_PARTITION}
        with caplog.at_level(logging.WARNING, logger="recsys.store"):
            assert write_records(store, [_record("late", old + timedelta(minutes=5)), _record("now", NOW)]) == 2
        assert "the DEFAULT partition holds rows of that day" in caplog.text
        assert old.date() not in _days(store) and old.date() + timedelta(days=1) in _days(store)
        assert _where(store) == {"early": partitions.DEFAULT_PARTITION, "late": partitions.DEFAULT_PARTITION,
                                 "now": partitions.partition_name(DAY)}
        assert write_records(store, [_record("late", old + timedelta(minutes=5))]) == 0  # dedupe in the default too
        result = prune_events(store, older_than_days=10, now=NOW, batch_size=1)
        # The empty partition of the day after `old` is dropped; the two rows in the DEFAULT one, batched.
        assert (result.deleted, result.batches, result.partitions_dropped) == (2, 2, 1)
        assert _where(store) == {"now": partitions.partition_name(DAY)}
    finally:
        store.dispose()


@pg_only
def test_a_partition_that_cannot_get_its_lock_in_time_leaves_the_insert_working(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session holds a lock on telemetry_event (a long read): creating a partition, which needs
    ACCESS EXCLUSIVE, gives up after the lock timeout and the rows go to the DEFAULT partition."""
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    store = Store(postgres_url)
    store.upgrade()
    reader = sa.create_engine(store.url)
    try:
        with reader.connect() as held:
            held.execute(sa.text("SELECT count(*) FROM telemetry_event"))  # its transaction keeps the lock
            assert write_records(store, [_record("blocked", NOW)]) == 1
            held.rollback()
        assert _where(store) == {"blocked": partitions.DEFAULT_PARTITION}
        # The day is tried again only after RETRY_AFTER (so a held lock does not stall every batch).
        assert partitions.ensure_event_partitions(store, [NOW]) == set()
        monkeypatch.setattr(partitions, "RETRY_AFTER", 0.0)
        partitions.forget_partitions(store)
        partitions._retry_at.clear()
        # Now the DEFAULT partition holds a row of that day: only the next day can be created.
        assert partitions.ensure_event_partitions(store, [NOW]) == {DAY + timedelta(days=1)}
    finally:
        reader.dispose()
        store.dispose()


@pg_only
def test_concurrent_writers_create_a_new_day_partition_once(postgres_url: str) -> None:
    """Six writers (own engines, so own sessions) write the first events of the same new day at once."""
    setup = Store(postgres_url)
    setup.upgrade()
    setup.dispose()
    stores = [Store(postgres_url) for _ in range(6)]
    start = threading.Barrier(len(stores))
    created: list[set[date]] = []
    errors: list[BaseException] = []

    def write(i: int, store: Store) -> None:
        try:
            start.wait()
            created.append(partitions.ensure_event_partitions(store, [NOW]))
            write_records(store, [_record(f"w-{i}-{k}", NOW - timedelta(seconds=k)) for k in range(50)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        made = [d for c in created for d in c]
        assert sorted(made) == [DAY, DAY + timedelta(days=1)]  # each made once, by one of them
        where = _where(stores[0])
        assert len(where) == 300 and set(where.values()) == {partitions.partition_name(DAY)}
    finally:
        for s in stores:
            s.dispose()


# --- prune --------------------------------------------------------------------------------------------

def test_prune_drops_whole_days_and_batches_the_rest(store: Store) -> None:
    """Events every 30 minutes over 6 days, retention 3 days (cutoff 12:30 three days ago): Postgres
    drops the partitions of the days wholly before the cutoff's day and batch-deletes its morning;
    SQLite deletes everything in batches. The rollups match the events left, on both."""
    starts = [NOW - timedelta(minutes=30 * k) for k in range(6 * 48)]
    records = [_record(f"p-{k}", s, latency=50.0 + k % 7) for k, s in enumerate(starts)]
    write_records(store, records)
    catch_up_rollups(store)
    cutoff = NOW - timedelta(days=3)
    result = prune_events(store, older_than_days=3, now=NOW, batch_size=10)
    gone = [r for r in records if r.started_at < cutoff]
    morning = [r for r in gone if r.started_at.date() == cutoff.date()]
    assert result.deleted == len(gone)
    if store.dialect == "postgresql":
        whole_days = {r.started_at.date() for r in gone} - {cutoff.date()}
        assert result.partitions_dropped == len(whole_days) == 3
        assert result.batches == -(-len(morning) // 10)
        assert not whole_days & _days(store) and cutoff.date() in _days(store)
    else:
        assert (result.partitions_dropped, result.batches) == (0, -(-len(gone) // 10))
    kept = [r for r in records if r.started_at >= cutoff]
    assert sorted(_where(store)) == sorted(r.event_id for r in kept)
    window = read_window(store, since=NOW - timedelta(days=7)).by_model["gpt-4o"]
    assert window.calls == len(kept)
    with store.session() as session:
        first = dict(session.execute(sa.select(TelemetryRollup.span_hours, sa.func.min(TelemetryRollup.hour_start))  # type: ignore[call-overload]
                                     .group_by(TelemetryRollup.span_hours)).all())
    assert first == {1: cutoff.replace(minute=0), 24: cutoff.replace(hour=0, minute=0)}
    again = prune_events(store, older_than_days=3, now=NOW)
    assert (again.deleted, again.partitions_dropped) == (0, 0)


# --- the migration ------------------------------------------------------------------------------------

def _insert_plain(store: Store, rows: Sequence[TelemetryRecord]) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.insert(TelemetryEvent.__table__), [r.as_row() for r in rows])  # type: ignore[attr-defined]


def _marks(store: Store) -> dict[int, int]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT hour, version FROM telemetry_rollup_dirty")).all())


def _kind(store: Store) -> str:
    with store.engine.connect() as conn:
        if store.dialect != "postgresql":
            return "r"
        return str(conn.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 'telemetry_event'")).scalar_one())


def test_migration_0005_partitions_the_stored_events_and_downgrades(database_url: str) -> None:
    """From 0004 with events on three days: the upgrade moves them into their day partitions keeping
    ids, the id sequence, the rollups and the trigger; the downgrade brings the plain table back with
    every row and UNIQUE (event_id); SQLite is untouched both ways."""
    s = Store(database_url)
    postgres = s.dialect == "postgresql"
    try:
        _alembic(s, "upgrade", "0004")
        old = [_record(f"m-{k}", NOW - timedelta(days=k % 3, minutes=k)) for k in range(9)]
        _insert_plain(s, old)
        marks = _marks(s)
        assert set(marks) == {_hour(r.started_at) for r in old}
        with s.engine.connect() as conn:
            ids = dict(conn.execute(sa.text("SELECT event_id, id FROM telemetry_event")).all())
        _alembic(s, "upgrade", "0005")
        assert s.current_revision() == "0005"
        assert _kind(s) == ("p" if postgres else "r")
        if postgres:
            assert _days(s) == {(NOW - timedelta(days=k)).date() for k in range(3)}
            assert {e: w for e, w in _where(s).items()} == {
                r.event_id: partitions.partition_name(r.started_at.date()) for r in old}
        assert _marks(s) == marks  # moving the rows marked no hour again
        s.upgrade()  # the later migrations, so the store reads and writes
        after = read_window(s, since=NOW - timedelta(days=4)).by_model["gpt-4o"]
        assert (after.calls, after.latency_samples) == (9, 9)
        with s.engine.connect() as conn:
            assert dict(conn.execute(sa.text("SELECT event_id, id FROM telemetry_event")).all()) == ids
        assert write_records(s, [_record("new-1", NOW)]) == 1 and write_records(s, [_record("new-1", NOW)]) == 0
        with s.engine.connect() as conn:
            new_id = conn.execute(sa.text("SELECT id FROM telemetry_event WHERE event_id = 'new-1'")).scalar_one()
        assert new_id > max(ids.values())  # the sequence moved with the table
        assert _dirty(s) == {_hour(NOW)}  # the trigger moved with the table

        _alembic(s, "downgrade", "0004")
        assert _kind(s) == "r"
        with s.engine.begin() as conn:
            assert sorted(conn.execute(sa.text("SELECT event_id FROM telemetry_event")).scalars()) == sorted(
                [*ids, "new-1"])
            if postgres:
                assert not conn.execute(sa.text(
                    "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND (relname LIKE 'telemetry\\_event\\_p%' "
                    "OR relname = 'telemetry_event_default')")).scalar_one()
        with pytest.raises(sa.exc.IntegrityError):  # UNIQUE (event_id) again
            _insert_plain(s, [_record("new-1", NOW - timedelta(hours=1))])
        _insert_plain(s, [_record("plain-1", NOW - timedelta(hours=2))])
        assert _hour(NOW - timedelta(hours=2)) in _dirty(s)  # and its trigger
        s.upgrade()
        assert s.current_revision() == s.head_revision() and len(_where(s)) == 11
    finally:
        partitions.forget_partitions(s)
        s.dispose()


@pg_only
def test_a_role_that_may_insert_but_not_create_tables_writes_to_the_default_partition(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A least-privilege writer role (INSERT, no CREATE on the schema, as Postgres 15 gives every role
    but the owner): its events go to the DEFAULT partition instead of failing the batch; prune, run
    by the owner, makes the days ahead, which the writer then uses."""
    import uuid

    import psycopg
    from psycopg import sql

    owner = Store(postgres_url, clock=FixedClock(NOW))
    owner.upgrade()
    role = f"recsys_w_{uuid.uuid4().hex[:8]}"
    dbname = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        ident = sql.Identifier(role)
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'w-pass'").format(ident))
        admin.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(dbname), ident))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        admin.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {}").format(ident))
        admin.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))
    writer = Store(f"postgresql://{role}:w-pass@{postgres_url.split('@', 1)[1]}")
    try:
        with caplog.at_level(logging.WARNING, logger="recsys.store"):
            assert write_records(writer, [_record("w-1", NOW)]) == 1
        assert "this role may not create tables" in caplog.text
        assert _where(owner) == {"w-1": partitions.DEFAULT_PARTITION}
        prune_events(owner, older_than_days=30)  # the owner's maintenance makes today's and tomorrow's
        tomorrow = NOW + timedelta(days=1)
        assert {DAY, tomorrow.date()} - _days(owner) == {DAY}  # today's is blocked by the row in DEFAULT
        partitions.forget_partitions(writer)
        assert write_records(writer, [_record("w-2", tomorrow)]) == 1
        assert _where(owner)["w-2"] == partitions.partition_name(tomorrow.date())
    finally:
        writer.dispose()
        owner.dispose()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _event_indexes(store: Store) -> set[str]:
    query = ("SELECT indexname FROM pg_indexes WHERE tablename = 'telemetry_event'" if store.dialect == "postgresql"
             else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'telemetry_event'")
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text(query)).scalars())


def test_migration_0006_drops_the_unused_group_index_and_downgrades(database_url: str) -> None:
    """No query selects events by model group since the rollups: the index goes (from every day
    partition on Postgres), writes and rollup reads work without it, and the downgrade builds it again."""
    s = Store(database_url)
    try:
        s.upgrade()
        assert "ix_telemetry_group_started" not in _event_indexes(s)
        assert "ix_telemetry_started_at" in _event_indexes(s)
        assert write_records(s, [_record("a", NOW), _record("b", NOW - timedelta(days=1))]) == 2
        _alembic(s, "downgrade", "0005")
        assert "ix_telemetry_group_started" in _event_indexes(s)
        if s.dialect == "postgresql":
            with s.engine.connect() as conn:  # and on each day partition, through the partitioned index
                assert conn.execute(sa.text(
                    "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'telemetry\\_event\\_p%' "
                    "AND indexdef LIKE '%(model_group, started_at)%'")).scalar_one() == len(_days(s))
        s.upgrade()
        assert "ix_telemetry_group_started" not in _event_indexes(s)
        assert read_window(s, since=NOW - timedelta(days=2)).by_model["gpt-4o"].calls == 2
    finally:
        partitions.forget_partitions(s)
        s.dispose()


def _scans(store: Store, table: str) -> tuple[int, int]:
    """(sequential scans, index scans) of ``table`` so far, as the statistics system counts them.

    Read on the store's one connection, the session that ran the scans: a session publishes its
    counts when it goes idle after ``pg_stat_force_next_flush()``, before it runs the next query."""
    with store.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        conn.commit()
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        seq, idx = conn.execute(sa.text(
            "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = :t"),
            {"t": table}).one()
    return int(seq), int(idx)


@pg_only
def test_a_writer_connection_keeps_probing_the_index_as_its_day_fills(postgres_url: str) -> None:
    """One connection writes every batch (the writer process's case). psycopg prepares a statement
    after five runs, and a generic plan made while the day's partition was empty scanned the whole
    partition for the event id dedupe on every later batch, so inserts slowed as the day filled
    (22,000 to 2,000 events/s within 400,000 events). Each batch must keep probing the unique index:
    the partition's sequential scans stay where they were while its index scans grow."""
    store = Store(postgres_url, engine=None)
    store.upgrade()
    pool = sa.create_engine(store.engine.url, pool_size=1, max_overflow=0)  # one connection, like the child
    writer = Store(postgres_url, engine=pool)
    try:
        start = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
        for batch in range(8):  # the first batches meet an empty partition, past psycopg's prepare threshold
            assert write_records(writer, [_record(f"e-{batch}-{i}", start + timedelta(seconds=batch * 10 + i))
                                          for i in range(10)], durable=False) == 10
        day = partitions.partition_name(DAY)
        with writer.connect() as conn:  # fill the day on the same connection, as traffic does
            conn.execute(sa.text(
                "INSERT INTO telemetry_event (event_id, model, status, started_at, origin, cache_hit, tags) "
                "SELECT 'bulk-' || g, 'gpt-4o', 'success', :start + make_interval(secs => g), 'callback', false, "
                "'[]' FROM generate_series(1, 30000) AS g"), {"start": start + timedelta(hours=1)})
        seq_before, idx_before = _scans(writer, day)
        for batch in range(3):
            assert write_records(writer, [_record(f"late-{batch}-{i}", NOW + timedelta(seconds=i))
                                          for i in range(10)], durable=False) == 10
        seq_after, idx_after = _scans(writer, day)
        assert seq_after == seq_before, "a batch scanned the whole day partition to dedupe its event ids"
        assert idx_after > idx_before
    finally:
        partitions.forget_partitions(writer)
        writer.dispose()
        store.dispose()
