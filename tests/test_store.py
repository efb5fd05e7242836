"""The store on both backends: migrations, every table round-trips, locks, run bookkeeping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, col, select

from recommender_core.errors import LockHeldError, StoreSchemaError
from recommender_core.store import Store
from recommender_core.store.runs import (
    current_ingest_run,
    finish_ingest_run,
    ingest_job,
    list_runs,
    start_ingest_run,
)
from recommender_core.store.tables import (
    BenchmarkEvidence,
    IngestRun,
    RunStatus,
    ScoringRun,
    SourceState,
    TelemetryEvent,
    TelemetryRollup,
    UtilityScore,
)

NOW = datetime(2026, 11, 26, 3, 0, 0, 123456, tzinfo=UTC)


def test_migrations_upgrade_from_empty_and_are_idempotent(database_url: str) -> None:
    s = Store(database_url)
    first = s.upgrade()
    assert first.from_revision is None
    assert first.to_revision == s.head_revision()
    again = s.upgrade()
    assert again.from_revision == again.to_revision == s.head_revision()
    assert not again.changed
    tables = set(sa.inspect(s.engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    s.dispose()


def test_migrations_match_the_models(store: Store) -> None:
    """A column added to a table without a migration fails here, on both backends (the day partitions
    of telemetry_event are not tables of the schema; each backend has its own unique key on it)."""
    from recommender_core.store.partitions import include_in_comparison

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": False, "include_object": include_in_comparison(conn.dialect.name)})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_explicit_database_without_schema_asks_for_upgrade(database_url: str) -> None:
    s = Store(database_url)
    with pytest.raises(StoreSchemaError, match=r"has no recsys schema\. Run 'recsys db upgrade'"):
        with s.session():
            pass
    s.dispose()


def test_embedded_default_migrates_on_first_use(tmp_path: object) -> None:
    s = Store(f"sqlite:///{tmp_path}/nested/dir/recsys.db", auto_migrate=True, create_folder=True)
    with s.session() as session:
        assert session.exec(select(IngestRun)).all() == []
    assert s.current_revision() == s.head_revision()
    s.dispose()


def test_every_table_round_trips(store: Store) -> None:
    with store.session() as session:
        run = IngestRun(source="lmsys", status=RunStatus.SUCCESS, started_at=NOW, finished_at=NOW,
                        source_version="abc123", rows_accepted=2, rows_rejected=1,
                        details={"rejected": {"no name": 1}}, error=None)
        session.add(run)
        session.flush()
        assert run.id is not None
        session.add(BenchmarkEvidence(
            run_id=run.id, source="lmsys", model="gpt-4o-2024-08-06", category="text/coding",
            metric="rating", value=1287.123456789012, lower=1280.5, upper=1293.75, samples=123456789012,
            rank=3, source_version="abc123", published_on=date(2026, 11, 20), organization="OpenAI",
            extra={"variance": 4.2}))
        session.add(BenchmarkEvidence(
            run_id=run.id, source="mteb", model="BAAI/bge-base-en-v1.5", category="NFCorpus",
            task_type="Retrieval", metric="ndcg_at_10", value=0.37, revision="a5beb1e", split="test",
            subset_count=1))
        session.add(SourceState(source="mteb", key="tree:BAAI__bge-base-en-v1.5", value="deadbeef",
                                updated_at=NOW))
        session.add(TelemetryEvent(
            event_id="chatcmpl-1", trace_id="t-1", model_group="gpt-4o", model="gpt-4o-2024-08-06",
            provider="openai", task="coding", status="failure", error_class="RateLimitError",
            started_at=NOW, ended_at=NOW + timedelta(milliseconds=850), latency_ms=850.0, ttft_ms=120.5,
            prompt_tokens=100, completion_tokens=20, cost=0.00045, cache_hit=True, tags=["task:coding"]))
        session.add(TelemetryRollup(hour_start=NOW, computed_at=NOW, model="gpt-4o", task="coding", calls=10,
                                    errors=1, priced_calls=9, priced_cost=0.009, priced_tokens=2_250_000_000,
                                    latency_samples=2, latency_sketch={"310": 1, "z": 1}))
        scoring = ScoringRun(status=RunStatus.SUCCESS, started_at=NOW, finished_at=NOW, policy_hash="f" * 64,
                             is_current=True, details={"tasks": 1})
        session.add(scoring)
        session.flush()
        assert scoring.id is not None
        session.add(UtilityScore(run_id=scoring.id, task="coding", model="gpt-4o", utility=0.81, quality=0.9,
                                 cost=0.7, latency=0.6, reliability=0.99, cost_per_1k_tokens=0.004,
                                 latency_p95_ms=900, success_rate=0.998, evidence=["lmsys:text/coding"],
                                 details={"quality_method": "elo"}))
        session.add(UtilityScore(run_id=scoring.id, task="coding", model="gpt-4o-mini", excluded=True,
                                 reason="no evidence for lmsys:text/coding"))

    with store.session() as session:
        got_run = session.exec(select(IngestRun)).one()
        assert got_run.started_at == NOW and got_run.started_at.tzinfo is not None
        assert got_run.details == {"rejected": {"no name": 1}}
        arena = session.exec(select(BenchmarkEvidence).where(col(BenchmarkEvidence.source) == "lmsys")).one()
        assert arena.value == 1287.123456789012  # full precision
        assert (arena.lower, arena.upper, arena.samples) == (1280.5, 1293.75, 123456789012)
        assert arena.published_on == date(2026, 11, 20) and arena.extra == {"variance": 4.2}
        mteb = session.exec(select(BenchmarkEvidence).where(col(BenchmarkEvidence.source) == "mteb")).one()
        assert (mteb.task_type, mteb.revision, mteb.split, mteb.lower) == ("Retrieval", "a5beb1e", "test", None)
        assert session.exec(select(SourceState)).one().value == "deadbeef"
        event = session.exec(select(TelemetryEvent)).one()
        assert event.ended_at == NOW + timedelta(milliseconds=850)
        assert (event.error_class, event.cache_hit, event.tags, event.ttft_ms) == (
            "RateLimitError", True, ["task:coding"], 120.5)
        rollup = session.exec(select(TelemetryRollup)).one()
        assert (rollup.priced_tokens, rollup.latency_sketch) == (2_250_000_000, {"310": 1, "z": 1})
        assert session.exec(select(ScoringRun)).one().is_current is True
        scores = {u.model: u for u in session.exec(select(UtilityScore))}
        assert scores["gpt-4o"].evidence == ["lmsys:text/coding"]
        assert scores["gpt-4o-mini"].excluded and scores["gpt-4o-mini"].utility is None


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(TypeError, match="naive"):
        with store.session() as session:
            session.add(IngestRun(source="x", status="running", started_at=datetime(2026, 1, 1)))
            session.flush()


def test_second_run_of_same_job_gets_lock_error_with_exit_75(store: Store) -> None:
    with store.job_lock("ingest-lmsys"):
        with pytest.raises(LockHeldError) as info:
            with store.job_lock("ingest-lmsys"):
                pass
        assert info.value.exit_code == 75
        # Different jobs do not block each other.
        with store.job_lock("ingest-mteb"):
            pass
    with store.job_lock("ingest-lmsys"):  # released
        pass


def test_lock_is_held_across_stores_of_the_same_database(database_url: str) -> None:
    a, b = Store(database_url), Store(database_url)
    a.upgrade()
    with a.job_lock("score"):
        with pytest.raises(LockHeldError):
            with b.job_lock("score"):
                pass
    a.dispose()
    b.dispose()


def test_ingest_job_records_success_failure_and_abandoned_runs(store: Store) -> None:
    dead = start_ingest_run(store, "lmsys")  # a process that died mid-run

    with ingest_job(store, job="ingest-lmsys", source="lmsys") as handle:
        handle.source_version = "sha1"
        handle.rows_accepted = 5
    with pytest.raises(RuntimeError, match="boom"):
        with ingest_job(store, job="ingest-lmsys", source="lmsys") as handle:
            raise RuntimeError("boom")

    runs = {r.id: r for r in list_runs(store, source="lmsys")}
    assert runs[dead].status == RunStatus.ABANDONED
    statuses = [r.status for r in sorted(runs.values(), key=lambda r: r.id)]
    assert statuses == [RunStatus.ABANDONED, RunStatus.SUCCESS, RunStatus.FAILED]
    failed = max(runs.values(), key=lambda r: r.id)
    assert failed.error == "RuntimeError: boom"
    current = current_ingest_run(store, "lmsys")
    assert current is not None and current.source_version == "sha1" and current.rows_accepted == 5


def test_finish_inside_the_data_transaction(store: Store) -> None:
    with ingest_job(store, job="ingest-mteb", source="mteb") as handle:
        with store.session() as session:
            session.add(BenchmarkEvidence(run_id=handle.run_id, source="mteb", model="m", category="T", value=0.5))
            handle.rows_accepted = 1
            finish_ingest_run(session, handle, now=store.clock.now())
    current = current_ingest_run(store, "mteb")
    assert current is not None and current.rows_accepted == 1 and current.status == RunStatus.SUCCESS


def test_runs_are_pruned_to_keep_but_never_the_current_one(store: Store) -> None:
    with ingest_job(store, job="ingest-lmsys", source="lmsys", keep_runs=2) as handle:
        handle.source_version = "good"
    good = current_ingest_run(store, "lmsys")
    assert good is not None
    with store.session() as session:
        session.add(BenchmarkEvidence(run_id=good.id, source="lmsys", model="m", category="text/overall",
                                      value=1200.0))
    for _ in range(3):
        with pytest.raises(ValueError, match="bad"):
            with ingest_job(store, job="ingest-lmsys", source="lmsys", keep_runs=2):
                raise ValueError("bad")
    with ingest_job(store, job="ingest-lmsys", source="lmsys", keep_runs=2) as handle:
        handle.status = RunStatus.UNCHANGED
    runs = list_runs(store, source="lmsys")
    assert len(runs) == 3  # the 2 newest plus the current successful one
    assert good.id in {r.id for r in runs}
    with store.session() as session:
        assert len(session.exec(select(BenchmarkEvidence)).all()) == 1


def test_ping_and_unreachable_database() -> None:
    from recommender_core.errors import StoreUnavailableError

    s = Store("postgresql://recsys:hunter2@127.0.0.1:1/nowhere")
    with pytest.raises(StoreUnavailableError) as info:
        s.ping()
    assert "hunter2" not in str(info.value)
    assert "postgresql+psycopg://recsys:***@127.0.0.1:1/nowhere" not in str(info.value)
    assert "postgresql://recsys:***@127.0.0.1:1/nowhere" in str(info.value)


def test_a_running_scoring_run_whose_lock_is_free_shows_abandoned(database_url: str) -> None:
    """A ``running`` scoring run left by a dead process shows as abandoned (process gone) while the
    ``score`` lock is free, and as running while a live holder (here another Store) has the lock."""
    from recommender_core.store.runs import ABANDONED_ERROR

    store, holder = Store(database_url), Store(database_url)
    store.upgrade()
    try:
        with store.session() as session:
            run = ScoringRun(status=RunStatus.RUNNING, started_at=NOW, policy_hash="p")
            session.add(run)
            session.flush()
            run_id = run.id
        [shown] = list_runs(store, source="score")
        assert (shown.id, shown.status, shown.error) == (run_id, RunStatus.ABANDONED, ABANDONED_ERROR)
        with holder.job_lock("score"):
            [shown] = list_runs(store, source="score")
            assert (shown.status, shown.error) == (RunStatus.RUNNING, None)
        with store.session() as session:  # shown, never written by a read
            assert session.get(ScoringRun, run_id).status == RunStatus.RUNNING
    finally:
        holder.dispose()
        store.dispose()


def _alembic(store: Store, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from recommender_core.store.engine import MIGRATIONS_DIR

    with store.engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def test_migration_0002_adds_task_source_and_keeps_stored_events(database_url: str) -> None:
    """From the previous head (0001) with events stored: the upgrade keeps them (no rule recorded),
    new events carry their rule, and the downgrade drops only the column."""
    from recommender_core.telemetry.events import TelemetryRecord
    from recommender_core.telemetry.writer import write_records

    s = Store(database_url)
    try:
        _alembic(s, "upgrade", "0001")
        assert s.current_revision() == "0001"
        with s.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO telemetry_event (event_id, origin, model, task, status, started_at, cache_hit, tags) "
                "VALUES ('old-1', 'callback', 'gpt-4o', 'coding', 'success', :t, false, '[]')"), {"t": NOW})
        result = s.upgrade()
        assert (result.from_revision, result.to_revision) == ("0001", s.head_revision()) and result.changed
        write_records(s, [TelemetryRecord(event_id="new-1", model="gpt-4o", status="success", started_at=NOW,
                                          task="math", task_source="spend_logs_metadata")])
        with s.session() as session:
            rows = {e.event_id: (e.task, e.task_source) for e in session.exec(select(TelemetryEvent)).all()}
        assert rows == {"old-1": ("coding", None), "new-1": ("math", "spend_logs_metadata")}

        _alembic(s, "downgrade", "0001")
        with s.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("telemetry_event")}
            kept = conn.execute(sa.text("SELECT event_id FROM telemetry_event ORDER BY event_id")).scalars().all()
        assert "task_source" not in columns and kept == ["new-1", "old-1"]
    finally:
        s.dispose()


def test_migration_0003_drops_the_unused_model_tables_and_keeps_the_rest(database_url: str) -> None:
    """From the previous head (0002) with evidence stored: the upgrade drops model and model_alias only,
    the evidence stays, and the downgrade brings the two (empty) tables back."""
    s = Store(database_url)
    try:
        _alembic(s, "upgrade", "0002")
        assert s.current_revision() == "0002"
        with s.engine.begin() as conn:
            assert {"model", "model_alias"} <= set(sa.inspect(conn).get_table_names())
            conn.execute(sa.text(
                "INSERT INTO ingest_run (source, status, started_at, rows_accepted, rows_rejected, details) "
                "VALUES ('lmsys', 'success', :t, 1, 0, '{}')"), {"t": NOW})
            run_id = conn.execute(sa.text("SELECT max(id) FROM ingest_run")).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO benchmark_evidence (run_id, source, model, category, metric, value, extra) "
                "VALUES (:r, 'lmsys', 'gpt-4o', 'text/coding', 'rating', 1287.5, '{}')"), {"r": run_id})
        result = s.upgrade()
        assert (result.from_revision, result.to_revision) == ("0002", s.head_revision())
        with s.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            values = conn.execute(sa.text("SELECT value FROM benchmark_evidence")).scalars().all()
        assert not tables & {"model", "model_alias"} and {"benchmark_evidence", "telemetry_rollup"} <= tables
        assert values == [1287.5]
        _alembic(s, "downgrade", "0002")
        with s.engine.connect() as conn:
            assert {"model", "model_alias"} <= set(sa.inspect(conn).get_table_names())
        s.upgrade()
        assert s.current_revision() == s.head_revision()
    finally:
        s.dispose()


def test_evidence_written_in_chunks_reads_back_whole_on_both_backends(store: Store) -> None:
    """More records than one SQLite executemany chunk: every row, its date and its JSON arrive intact,
    in one transaction (the SQLite path streams bounded chunks of tuples instead of one list of dicts)."""
    from recommender_core.sources.base import EvidenceRecord
    from recommender_core.store import bulk
    from recommender_core.store.tables import BenchmarkEvidence

    from .scoring_data import add_ingest_run

    count = bulk._SQLITE_CHUNK * 2 + 7
    # Extras shared by many rows (encoded once each) among extras of one row each (more of them than
    # the encoder keeps at once), interleaved.
    shared = [{"license": f"licence {n}"} for n in range(5)]
    records = [EvidenceRecord(model=f"m{i}", category=f"task{i % 13}", value=i / 3, metric="main_score",
                              published_on=date(2025, 1 + i % 12, 1 + i % 28) if i % 5 else None,
                              extra=({"splits": ["test", "dev"], "i": i} if i % 2 else {}) if i % 3
                              else shared[i % 5])
               for i in range(count)]
    run_id = add_ingest_run(store, "mteb", version="chunks")
    with store.session() as session:
        assert bulk.insert_evidence(session, run_id=run_id, source="mteb", source_version="chunks",
                                    records=records) == count
    table = BenchmarkEvidence.__table__  # type: ignore[attr-defined]
    with store.session() as session:
        rows = session.execute(sa.select(table.c.model, table.c.value, table.c.published_on, table.c.extra)
                               .where(table.c.run_id == run_id)).all()
    got = {r.model: (r.value, r.published_on, r.extra) for r in rows}
    assert len(rows) == count
    assert got == {r.model: (r.value, r.published_on, dict(r.extra)) for r in records}
