"""Fault injection: the database dying, refusing writes or filling up; upstream answering badly; two
runs at once. Every fault asserts the exit code and the one-line message the CLI prints, that the
previous good evidence (or scores) is intact, and that the failed run is recorded where the store can
still record it. docs/reliability.md lists every fault and the test that proves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
import typer
from psycopg import sql
from recsys_cli._base import handle_errors
from sqlmodel import Session, col, select

from recommender_core.config import Settings
from recommender_core.policy import load_policy
from recommender_core.scoring.run import run_scoring
from recommender_core.sources.base import IngestOptions
from recommender_core.sources.http import HttpSettings
from recommender_core.sources.lmsys import LmsysSource
from recommender_core.sources.lmsys import constants as C
from recommender_core.store import Store
from recommender_core.store.locks import advisory_key
from recommender_core.store.runs import current_ingest_run, list_runs
from recommender_core.store.tables import BenchmarkEvidence, IngestRun, RunStatus, ScoringRun, UtilityScore

from .conftest import REPO_ROOT
from .lmsys_data import board_rows, parquet_bytes

SAMPLE = REPO_ROOT / "sample_mirror" / "lmsys"
MTEB_SAMPLE = REPO_ROOT / "sample_mirror" / "mteb"
MIRROR = "https://hub.mirror.internal"
NEW_SHA = "f" * 40
RECSYS = str(Path(sys.executable).with_name("recsys"))


# --- helpers --------------------------------------------------------------------------------------

def as_cli(call: Callable[[], Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``call`` through the CLI's one error handler: (exit code, what it printed on stderr)."""
    capsys.readouterr()
    try:
        handle_errors(call)()
    except typer.Exit as exc:
        return exc.exit_code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def one_line(stderr: str, prefix: str) -> str:
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert stderr.startswith(prefix), stderr
    assert "Traceback" not in stderr
    return stderr


def lmsys(**kwargs: Any) -> LmsysSource:
    kwargs.setdefault("http_settings", HttpSettings(max_attempts=2, backoff_base=0.0))
    kwargs.setdefault("sleep", lambda seconds: None)
    return LmsysSource(settings=Settings.load(), policy=load_policy(), **kwargs)


def ingest(store: Store, mirror: str, *, force: bool = False, **kwargs: Any) -> Any:
    source = lmsys(**kwargs)
    try:
        return source.run(store, IngestOptions(mirror=mirror, force=force))
    finally:
        source.close()


def evidence(store: Store) -> list[tuple[Any, ...]]:
    with store.session() as session:
        rows = session.exec(select(BenchmarkEvidence.run_id, BenchmarkEvidence.model, BenchmarkEvidence.category,
                                   BenchmarkEvidence.value).order_by(col(BenchmarkEvidence.id))).all()
        return [tuple(r) for r in rows]


def good_store(store: Store) -> list[tuple[Any, ...]]:
    """The store after one good ingest of the sample mirror: the data every fault must leave intact."""
    assert ingest(store, str(SAMPLE)).status == RunStatus.SUCCESS
    before = evidence(store)
    assert len(before) == 78
    return before


def hub(fault: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """A Hub-compatible mirror whose dataset API answers a new sha and whose parquet download is ``fault``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/datasets/" + C.DATASET_ID):
            return httpx.Response(200, json={"id": C.DATASET_ID, "sha": NEW_SHA})
        return fault(request)

    return httpx.MockTransport(handler)


def pg_admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True)


def terminate(url: str, pid: int) -> None:
    """Kill one backend from a second connection, the way an operator or a failover would."""
    with pg_admin(url) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        # pg_terminate_backend only signals the backend; its locks go when the process has exited.
        # Wait for that, so the test sees a dead session rather than racing a dying one.
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} still alive 10 s after pg_terminate_backend"
            time.sleep(0.01)


# --- upstream faults, through the CLI's handler ---------------------------------------------------

def _reset(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)


def _schema_changed(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=parquet_bytes(board_rows(), rename={"rating": "elo"}))


def _all_nan(request: httpx.Request) -> httpx.Response:
    rows = board_rows()
    for row in rows[:10]:
        row["rating"] = float("nan")
    for row in rows[10:20]:
        row["rating"] = float("inf")
    return httpx.Response(200, content=parquet_bytes(rows))


def _absurd(request: httpx.Request) -> httpx.Response:
    rows = board_rows()
    for row in rows[:10]:
        row.update(rating=1e9, rating_upper=2e9)
    for row in rows[10:20]:
        row["vote_count"] = -5
    return httpx.Response(200, content=parquet_bytes(rows))


def _duplicates(request: httpx.Request) -> httpx.Response:
    rows = board_rows()
    return httpx.Response(200, content=parquet_bytes(rows + rows[:20]))


UPSTREAM_FAULTS: dict[str, tuple[Callable[[httpx.Request], httpx.Response], str, str]] = {
    # name: (the parquet download's answer, the error class, a fragment of the one-line message)
    "http_500": (lambda r: httpx.Response(500, text="Internal Server Error"), "SourceHTTPError",
                 "answered HTTP 500; run again later."),
    "http_429_retry_after": (lambda r: httpx.Response(429, headers={"Retry-After": "7200"}), "SourceHTTPError",
                             "is rate limited for 7200 s (HTTP 429); run again later or set a token"),
    "connection_reset": (_reset, "SourceError", "dropped the connection while answering"),
    "truncated_body": (lambda r: httpx.Response(200, headers={"Content-Length": "5000"}, content=b"PAR1 cut"),
                       "SourceError", "was truncated (8 of 5000 bytes); run again."),
    "html_not_parquet": (lambda r: httpx.Response(200, headers={"Content-Type": "text/html"},
                                                  text="<!DOCTYPE html><html>Sign in</html>"),
                         "SourceSchemaError", "is an HTML page, not a parquet file; nothing was written."),
    "empty_file": (lambda r: httpx.Response(200, content=b""), "SourceSchemaError",
                   "is empty (0 bytes), not a parquet file; nothing was written."),
    "changed_schema": (_schema_changed, "SourceSchemaError", "lacks the column(s) rating or score (found: model_name"),
    "nan_and_inf": (_all_nan, "SourceSchemaError",
                    "20 of 78 rows were rejected (rating is not finite: 20), more than 5%; "
                    "nothing was written and the previous evidence stays current."),
    "absurd_values": (_absurd, "SourceSchemaError", "(rating is out of range: 10, vote count is out of range: 10)"),
    "duplicate_rows": (_duplicates, "SourceSchemaError", "20 of 98 rows were rejected (duplicate row: 20)"),
}


@pytest.mark.parametrize("fault", sorted(UPSTREAM_FAULTS))
def test_upstream_fault_fails_the_run_and_keeps_the_previous_evidence(
        fault: str, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    answer, error, fragment = UPSTREAM_FAULTS[fault]
    before = good_store(store)
    code, stderr = as_cli(lambda: ingest(store, MIRROR, transport=hub(answer)), capsys)
    assert code == 1
    one_line(stderr, f"{error}: lmsys: ")
    assert fragment in stderr
    assert evidence(store) == before
    failed = list_runs(store, source="lmsys")[0]
    assert failed.status == RunStatus.FAILED and failed.source_version == NEW_SHA
    assert failed.error and failed.error.split(": ", 1)[0] in stderr  # the same reason is recorded


class _SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.endswith("/api/datasets/" + C.DATASET_ID):
            body = json.dumps({"id": C.DATASET_ID, "sha": NEW_SHA}).encode()
        else:
            time.sleep(3.0)  # past the client's read timeout
            body = b"PAR1"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_slow_upstream_past_the_timeout_fails_the_run(slow_server: str, store: Store,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = good_store(store)
    settings = HttpSettings(read_timeout=0.3, connect_timeout=1.0, max_attempts=1)
    started = time.monotonic()
    code, stderr = as_cli(lambda: ingest(store, slow_server, http_settings=settings), capsys)
    assert time.monotonic() - started < 2.5  # gave up at the timeout, did not wait for the body
    assert code == 1
    one_line(stderr, "SourceTimeout: lmsys: http://127.0.0.1:")
    assert "timed out" in stderr
    assert evidence(store) == before
    assert list_runs(store, source="lmsys")[0].status == RunStatus.FAILED


# --- the database failing under a running job ----------------------------------------------------

class _KillingSource(LmsysSource):
    """Kills its own write connection from a second connection, inside the evidence write transaction
    (after the COPY, before the commit): the moment a lost database hurts most."""

    admin_url: str = ""
    killed: int | None = None

    def save_state(self, session: Session, *, now: datetime) -> None:
        raw = session.connection().connection.dbapi_connection
        assert raw is not None
        pid = raw.info.backend_pid  # type: ignore[attr-defined]
        terminate(self.admin_url, pid)
        self.killed = pid


@pytest.mark.postgres
def test_connection_killed_mid_ingest(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(postgres_url)
    store.upgrade()
    try:
        before = good_store(store)
        source = _KillingSource(settings=Settings.load(), policy=load_policy())
        source.admin_url = postgres_url
        code, stderr = as_cli(lambda: source.run(store, IngestOptions(mirror=str(SAMPLE), force=True)), capsys)
        source.close()
        assert source.killed is not None
        assert code == 1
        one_line(stderr, "StoreUnavailableError: Cannot reach the database at postgresql://")
        assert stderr.rstrip().endswith("Check that it is running and the URL is right.")
        assert evidence(store) == before  # the half-written COPY was rolled back with the connection
        runs = list_runs(store, source="lmsys")
        assert [r.status for r in runs] == [RunStatus.FAILED, RunStatus.SUCCESS]
        assert "Cannot reach the database" in (runs[0].error or "")
        # and the job is not wedged: the next run takes the lock and succeeds
        assert ingest(store, str(SAMPLE)).status in (RunStatus.SUCCESS, RunStatus.UNCHANGED)
    finally:
        store.dispose()


@pytest.mark.postgres
def test_every_connection_killed_during_the_download(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Postgres restarts while the job downloads: every session dies, the job lock's included, so
    the run no longer holds its lock. It must not commit: it fails with one line, writes nothing,
    is recorded failed, and leaves the job free for the next run, which succeeds."""
    store = Store(postgres_url)
    store.upgrade()
    dbname = postgres_url.rsplit("/", 1)[1]
    killed: list[int] = []

    def fault(request: httpx.Request) -> httpx.Response:
        with pg_admin(postgres_url) as admin:
            pids = [r[0] for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))]
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        killed.extend(pids)
        return httpx.Response(200, content=parquet_bytes(board_rows()))

    try:
        before = good_store(store)
        code, stderr = as_cli(lambda: ingest(store, MIRROR, transport=hub(fault)), capsys)
        assert killed  # the lock's session at least
        assert code == 1
        one_line(stderr, "LockLostError: The 'ingest-lmsys' run lost its job lock before committing (the "
                         "database session ")
        assert stderr.endswith("that held it ended); it wrote nothing. Run the job again.\n")
        assert evidence(store) == before
        runs = list_runs(store, source="lmsys")
        assert [r.status for r in runs] == [RunStatus.FAILED, RunStatus.SUCCESS]
        assert (runs[0].error or "").startswith("The 'ingest-lmsys' run lost its job lock")
        with store.job_lock("ingest-lmsys"):  # not left locked
            pass
        assert ingest(store, MIRROR, transport=hub(lambda r: httpx.Response(
            200, content=parquet_bytes(board_rows())))).status == RunStatus.SUCCESS
    finally:
        store.dispose()


def _score_store(url: str) -> Store:
    store = Store(url)
    store.upgrade()
    assert ingest(store, str(SAMPLE)).status == RunStatus.SUCCESS
    return store


def _scores(store: Store) -> tuple[int | None, list[tuple[Any, ...]]]:
    with store.session() as session:
        current = session.exec(select(ScoringRun.id).where(col(ScoringRun.is_current).is_(True))).first()
        rows = session.exec(select(UtilityScore.run_id, UtilityScore.task, UtilityScore.model,
                                   UtilityScore.utility).order_by(col(UtilityScore.id))).all()
        return current, [tuple(r) for r in rows]


def _scoring_runs(store: Store) -> list[tuple[str, str | None]]:
    """(status, error) of every scoring run, oldest first."""
    with store.session() as session:
        rows = session.exec(select(ScoringRun.status, ScoringRun.error).order_by(col(ScoringRun.id))).all()
    return [(status, error) for status, error in rows]


def _score_fails_and_keeps_the_previous_run(store: Store, capsys: pytest.CaptureFixture[str],
                                            before: tuple[int | None, list[tuple[Any, ...]]], line: str, *,
                                            recorded: str) -> None:
    """``score`` (with its fault armed) exits 1 with one line starting ``line``; the previous run stays
    current with all its rows (no partial table) and the new run is recorded failed, saying ``recorded``."""
    code, stderr = as_cli(lambda: run_scoring(store, load_policy()), capsys)
    assert code == 1
    one_line(stderr, line)
    assert _scores(store) == before
    runs = _scoring_runs(store)
    assert [status for status, _ in runs] == [RunStatus.SUCCESS, RunStatus.FAILED]
    assert recorded in (runs[1][1] or "")


def _before_first(store: Store, prefix: str, action: Callable[[Any], None]) -> None:
    """Call ``action(dbapi_cursor)`` just before the driver runs the first statement starting with ``prefix``."""
    fired: list[bool] = []

    def hook(cursor: Any, statement: str, *args: Any) -> bool:
        if not fired and " ".join(statement.split()).upper().startswith(prefix.upper()):
            fired.append(True)
            action(cursor)
        return False  # let the dialect run the statement as usual

    sa.event.listen(store.engine, "do_execute", hook)
    sa.event.listen(store.engine, "do_executemany", hook)


def _on_utility_insert(store: Store, action: Callable[[Any], None]) -> None:
    """``action`` at the write of a scoring run's rows. On Postgres the rows go in by COPY on the
    driver's cursor, which SQLAlchemy does not see: the fault fires at the next statement of the same
    transaction (making the run current), after the rows went in and before the commit."""
    _before_first(store, "INSERT INTO utility_score" if store.dialect == "sqlite"
                  else "UPDATE scoring_run SET is_current", action)


@pytest.mark.postgres
def test_connection_killed_mid_score(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = _score_store(postgres_url)
    try:
        policy = load_policy()
        first = run_scoring(store, policy)
        before = _scores(store)
        assert before[0] == first.run_id and before[1]
        _on_utility_insert(store, lambda cursor: terminate(postgres_url, cursor.connection.info.backend_pid))
        _score_fails_and_keeps_the_previous_run(
            store, capsys, before, "StoreUnavailableError: Cannot reach the database at postgresql://",
            recorded="Cannot reach the database")
    finally:
        store.dispose()


@pytest.mark.postgres
def test_score_that_lost_its_lock_stores_nothing(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The score job's lock session is killed (real ``pg_terminate_backend``) just before the run
    claims its commit: the new table is not stored, the previous run stays current."""
    store = _score_store(postgres_url)
    try:
        policy = load_policy()
        run_scoring(store, policy)
        before = _scores(store)
        _before_first(store, "UPDATE scoring_run SET status=%(status)s::VARCHAR WHERE scoring_run.id",
                      lambda cursor: terminate(postgres_url, lock_holders(postgres_url, "score")[0]))
        _score_fails_and_keeps_the_previous_run(
            store, capsys, before,
            "LockLostError: The 'score' run lost its job lock before committing (the database session ",
            recorded="lost its job lock")
    finally:
        store.dispose()


@pytest.mark.postgres
def test_prune_that_lost_its_lock_stops_deleting(postgres_url: str) -> None:
    """``telemetry prune`` deletes in batches, each its own transaction; once its lock session is
    killed (real ``pg_terminate_backend``, during the first batch) no further batch commits. (The
    events are on the cutoff's day, so their partition is not dropped but deleted in batches.)"""
    from datetime import timedelta

    from recommender_core.errors import LockLostError
    from recommender_core.store.tables import TelemetryEvent
    from recommender_core.telemetry.retention import prune_events
    from recommender_core.telemetry.writer import write_records

    from .test_telemetry import NOW, _record

    store = Store(postgres_url)
    store.upgrade()
    try:
        write_records(store, [_record(i) for i in range(6)])
        _before_first(store, "DELETE FROM telemetry_event",
                      lambda cursor: terminate(postgres_url, lock_holders(postgres_url, "telemetry-prune")[0]))
        with pytest.raises(LockLostError, match=r"the database session .* that held it ended"):
            prune_events(store, older_than_days=1, now=NOW + timedelta(days=1, hours=1), batch_size=2)
        with store.session() as session:
            left = session.exec(select(sa.func.count()).select_from(TelemetryEvent)).one()
        assert left == 4  # the first batch (checked before the kill) went; no other did
    finally:
        store.dispose()


@pytest.mark.postgres
def test_prune_that_lost_its_lock_stops_dropping_partitions(postgres_url: str) -> None:
    """On Postgres prune drops whole old days' partitions, each in its own transaction that checks the
    lock; once its lock session is killed (during the first drop) no further partition is dropped."""
    from datetime import timedelta

    from recommender_core.errors import LockLostError
    from recommender_core.store.tables import TelemetryEvent
    from recommender_core.telemetry.retention import prune_events
    from recommender_core.telemetry.writer import write_records

    from .test_telemetry import NOW, _record

    store = Store(postgres_url)
    store.upgrade()
    try:
        write_records(store, [_record(i, ago=timedelta(days=5 - i)) for i in range(3)])  # three old days
        _before_first(store, "DROP TABLE",
                      lambda cursor: terminate(postgres_url, lock_holders(postgres_url, "telemetry-prune")[0]))
        with pytest.raises(LockLostError, match=r"the database session .* that held it ended"):
            prune_events(store, older_than_days=1, now=NOW)
        with store.session() as session:
            left = session.exec(select(sa.func.count()).select_from(TelemetryEvent)).one()
        assert left == 2  # the first day's partition (checked before the kill) went; no other did
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_newer_run_waits_for_a_commit_that_claimed_the_job(postgres_url: str) -> None:
    """The narrowest window: the lock session dies after the run claimed its commit, before the
    COMMIT itself. A newer run then takes the lock, but its marking of the old run waits on the
    old run's row lock, so it starts only after that commit: serial, never side by side."""
    store = Store(postgres_url)
    store.upgrade()
    newer_store = Store(postgres_url)
    dbname = postgres_url.rsplit("/", 1)[1]
    newer: dict[str, Any] = {}
    armed: list[bool] = []

    class Source(LmsysSource):
        def save_state(self, session: Session, *, now: datetime) -> None:
            armed.append(True)  # the write transaction has claimed the run: the next COMMIT is its own

    def before_commit(conn: sa.Connection) -> None:
        if armed and "thread" not in newer:
            armed.clear()
            terminate(postgres_url, lock_holders(postgres_url, "ingest-lmsys")[0])
            newer["thread"] = threading.Thread(target=lambda: newer.update(result=ingest(
                newer_store, str(SAMPLE), force=True)))
            newer["thread"].start()
            deadline = time.monotonic() + 30
            with pg_admin(postgres_url) as admin:  # until the newer run waits on our row lock
                while not admin.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND "
                                        "wait_event_type = 'Lock'", (dbname,)).fetchone():
                    assert time.monotonic() < deadline, "the newer run never waited for this commit"
                    time.sleep(0.05)

    try:
        sa.event.listen(store.engine, "commit", before_commit)
        source = Source(settings=Settings.load(), policy=load_policy())
        try:
            old = source.run(store, IngestOptions(mirror=str(SAMPLE)))
        finally:
            source.close()
        newer["thread"].join(60)
        assert old.status == RunStatus.SUCCESS and newer["result"].status == RunStatus.SUCCESS
        # the newer run waited (above), found the old run finished rather than running, and went on
        runs = {r.id: r.status for r in list_runs(store, source="lmsys")}
        assert runs == {old.run_id: RunStatus.SUCCESS, newer["result"].run_id: RunStatus.SUCCESS}
        assert _evidence_runs(store) == {old.run_id: 78, newer["result"].run_id: 78}
    finally:
        newer_store.dispose()
        store.dispose()


def _disk_full(backend: str) -> Exception:
    if backend == "postgresql":
        return psycopg.errors.DiskFull(
            'could not extend file "base/16384/16402": No space left on device')
    return sqlite3.OperationalError("database or disk is full")


def test_disk_full_at_the_write(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """The driver raises its real disk-full error (SQLSTATE 53100 on Postgres) at the score write."""
    assert ingest(store, str(SAMPLE)).status == RunStatus.SUCCESS
    policy = load_policy()
    run_scoring(store, policy)
    before = _scores(store)

    def full(cursor: Any) -> None:
        raise _disk_full(store.dialect)

    _on_utility_insert(store, full)
    code, stderr = as_cli(lambda: run_scoring(store, policy), capsys)
    assert code == 1
    one_line(stderr, "StoreWriteError: The database at ")
    assert "is out of space" in stderr and stderr.rstrip().endswith("Free space and re-run.")
    assert _scores(store) == before
    assert [status for status, _ in _scoring_runs(store)] == [RunStatus.SUCCESS, RunStatus.FAILED]


class _DiskFullSource(LmsysSource):
    """Arms a disk-full error in the driver inside the evidence write transaction: after the rows
    went in (COPY on Postgres), the run's own UPDATE in the same transaction fails as a full disk would."""

    store: Store | None = None

    def save_state(self, session: Session, *, now: datetime) -> None:
        store = self.store
        assert store is not None
        fired: list[bool] = []

        def hook(cursor: Any, statement: str, *args: Any) -> bool:
            if not fired and statement.lstrip().upper().startswith("UPDATE INGEST_RUN"):
                fired.append(True)
                raise _disk_full(store.dialect)
            return False

        sa.event.listen(store.engine, "do_execute", hook)


def test_disk_full_during_the_evidence_write(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    before = good_store(store)
    source = _DiskFullSource(settings=Settings.load(), policy=load_policy())
    source.store = store
    code, stderr = as_cli(lambda: source.run(store, IngestOptions(mirror=str(SAMPLE), force=True)), capsys)
    source.close()
    assert code == 1
    one_line(stderr, "StoreWriteError: The database at ")
    assert "is out of space" in stderr and stderr.rstrip().endswith("Free space and re-run.")
    assert evidence(store) == before  # the rows written in that transaction were rolled back
    runs = list_runs(store, source="lmsys")
    assert [r.status for r in runs] == [RunStatus.FAILED, RunStatus.SUCCESS]
    assert "is out of space" in (runs[0].error or "")


@pytest.fixture
def read_only_url(postgres_url: str) -> Iterator[str]:
    """The test database, migrated and filled, and a URL for a role that may read but not write."""
    store = Store(postgres_url)
    store.upgrade()
    ingest(store, str(SAMPLE))
    store.dispose()
    role = f"recsys_ro_{uuid.uuid4().hex[:8]}"
    dbname = postgres_url.rsplit("/", 1)[1]
    with pg_admin(postgres_url) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'ro-pass'").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname),
                                                                       sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    host_part = postgres_url.split("@", 1)[1]
    try:
        yield f"postgresql://{role}:ro-pass@{host_part}"
    finally:
        with pg_admin(postgres_url) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"),
                          (role,))
        with pg_admin(postgres_url.rsplit("/", 1)[0] + "/postgres") as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.postgres
def test_read_only_database_role(read_only_url: str, postgres_url: str) -> None:
    from recsys_cli.app import app
    from typer.testing import CliRunner

    direct = Store(postgres_url)
    try:
        before = evidence(direct)
        runs_before = list_runs(direct)
        result = CliRunner().invoke(app, ["--database-url", read_only_url, "ingest", "lmsys", "--source",
                                          str(SAMPLE), "--force"])
        assert result.exit_code == 1, result.output
        one_line(result.stderr, "StoreWriteError: The database at postgresql://")
        assert "refused a write: permission denied" in result.stderr
        assert result.stderr.rstrip().endswith("Use a role with write access.")
        assert "ro-pass" not in result.output
        # reading still works for that role
        shown = CliRunner().invoke(app, ["--database-url", read_only_url, "runs", "--json"])
        assert shown.exit_code == 0 and len(json.loads(shown.stdout)) == len(runs_before)
        # nothing changed: the role could not even record a run, which the message says
        assert evidence(direct) == before and list_runs(direct) == runs_before
    finally:
        direct.dispose()


# --- two runs at once, in real processes ---------------------------------------------------------

class _GatedHub(BaseHTTPRequestHandler):
    """A Hub-compatible mirror whose parquet download waits until the test opens the gate."""

    gate = threading.Event()
    waiting = threading.Event()
    body = b""

    def do_GET(self) -> None:
        if self.path.endswith("/api/datasets/" + C.DATASET_ID):
            payload = json.dumps({"id": C.DATASET_ID, "sha": NEW_SHA}).encode()
        else:
            type(self).waiting.set()
            type(self).gate.wait(60)
            payload = type(self).body
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gated_hub() -> Iterator[type[_GatedHub]]:
    handler = type("Gated", (_GatedHub,), {"gate": threading.Event(), "waiting": threading.Event(),
                                           "body": parquet_bytes(board_rows())})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        handler.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _recsys(url: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    return subprocess.Popen([RECSYS, "--database-url", url, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_two_runs_of_one_job_and_two_jobs_at_once(database_url: str, gated_hub: Any) -> None:
    store = Store(database_url)
    store.upgrade()
    try:
        first = _recsys(database_url, "ingest", "lmsys", "--source", gated_hub.url, "--json")
        try:
            assert gated_hub.waiting.wait(60), "the first run never reached its download"
            # the same job again, while the first holds the lock: exit 75 at once, nothing done
            second = subprocess.run([RECSYS, "--database-url", database_url, "ingest", "lmsys", "--source",
                                     str(SAMPLE)], capture_output=True, text=True, timeout=120, check=False)
            assert second.returncode == 75, second.stderr
            assert second.stderr == ("LockHeldError: Another 'ingest-lmsys' run holds its lock; this run did "
                                     "nothing. Wait for it to finish.\n")
            # a different job at the same time runs to success
            other = subprocess.run([RECSYS, "--database-url", database_url, "ingest", "mteb", "--source",
                                    str(MTEB_SAMPLE), "--json"], capture_output=True, text=True, timeout=120,
                                   check=False)
            assert other.returncode == 0, other.stderr
            assert json.loads(other.stdout)["status"] == "success"
        finally:
            gated_hub.gate.set()
            out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert json.loads(out)["rows"] == 78
        runs = list_runs(store)
        assert sorted((r.source, r.status) for r in runs) == [("lmsys", "success"), ("mteb", "success")]
        with store.session() as session:
            lmsys_rows = session.exec(select(sa.func.count()).select_from(BenchmarkEvidence)
                                      .where(col(BenchmarkEvidence.source) == "lmsys")).one()
        assert lmsys_rows == 78  # written once
    finally:
        store.dispose()


# --- a run that lost its lock, in real processes -------------------------------------------------

def lock_holders(url: str, job: str) -> list[int]:
    """The backends holding ``job``'s advisory lock, read from pg_locks as an operator would."""
    unsigned = advisory_key(job) & 0xFFFF_FFFF_FFFF_FFFF
    with pg_admin(url) as admin:
        return [r[0] for r in admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid = %s::oid AND objid = %s::oid AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", (unsigned >> 32, unsigned & 0xFFFF_FFFF))]


def take_the_lock_away(database_url: str, job: str) -> str:
    """The real fault that frees a running job's lock under it: on Postgres the lock's session is
    killed (``pg_terminate_backend``, as a failover, a network cut or a pooler would); on SQLite the
    lock file is deleted (the only way to free a live process's flock). Returns what was done."""
    if database_url.startswith("postgresql"):
        [pid] = lock_holders(database_url, job)
        terminate(database_url, pid)
        deadline = time.monotonic() + 10
        while lock_holders(database_url, job):  # the server ends the backend asynchronously
            assert time.monotonic() < deadline, "the killed backend still holds the lock"
            time.sleep(0.05)
        return "the database session"
    database = database_url.removeprefix("sqlite:///")
    os.unlink(f"{database}.{job}.lock")
    return f"its lock file {database}.{job}.lock was deleted"


def _evidence_runs(store: Store) -> dict[int, int]:
    with store.session() as session:
        rows = session.exec(select(BenchmarkEvidence.run_id, sa.func.count()).group_by(
            col(BenchmarkEvidence.run_id))).all()
    return {run_id: count for run_id, count in rows}


def test_a_run_that_lost_its_lock_never_commits_beside_the_next_run(database_url: str, gated_hub: Any) -> None:
    """Run A (a real process) loses its job lock mid-run (real fault, see ``take_the_lock_away``);
    run B of the same job then starts, takes the lock and succeeds. When A reaches its write it
    fails with one line and writes nothing: only one of the two overlapping runs ever commits."""
    store = Store(database_url)
    store.upgrade()
    try:
        assert ingest(store, str(SAMPLE)).status == RunStatus.SUCCESS
        first = list_runs(store, source="lmsys")[0].id
        a = _recsys(database_url, "ingest", "lmsys", "--source", gated_hub.url, "--json")
        try:
            assert gated_hub.waiting.wait(60), "run A never reached its download"
            take_the_lock_away(database_url, "ingest-lmsys")
            b = subprocess.run([RECSYS, "--database-url", database_url, "ingest", "lmsys", "--source", str(SAMPLE),
                                "--force", "--json"], capture_output=True, text=True, timeout=120, check=False)
            assert b.returncode == 0, b.stderr
            b_run = json.loads(b.stdout)["run_id"]
        finally:
            gated_hub.gate.set()
            _, err = a.communicate(timeout=120)
        assert a.returncode == 1, err
        a_run = next(r.id for r in list_runs(store, source="lmsys") if r.id not in (first, b_run))
        assert err == (f"LockLostError: The 'ingest-lmsys' run lost its job lock before committing (a newer run "
                       f"took the job over and marked run {a_run} abandoned); it wrote nothing. Run the job again.\n")
        runs = {r.id: r for r in list_runs(store, source="lmsys")}
        assert runs[b_run].status == RunStatus.SUCCESS and runs[a_run].status == RunStatus.FAILED
        assert _evidence_runs(store) == {first: 78, b_run: 78}  # nothing of A's
        current = current_ingest_run(store, "lmsys")
        assert current is not None and current.id == b_run
    finally:
        store.dispose()


def test_a_run_that_lost_its_lock_fails_and_writes_nothing(database_url: str, gated_hub: Any) -> None:
    """The same real fault with no second run: the lock is simply gone when the run commits."""
    store = Store(database_url)
    store.upgrade()
    try:
        before = good_store(store)
        a = _recsys(database_url, "ingest", "lmsys", "--source", gated_hub.url)
        try:
            assert gated_hub.waiting.wait(60), "the run never reached its download"
            what = take_the_lock_away(database_url, "ingest-lmsys")
        finally:
            gated_hub.gate.set()
            _, err = a.communicate(timeout=120)
        assert a.returncode == 1, err
        one_line(err, f"LockLostError: The 'ingest-lmsys' run lost its job lock before committing ({what}")
        assert err.endswith("; it wrote nothing. Run the job again.\n")
        assert evidence(store) == before
        failed = list_runs(store, source="lmsys")[0]
        assert failed.status == RunStatus.FAILED and "lost its job lock" in (failed.error or "")
    finally:
        store.dispose()


def _shown(database_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What an operator sees: the newest run in ``recsys runs --json`` and lmsys in ``snapshot --json``."""
    runs = subprocess.run([RECSYS, "--database-url", database_url, "runs", "--json"], capture_output=True,
                          text=True, timeout=120, check=True)
    snapshot = subprocess.run([RECSYS, "--database-url", database_url, "snapshot", "--json"], capture_output=True,
                              text=True, timeout=120, check=True)
    [lmsys_source] = [s for s in json.loads(snapshot.stdout)["sources"] if s["source"] == "lmsys"]
    return json.loads(runs.stdout)[0], lmsys_source


def test_a_killed_run_shows_abandoned_at_once(database_url: str, gated_hub: Any) -> None:
    """``kill -9`` of a running ingest (a real SIGKILL): ``runs`` and ``snapshot`` show its run
    ``abandoned (process gone)`` as soon as its job lock is free, not at the job's next run. A live
    run (its lock held by its process) still shows ``running``. Nothing is written to show it."""
    store = Store(database_url)
    store.upgrade()
    try:
        a = _recsys(database_url, "ingest", "lmsys", "--source", gated_hub.url)
        try:
            assert gated_hub.waiting.wait(60), "the run never reached its download"
            run, source = _shown(database_url)
            assert (run["status"], run["error"], source["last_status"]) == ("running", None, "running")
            a.send_signal(signal.SIGKILL)
            a.wait(30)
        finally:
            gated_hub.gate.set()
            a.kill()
            a.communicate()
        assert a.returncode == -signal.SIGKILL
        if database_url.startswith("postgresql"):
            deadline = time.monotonic() + 10
            while lock_holders(database_url, "ingest-lmsys"):  # the server ends the dead client's session
                assert time.monotonic() < deadline, "the killed run's session still holds the lock"
                time.sleep(0.05)
        shown, source = _shown(database_url)
        assert shown["id"] == run["id"] and shown["status"] == "abandoned"
        assert shown["error"].startswith("abandoned (process gone): ")
        assert source["last_status"] == "abandoned" and source["last_error"] == shown["error"]
        with store.session() as session:  # only shown: the next run of the job records it
            assert session.get(IngestRun, run["id"]).status == RunStatus.RUNNING
        assert ingest(store, str(SAMPLE)).status == RunStatus.SUCCESS
        assert {r.id: r.status for r in list_runs(store, source="lmsys")}[run["id"]] == RunStatus.ABANDONED
    finally:
        store.dispose()


def test_database_down_at_start_for_a_job(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        store = Store(f"postgresql://recsys:down-secret@127.0.0.1:{port}/recsys")
        code, stderr = as_cli(lambda: ingest(store, str(SAMPLE)), capsys)
        store.dispose()
    assert code == 1
    one_line(stderr, f"StoreUnavailableError: Cannot reach the database at postgresql://recsys:***@127.0.0.1:{port}")
    assert "down-secret" not in stderr


# --- the telemetry writer's database gone for a while and back -----------------------------------


@pytest.mark.postgres
@pytest.mark.timing
def test_telemetry_db_gone_then_back_callers_never_wait_and_loss_is_counted(
        relayed_postgres: tuple[str, Any], postgres_url: str) -> None:
    from recommender_core.store.tables import TelemetryEvent
    from recommender_core.telemetry.writer import BatchWriter, write_records

    from .test_telemetry import _record

    url, relay = relayed_postgres
    store = Store(url)
    writer = BatchWriter(sink=lambda b: write_records(store, b), queue_size=100, batch_size=20,
                         flush_interval=0.02, backoff_initial=0.05, backoff_max=0.2)
    waits: list[float] = []
    try:
        for i in range(50):
            writer.enqueue(_record(i))
        assert writer.flush(timeout=10)
        relay.stop()  # the database is gone: existing connections die, new ones are refused
        for i in range(50, 450):
            started = time.perf_counter()
            writer.enqueue(_record(i))  # what the LiteLLM callback does on every call
            waits.append(time.perf_counter() - started)
            if i % 50 == 0:
                time.sleep(0.05)  # the writer keeps trying meanwhile
        stats = writer.stats()
        assert stats.failed_batches >= 1 and stats.queued <= 100 + 20  # the bound, plus one batch in flight
        assert stats.dropped >= 400 - 120
        relay.start()  # and it is back
        assert writer.flush(timeout=20), writer.stats()
        final = writer.stats()
    finally:
        writer.close(timeout=2)
        store.dispose()
    assert max(waits) < 0.1, max(waits)  # no caller waited on the database
    direct = Store(postgres_url)
    try:
        with direct.session() as session:
            ids = set(session.execute(sa.select(TelemetryEvent.event_id)).scalars())
    finally:
        direct.dispose()
    # nothing lost beyond the counted drops, and the newest events are the ones kept
    assert len(ids) + final.dropped == 450 and final.written == len(ids)
    assert {f"evt-{i}" for i in range(450 - 100, 450)} <= ids


class _Listener:
    """A real TCP listener the test controls, counting the connections it accepts: ``reset`` closes
    each at once (the client fails fast, as with a crashed server), ``silent`` keeps each open
    without sending a byte (the client waits for its connect timeout, as behind a black hole)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "reset":
                client.close()
            else:
                self._held.append(client)

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(5)
        for client in self._held:
            client.close()


class _DeadStore:
    """A Postgres URL whose store is down, by one real fault: ``refused`` (a bound port nobody
    listens on), ``reset`` and ``silent`` (a ``_Listener``), or ``black-holed`` (a listener whose
    backlog is full and that never accepts, so the kernel drops every new SYN). ``attempts`` counts
    the connection attempts: accepted connections where a listener can see them, else sink calls
    (each opens one connection: the store never had one to reuse)."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.calls = 0
        self._listener: _Listener | None = None
        self._sockets: list[socket.socket] = []
        if fault in ("reset", "silent"):
            self._listener = _Listener(fault)
            port = self._listener.port
        else:
            bound = socket.socket()
            bound.bind(("127.0.0.1", 0))
            self._sockets.append(bound)
            port = bound.getsockname()[1]
            if fault == "black-holed":
                bound.listen(0)
                for _ in range(4):  # fill the accept queue; nothing ever accepts
                    filler = socket.socket()
                    filler.setblocking(False)
                    filler.connect_ex(("127.0.0.1", port))
                    self._sockets.append(filler)
        self.url = f"postgresql://recsys:secret@127.0.0.1:{port}/recsys"
        self.store = Store(self.url)

    def sink(self, batch: Any) -> int:
        from recommender_core.telemetry.writer import write_records

        self.calls += 1
        return write_records(self.store, batch)

    @property
    def attempts(self) -> int:
        return self._listener.accepted if self._listener is not None else self.calls

    def close(self) -> None:
        self.store.dispose()
        if self._listener is not None:
            self._listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture(params=["refused", "reset", "silent", "black-holed"])
def dead_store(request: pytest.FixtureRequest) -> Iterator[_DeadStore]:
    dead = _DeadStore(request.param)
    try:
        yield dead
    finally:
        dead.close()


def test_telemetry_writer_holds_its_backoff_and_its_timeouts_while_the_store_is_down(dead_store: _DeadStore) -> None:
    """``flush(timeout)`` and ``close(timeout)`` keep the writer's backoff (a few connection
    attempts per second, counted for real) and return within the time they were given, whether
    the store refuses, resets, never answers or is black-holed."""
    from recommender_core.telemetry.writer import BatchWriter

    from .test_telemetry import _record

    writer = BatchWriter(sink=dead_store.sink, queue_size=100, batch_size=10, flush_interval=0.05)
    try:
        writer.enqueue_many(_record(i) for i in range(25))
        started = time.monotonic()
        assert writer.flush(timeout=3) is False
        flushing = time.monotonic() - started
        during_flush = dead_store.attempts
        assert 2.9 < flushing < 4.0, flushing
        assert 1 <= during_flush <= 3 * 3 + 2, during_flush  # a few per second, not thousands
        started = time.monotonic()
        assert writer.close(timeout=1) is False
        closing = time.monotonic() - started
        assert closing < 1.5, closing
        assert dead_store.attempts - during_flush <= 3 * 1 + 2
        stats = writer.stats()
        assert stats.written == 0 and stats.queued == 25
        # silent and black-holed stores hold the first attempt until the driver's connect timeout
        assert (stats.last_error is not None) == (dead_store.fault in ("refused", "reset"))
    finally:
        # Wait for the writer thread to end: a silent or black-holed store holds its first attempt
        # until the driver's connect timeout, and the thread's warning must not land in a later test
        # (after this test's output capture is gone, where logging would print "--- Logging error ---").
        writer.close(timeout=15)


_EXIT_SCRIPT = """
import sys, time
import litellm
from recommender_core import TelemetryCallback

if {url!r}:
    litellm.callbacks = [TelemetryCallback({url!r}, exit_timeout={timeout})]
for i in range(5):
    litellm.completion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}], mock_response="hello")
sys.stderr.write(f"LAST STATEMENT {{time.time()!r}}\\n")
"""


def _exit_delay(url: str, timeout: float) -> tuple[float, str]:
    """Seconds from a real process's last statement to its exit, and its stderr."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")},
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT.format(url=url, timeout=timeout)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    ended = time.time()
    assert done.returncode == 0, done.stderr
    [last] = [float(line.split()[-1]) for line in done.stderr.splitlines() if line.startswith("LAST STATEMENT")]
    return ended - last, done.stderr


@pytest.mark.parametrize("fault", ["refused", "black-holed"])
def test_interpreter_exit_waits_at_most_the_exit_timeout_for_a_dead_store(fault: str) -> None:
    """A real process makes real litellm calls (``mock_response``) recorded by TelemetryCallback
    while its store is down (a real closed port, or a black-holed one): it exits within the
    callback's ``exit_timeout`` (2 s) beyond the exit of the same process without the callback
    (litellm's own exit work, measured in the same test), and says what it could not write."""
    litellm_alone, _ = _exit_delay("", 2.0)
    dead = _DeadStore(fault)
    try:
        delay, stderr = _exit_delay(dead.url, 2.0)
    finally:
        dead.close()
    assert delay - litellm_alone < 2.0 + 1.5, (delay, litellm_alone)
    assert "telemetry: 5 events could not be written before close" in stderr
    assert "secret" not in stderr


@pytest.mark.parametrize(("error", "expected"), [
    (psycopg.errors.DiskFull("konnte Datei »base/16384/16402« nicht erweitern: Auf dem Gerät ist kein "
                             "Speicherplatz mehr verfügbar"), "is out of space"),
    (psycopg.errors.InsufficientPrivilege("keine Berechtigung für Tabelle ingest_run"), "refused a write"),
    (psycopg.errors.ReadOnlySqlTransaction("kann INSERT nicht in einer Read-only-Transaktion ausführen"),
     "refused a write"),
])
def test_a_server_speaking_another_language_is_classified_by_sqlstate(error: Exception, expected: str) -> None:
    from recommender_core.errors import StoreWriteError
    from recommender_core.store.errors import translate_exception

    wrapped = sa.exc.OperationalError("INSERT INTO ingest_run ...", {}, error)
    translated = translate_exception(wrapped, "postgresql://app:***@db/recsys")
    assert isinstance(translated, StoreWriteError)
    assert expected in translated.message
