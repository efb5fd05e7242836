"""Hostile data never poisons the store: every value is checked at the edge it comes in by.

Telemetry from a real LiteLLM_SpendLogs table (the SQL transcribed from litellm's schema.prisma) in
the test Postgres, imported into a store on each backend; saved snapshots read by `route-test
--scores`; `recsys serve` as a real process; the COPY path against the real Postgres server; and
property tests (hypothesis) of the row validators. The callback's own cases, which need litellm,
live in test_telemetry_litellm.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from recsys_cli._base import AppState
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.errors import ConfigError, RecsysError, RejectedRow
from recommender_core.sources.base import EvidenceRecord
from recommender_core.store import Store
from recommender_core.store.bulk import insert_evidence
from recommender_core.store.tables import IngestRun, ScoringRun, SourceState, TelemetryEvent, UtilityScore
from recommender_core.telemetry.events import (
    STANDARD_LOGGING_FIELDS_READ,
    TelemetryRecord,
    record_from_standard_logging,
)
from recommender_core.telemetry.spend_logs import COLUMNS_READ, METADATA_READ, record_from_spend_log
from recommender_core.telemetry.validate import CLOCK_SKEW, MAX_COST_USD, MAX_TOKENS, check_record

from .scoring_data import SMALL_POLICY, add_arena, add_ingest_run
from .test_faults import as_cli, evidence, one_line, pg_admin
from .test_routing_cli import CASES as SNAPSHOT_CASES
from .test_telemetry_spend_logs import T0, _insert, _row

runner = CliRunner()
NOW = T0.replace(tzinfo=UTC) + timedelta(hours=1)  # the store's clock: an hour after the calls


def _cli(url: str, *args: str, now: datetime = NOW) -> Any:
    return runner.invoke(app, ["--database-url", url, *args], obj=AppState(clock=FixedClock(now)))


def _event_rows(url: str) -> dict[str, dict[str, Any]]:
    store = Store(url)
    try:
        with store.session() as session:
            return {e.event_id: e.model_dump(exclude={"id"})
                    for e in session.execute(sa.select(TelemetryEvent)).scalars()}
    finally:
        store.dispose()


# --- telemetry: the SpendLogs import ------------------------------------------------------------

@pytest.mark.postgres
def test_a_future_dated_spend_log_row_is_rejected_counted_and_never_moves_the_cursor(
        store: Store, database_url: str, spend_logs_dsn: str) -> None:
    """Case 1: a row dated 9999-12-31 used to carry the import cursor to year 9999, after which every
    import succeeded and imported nothing. Now it is rejected and counted on every run, and the
    cursor stays on the latest stored row, so later rows still come in."""
    _insert(spend_logs_dsn, [
        _row("ok-1", 0), _row("ok-2", 1),
        _row("from-9999", 0, startTime=datetime(9999, 12, 31, 23, 59, 59), endTime=datetime(9999, 12, 31, 23, 59, 59)),
        # Ten minutes after the import's "now": past the allowed five minutes of clock skew.
        _row("ten-minutes-ahead", 0, startTime=NOW.replace(tzinfo=None) + timedelta(minutes=10),
             endTime=NOW.replace(tzinfo=None) + timedelta(minutes=10, seconds=1)),
        # Three minutes ahead is clock skew between the proxy and us: accepted.
        _row("skewed", 0, startTime=NOW.replace(tzinfo=None) + timedelta(minutes=3),
             endTime=NOW.replace(tzinfo=None) + timedelta(minutes=3, seconds=1)),
    ])
    first = _cli(database_url, "ingest", "litellm", "--spend-logs-url", spend_logs_dsn, "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert (doc["read"], doc["inserted"], doc["rejected"]) == (5, 3, 2)
    assert doc["rejected_reasons"] == {"started_at is in the future": 2}
    assert doc["cursor"] == (NOW + timedelta(minutes=3)).isoformat()
    before = _event_rows(database_url)
    assert set(before) == {"ok-1", "ok-2", "skewed"}

    # A row five minutes before "now": inside the overlap the next import re-reads before its cursor.
    _insert(spend_logs_dsn, [_row("later", 55 * 60)])
    second = _cli(database_url, "ingest", "litellm", "--spend-logs-url", spend_logs_dsn,
                  now=NOW + timedelta(minutes=1))
    assert second.exit_code == 0, second.output
    assert second.stderr == ""
    assert second.stdout == (f"Imported 1 new spend-log rows (4 read, 1 already stored, 2 rejected (started_at is "
                             f"in the future: 2)); cursor {(NOW + timedelta(minutes=3)).isoformat()}.\n")
    after = _event_rows(database_url)
    assert set(after) == {"ok-1", "ok-2", "skewed", "later"}
    assert {k: after[k] for k in before} == before  # the telemetry already stored is untouched
    with store.session() as session:
        runs = session.execute(sa.select(IngestRun).order_by(IngestRun.id)).scalars().all()
        cursor = session.execute(sa.select(SourceState).where(SourceState.source == "litellm")).scalars().one()
    assert [(r.status, r.rows_accepted, r.rows_rejected) for r in runs] == [("success", 3, 2), ("success", 1, 2)]
    assert runs[0].details["rejected"] == {"started_at is in the future": 2}
    assert datetime.fromisoformat(cursor.value) == NOW + timedelta(minutes=3)


@pytest.mark.postgres
def test_a_cursor_an_older_version_left_in_the_future_is_repaired(
        store: Store, database_url: str, spend_logs_dsn: str) -> None:
    """A cursor at 9999 stored by an older version is no time this version could have stored: the
    import goes back to the latest stored spend-log event and moves on from there."""
    _insert(spend_logs_dsn, [_row("ok-1", 0)])
    assert _cli(database_url, "ingest", "litellm", "--spend-logs-url", spend_logs_dsn).exit_code == 0
    with store.session() as session:
        state = session.execute(sa.select(SourceState).where(SourceState.source == "litellm")).scalars().one()
        state.value = "9999-12-31T23:59:59+00:00"
    _insert(spend_logs_dsn, [_row("ok-2", 60)])
    result = _cli(database_url, "ingest", "litellm", "--spend-logs-url", spend_logs_dsn, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["inserted"], doc["cursor"]) == (1, (T0 + timedelta(seconds=60)).replace(tzinfo=UTC).isoformat())
    assert "stored cursor 9999-12-31T23:59:59+00:00 is not a usable time" in result.stderr
    assert set(_event_rows(database_url)) == {"ok-1", "ok-2"}


def _utilities(store: Store) -> tuple[int, dict[tuple[str, str], float | None]]:
    with store.session() as session:
        run = session.execute(sa.select(ScoringRun).where(ScoringRun.is_current.is_(True))).scalars().one()  # type: ignore[attr-defined]
        scores = session.execute(sa.select(UtilityScore).where(UtilityScore.run_id == run.id)).scalars().all()
    assert run.id is not None
    return run.id, {(s.task, s.model): s.utility for s in scores}


@pytest.mark.postgres
def test_non_finite_negative_and_overflowing_figures_never_reach_scoring(
        store: Store, database_url: str, spend_logs_dsn: str, tmp_path: Path) -> None:
    """Cases 2 and 3: one spend of NaN or Infinity among 50 costed rows, or prompt_tokens = -2^31, made
    every later `recsys score` fail on Postgres while the row stayed in the window; a spend of -1e6
    made a model cheaper and raised its utility. Each such row is rejected and counted now, and a
    scoring run after them equals the one before."""
    add_arena(store, [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0),
                      ("delta-2025", "overall", 1200.0, 1100.0)])
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    _insert(spend_logs_dsn, [_row(f"alpha-{i}", i, model="alpha", model_group="alpha", spend=0.002,
                                  prompt_tokens=800, completion_tokens=200) for i in range(60)])
    assert _cli(database_url, "ingest", "litellm", "--spend-logs-url", spend_logs_dsn).exit_code == 0
    scored = _cli(database_url, "score", "--policy", str(policy))
    assert scored.exit_code == 0, scored.output
    run_before, utilities_before = _utilities(store)
    events_before = _event_rows(database_url)

    hostile = [
        _row("nan-spend", 100, model="alpha", model_group="alpha", spend=float("nan")),
        _row("inf-spend", 101, model="alpha", model_group="alpha", spend=float("inf")),
        _row("negative-spend", 102, model="alpha", model_group="alpha", spend=-1e6),
        _row("absurd-spend", 103, model="alpha", model_group="alpha", spend=1e300),
        _row("int-min-tokens", 104, model="alpha", model_group="alpha", prompt_tokens=-2**31),
        _row("int-max-tokens", 105, model="alpha", model_group="alpha", completion_tokens=2**31 - 1),
        _row("ends-before-start", 106, model="alpha", model_group="alpha",
             endTime=T0 + timedelta(seconds=106) - timedelta(seconds=5)),
    ]
    _insert(spend_logs_dsn, hostile)
    imported = _cli(database_url, "ingest", "litellm", "--spend-logs-url", spend_logs_dsn, "--json")
    assert imported.exit_code == 0, imported.output
    doc = json.loads(imported.stdout)
    assert (doc["inserted"], doc["rejected"]) == (0, 7)
    assert doc["rejected_reasons"] == {
        "cost is not finite": 2, "cost is negative": 1, "cost is over 10,000 USD": 1,
        "prompt_tokens is negative": 1, "completion_tokens is over 100,000,000": 1,
        "ended_at is before started_at": 1}
    assert _event_rows(database_url) == events_before

    again = _cli(database_url, "score", "--policy", str(policy))
    assert again.exit_code == 0, again.output
    run_after, utilities_after = _utilities(store)
    assert run_after == run_before + 1
    assert utilities_after == utilities_before  # the hostile rows moved nothing


# --- telemetry: property tests of the two row builders --------------------------------------------

_ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300),
    st.sampled_from(["", " ", "1e400", "-0", "NaN", "12", "task:chat", "task/chat", "\x00", "\x1b[31m", "a" * 300]),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
)


def _nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Scalars, and lists and objects of them two levels deep (st.recursive's check for an extend
    that ignores its argument misfires on these and warns)."""
    level = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=8), scalars, max_size=4))
    return st.one_of(level, st.lists(level, max_size=3), st.dictionaries(st.text(max_size=8), level, max_size=3))


_ANY_VALUE = _nested(_ANY_SCALAR)
_FIGURES = st.one_of(_ANY_SCALAR, st.floats(min_value=-10, max_value=2 * MAX_COST_USD),
                     st.integers(min_value=-10, max_value=2 * MAX_TOKENS), st.floats(min_value=-1e20, max_value=1e20),
                     st.floats(min_value=NOW.timestamp() - 1e6, max_value=NOW.timestamp() + 1e3))


def _assert_checked(record: TelemetryRecord) -> None:
    """What every stored event is: the validator's rules, spelled out once more."""
    assert check_record(record, now=NOW) is record
    assert record.started_at <= NOW + CLOCK_SKEW
    assert record.ended_at is None or record.started_at <= record.ended_at <= NOW + CLOCK_SKEW
    for figure in (record.latency_ms, record.ttft_ms, record.cost):
        assert figure is None or (math.isfinite(figure) and figure >= 0)
    for tokens in (record.prompt_tokens, record.completion_tokens):
        assert tokens is None or 0 <= tokens <= MAX_TOKENS
    assert record.cost is None or record.cost <= MAX_COST_USD
    assert len(record.event_id) <= 128 and len(record.model) <= 256


_IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=60)
_TIMES = st.datetimes(min_value=NOW.replace(tzinfo=None) - timedelta(days=10),
                      max_value=NOW.replace(tzinfo=None) + timedelta(minutes=30))


@st.composite
def _hostile(draw: st.DrawFn, base: dict[str, Any], keys: list[str], figures: tuple[str, ...]) -> dict[str, Any]:
    """``base`` (a plausible row) with up to three of ``keys`` replaced by anything at all."""
    row = dict(base)
    for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        row[key] = draw(_FIGURES if key in figures else _ANY_VALUE)
    return row


@st.composite
def _spend_log_rows(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(_TIMES)
    took = draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=5)))
    base = {"request_id": draw(_IDS), "model": draw(st.sampled_from(["gpt-4o", "alpha", "task/chat"])),
            "model_group": draw(st.one_of(st.none(), st.sampled_from(["gpt-4o", "task/chat"]))),
            "startTime": start, "endTime": start + took,
            "completionStartTime": draw(st.one_of(st.none(), st.just(start + timedelta(milliseconds=5)))),
            "spend": draw(st.floats(min_value=0, max_value=5)), "prompt_tokens": draw(st.integers(0, 10**6)),
            "completion_tokens": draw(st.integers(0, 10**6)), "status": draw(st.sampled_from(["success", "failure"])),
            "cache_hit": draw(st.sampled_from(["True", "False", None])), "request_tags": ["task:chat"]}
    keys = sorted({*COLUMNS_READ, *METADATA_READ})
    return draw(_hostile(base, keys, ("spend", "prompt_tokens", "completion_tokens", "attempted_fallbacks")))


_SPEND_LOG_ROWS = _spend_log_rows()


@settings(max_examples=400, deadline=None)
@given(row=_SPEND_LOG_ROWS)
def test_any_spend_log_row_gives_a_checked_record_or_a_rejection(row: dict[str, Any]) -> None:
    try:
        record = record_from_spend_log(row, now=NOW)
    except RecsysError as exc:
        assert isinstance(exc, RejectedRow) and exc.reason and "\n" not in exc.reason
        return
    _assert_checked(record)


@st.composite
def _payloads(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(_TIMES).replace(tzinfo=UTC).timestamp()
    end = start + draw(st.floats(min_value=0, max_value=300))
    base = {"id": draw(_IDS), "model": draw(st.sampled_from(["gpt-4o", "alpha"])), "status": "success",
            "startTime": start, "endTime": end, "completionStartTime": draw(st.floats(min_value=start, max_value=end)),
            "stream": draw(st.booleans()), "response_cost": draw(st.floats(min_value=0, max_value=5)),
            "prompt_tokens": draw(st.integers(0, 10**6)), "completion_tokens": draw(st.integers(0, 10**6)),
            "request_tags": ["task:chat"], "metadata": {}}
    return draw(_hostile(base, list(STANDARD_LOGGING_FIELDS_READ),
                         ("response_cost", "prompt_tokens", "completion_tokens", "startTime", "endTime",
                          "completionStartTime")))


_PAYLOADS = _payloads()


@settings(max_examples=400, deadline=None)
@given(payload=_PAYLOADS, metadata=st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["task", "recsys_task", "attempted_fallbacks", "attempted_retries", "original_model_group",
                     "spend_logs_metadata"]), _ANY_VALUE)), call_id=st.one_of(st.none(), st.text(max_size=300)))
def test_any_standard_logging_payload_gives_a_checked_record_or_a_rejection(
        payload: dict[str, Any], metadata: dict[str, Any] | None, call_id: str | None) -> None:
    try:
        record = record_from_standard_logging(payload, metadata=metadata, call_id=call_id, now=NOW)
    except RecsysError as exc:
        assert isinstance(exc, RejectedRow) and exc.reason and "\n" not in exc.reason
        return
    _assert_checked(record)


# --- the COPY path: a failure is one line, never a driver traceback or warning -------------------

def _copy(store: Store, records: list[EvidenceRecord]) -> None:
    run_id = add_ingest_run(store, "lmsys", version="hostile")
    with store.session() as session:
        insert_evidence(session, run_id=run_id, source="lmsys", source_version="hostile", records=records)


def _psycopg_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("psycopg") and r.levelno >= logging.WARNING]


@pytest.mark.postgres
@pytest.mark.parametrize("hostile", ["long_name_then_nul", "long_name"])
def test_a_copy_the_server_refuses_is_one_line_and_no_driver_warning(
        postgres_url: str, hostile: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """A value the server refuses early in a long COPY (a 10,000-character model name), then one the
    driver refuses later (a NUL byte): the driver raised inside the COPY, psycopg logged "error ignored
    terminating <psycopg.Copy ...>" and a psycopg traceback followed. The rows are checked before the
    COPY now, and what the server refuses leaves the store as one StoreError line."""
    store = Store(postgres_url)
    store.upgrade()
    try:
        add_arena(store, [("alpha", "overall", 1300.0, 1250.0)])
        before = evidence(store)
        rows = [EvidenceRecord(model="x" * 10_000, category="text/overall", value=1300.0)]
        rows += [EvidenceRecord(model=f"model-{i}", category="text/overall", value=1300.0) for i in range(100_000)]
        if hostile == "long_name_then_nul":
            rows.append(EvidenceRecord(model="nul\x00byte", category="text/overall", value=1300.0))
        caplog.set_level(logging.WARNING, logger="psycopg")
        code, stderr = as_cli(lambda: _copy(store, rows), capsys)
        assert code == 1
        one_line(stderr, "StoreError: Database error at postgresql://")
        assert stderr.endswith(("row 100002 of the write holds a NUL byte in 'model', which PostgreSQL text cannot "
                                "store.\n") if hostile == "long_name_then_nul" else
                               "value too long for type character varying(512).\n"), stderr
        assert _psycopg_warnings(caplog) == []
        assert evidence(store) == before
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_connection_killed_during_a_copy_is_one_line_and_no_driver_warning(
        postgres_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The store's backend killed (pg_terminate_backend, from a second connection) while the COPY
    streams: the write failed inside the COPY, and psycopg logged the failed end of the COPY as a
    second error. Now the COPY ends once and the failure is one StoreUnavailableError line."""
    store = Store(postgres_url)
    store.upgrade()
    killed: list[int] = []
    database = postgres_url.rsplit("/", 1)[-1].split("?", 1)[0]

    def kill_the_copy() -> None:
        deadline = time.monotonic() + 30
        with pg_admin(postgres_url) as admin:
            while time.monotonic() < deadline:
                # Only this test's own database: another suite's COPY on the same server is not ours.
                row = admin.execute("SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY benchmark_evidence%%' "
                                    "AND state = 'active' AND datname = %s", (database,)).fetchone()
                if row:
                    admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[0])
                    return
                time.sleep(0.002)

    try:
        add_arena(store, [("alpha", "overall", 1300.0, 1250.0)])
        before = evidence(store)
        rows = [EvidenceRecord(model=f"model-{i}-{'x' * 200}", category="text/overall", value=1300.0,
                               organization="o" * 200) for i in range(600_000)]
        caplog.set_level(logging.WARNING, logger="psycopg")
        killer = threading.Thread(target=kill_the_copy)
        killer.start()
        code, stderr = as_cli(lambda: _copy(store, rows), capsys)
        killer.join()
        assert killed, "the COPY ended before it could be killed; give it more rows"
        assert code == 1
        one_line(stderr, "StoreUnavailableError: Cannot reach the database at postgresql://")
        assert _psycopg_warnings(caplog) == []
        assert evidence(store) == before
    finally:
        store.dispose()


# --- saved snapshots: route-test --scores and RecommenderRouter(scores=path) -----------------------

@pytest.fixture(scope="module")
def saved_snapshot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real `recsys snapshot --json` of a scored store (SQLite: reading a file does not depend on
    the backend), as a document to spoil."""
    folder = tmp_path_factory.mktemp("snapshot")
    url = f"sqlite:///{folder / 'recsys.db'}"
    store = Store(url)
    store.upgrade()
    add_arena(store, [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0),
                      ("delta-2025", "overall", 1200.0, 1100.0)])
    store.dispose()
    policy = folder / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    assert _cli(url, "score", "--policy", str(policy)).exit_code == 0
    snap = _cli(url, "snapshot", "--policy", str(policy), "--json")
    assert snap.exit_code == 0, snap.output
    doc: dict[str, Any] = json.loads(snap.stdout)
    return doc


def _route_test(snapshot: Path, tmp_path: Path) -> Any:
    cases = tmp_path / "cases.yaml"
    cases.write_text(SNAPSHOT_CASES)
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    return runner.invoke(app, ["route-test", str(cases), "--scores", str(snapshot), "--policy", str(policy)],
                         env={"ENABLE_MODEL_RECOMMENDER_V2": "true"})


def _spoil(doc: dict[str, Any], how: str, path: Path) -> str:
    """Write ``doc`` spoiled ``how`` to ``path``; returns the one line route-test must answer."""
    doc = json.loads(json.dumps(doc))
    first = doc["tasks"]["chat"][0]
    save = "Save one with 'recsys snapshot --json > FILE'."
    fresh = "Save a fresh one with 'recsys snapshot --json'."
    if how == "newer_schema":
        doc["schema_version"] = 999
        expected = (f"Snapshot {path} has schema_version 999: it was written by a newer recsys (this one reads 1). "
                    "Upgrade recsys to route from it.")
    elif how == "string_schema":
        doc["schema_version"] = "1"
        expected = f"Snapshot {path}: schema_version must be the whole number 1, got '1'. {save}"
    elif how == "missing_schema":
        del doc["schema_version"]
        expected = f"Snapshot file {path} has no schema_version, so it is no recsys snapshot. {save}"
    elif how == "zero_schema":
        doc["schema_version"] = 0
        expected = f"Snapshot {path} has schema_version 0, which no recsys writes (this one reads 1). {save}"
    elif how == "nan_utility":
        first["utility"] = math.nan
        expected = f"Snapshot file {path} is not a JSON document: NaN is not a number JSON allows. {save}"
    elif how in ("utility_above_one", "negative_utility"):
        first["utility"] = 1.5 if how == "utility_above_one" else -0.25
        expected = (f"Snapshot {path}: tasks.chat[0].utility must be a finite number from 0 to 1, got "
                    f"{first['utility']}. {fresh}")
    elif how == "overflowing_utility":
        path.write_text(json.dumps(doc).replace(json.dumps(first["utility"]), "1e400", 1))
        return (f"Snapshot {path}: tasks.chat[0].utility must be a finite number from 0 to 1, got inf. {fresh}")
    elif how == "negative_cost":
        first["cost_per_1k_tokens"] = -1.0
        expected = (f"Snapshot {path}: tasks.chat[0].cost_per_1k_tokens must be a finite number of at least 0, "
                    f"got -1.0. {fresh}")
    elif how == "nested_100000_deep":
        path.write_text('{"schema_version": 1, "tasks": {"chat": ' + "[" * 100_000 + "]" * 100_000 + "}}")
        return f"Snapshot file {path} is nested too deeply to be a snapshot. {save}"
    elif how == "directory":
        path.mkdir()
        return f"Snapshot {path} is not a regular file (a directory, FIFO or device); give the path of a saved " \
               f"snapshot. {save}"
    elif how == "oversized":
        with path.open("wb") as handle:  # sparse: 33 MiB on paper, nothing on disk
            handle.write(json.dumps(doc).encode())
            handle.truncate(33 * 1024 * 1024)
        return f"Snapshot {path} is {33 * 1024 * 1024} bytes, over the 33554432-byte limit for a saved snapshot. {save}"
    else:
        raise AssertionError(how)
    path.write_text(json.dumps(doc))
    return expected


SPOILED = ["newer_schema", "string_schema", "missing_schema", "zero_schema", "nan_utility", "utility_above_one",
           "negative_utility", "overflowing_utility", "negative_cost", "nested_100000_deep", "directory", "oversized"]


@pytest.mark.parametrize("how", SPOILED)
def test_route_test_refuses_a_spoiled_snapshot_in_one_line(
        saved_snapshot: dict[str, Any], tmp_path: Path, how: str) -> None:
    """Cases 4 and 7: a snapshot of schema_version 999, "1" or none, with a NaN or out-of-range
    utility, was read and its cases passed; one nested 100,000 deep ended in a RecursionError
    traceback. Each is refused with exit 1 and one line naming the file and what is wrong; the same
    loader serves RecommenderRouter(scores=path)."""
    from recommender_core.routing.recommender import as_table

    good = tmp_path / "good.json"
    good.write_text(json.dumps(saved_snapshot))
    passed = _route_test(good, tmp_path)
    assert passed.exit_code == 0, passed.output  # the real snapshot, unspoiled, routes and passes

    spoiled = tmp_path / "spoiled.json"
    expected = _spoil(saved_snapshot, how, spoiled)
    result = _route_test(spoiled, tmp_path)
    assert (result.exit_code, result.stderr) == (1, f"ConfigError: {expected}\n")
    with pytest.raises(ConfigError) as info:
        as_table(spoiled)
    assert info.value.message == expected


def test_a_fifo_given_as_scores_is_refused_at_once(saved_snapshot: dict[str, Any], tmp_path: Path) -> None:
    """Case 4: `route-test --scores <a FIFO>` waited forever for a writer (a real FIFO, a real process)."""
    fifo = tmp_path / "scores.fifo"
    os.mkfifo(fifo)
    cases = tmp_path / "cases.yaml"
    cases.write_text(SNAPSHOT_CASES)
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent))
    assert recsys is not None
    started = time.monotonic()
    result = subprocess.run([recsys, "route-test", str(cases), "--scores", str(fifo)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "ENABLE_MODEL_RECOMMENDER_V2": "true"})
    assert time.monotonic() - started < 30
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"ConfigError: Snapshot {fifo} is not a regular file (a directory, FIFO or device); "
                             "give the path of a saved snapshot. Save one with 'recsys snapshot --json > FILE'.\n")


_JSON = _nested(st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
                          st.floats(allow_nan=False), st.text(max_size=20)))


@st.composite
def _snapshot_documents(draw: st.DrawFn) -> bytes:
    """A real snapshot's shape with up to three values replaced by anything JSON holds, or raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    entry = {"rank": 1, "model": draw(st.sampled_from(["alpha", "beta", ""])), "utility": draw(st.floats(0, 1)),
             "quality": 0.5, "cost": 0.5, "latency": 0.5, "reliability": 0.5, "cost_per_1k_tokens": 0.002,
             "latency_p95_ms": 900.0, "success_rate": None, "evidence": ["lmsys:text/overall"]}
    doc: dict[str, Any] = {"schema_version": 1, "tasks": {"chat": [entry, {**entry, "model": "delta"}]},
                           "excluded": {"chat": [{"model": "gamma", "reason": "no price"}]}}
    targets = [doc, doc["tasks"], entry, doc["excluded"]["chat"][0]]
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(targets))
        key = draw(st.one_of(st.sampled_from(sorted(target)), st.text(max_size=5)))
        target[key] = draw(_JSON)
    text = json.dumps(doc, allow_nan=True)
    if draw(st.booleans()):
        text = text.replace("0.002", draw(st.sampled_from(["NaN", "-Infinity", "1e400", "-1e400", "1" * 5000])), 1)
    return text.encode()


@settings(max_examples=300, deadline=None)
@given(data=_snapshot_documents())
def test_any_snapshot_file_gives_a_checked_table_or_a_recsys_error(data: bytes) -> None:
    from recommender_core.routing.table import table_from_snapshot

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snapshot.json"
        path.write_bytes(data)
        try:
            table = table_from_snapshot(path)
        except RecsysError as exc:
            assert "\n" not in exc.message or exc.message.count("\n") == exc.message.count("\\n")
            return
    for task in table.tasks.values():
        for row in task.by_utility:
            for value in (row.utility, row.quality, row.cost, row.latency, row.reliability):
                assert math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9
            assert math.isfinite(row.cost_per_1k_tokens) and row.cost_per_1k_tokens >= -1e-9
            assert row.model


# --- telemetry prune ------------------------------------------------------------------------------

def test_an_absurd_retention_is_one_line_and_prunes_nothing(store: Store, database_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 4: `telemetry prune --older-than 99999999999` ended in an OverflowError traceback. Now a
    retention beyond 100 years is a usage error (the setting too: a config error), and nothing is
    deleted; 100 years itself works."""
    from recommender_core.telemetry.writer import write_records

    write_records(store, [TelemetryRecord(event_id="kept", model="gpt-4o", status="success",
                                          started_at=NOW - timedelta(days=400))])
    before = _event_rows(database_url)
    absurd = _cli(database_url, "telemetry", "prune", "--older-than", "99999999999")
    assert (absurd.exit_code, absurd.stdout) == (2, "")
    assert absurd.stderr == ("UsageError: --older-than 99999999999 is more than 36500 days (100 years); give a "
                             "number of days from 1 to 36500.\n")
    monkeypatch.setenv("RECSYS_TELEMETRY_RETENTION_DAYS", "99999999999")
    setting = _cli(database_url, "telemetry", "prune")
    assert (setting.exit_code, setting.stderr) == (
        1, "ConfigError: Invalid setting RECSYS_TELEMETRY_RETENTION_DAYS: Input should be less than or equal to "
           "36500.\n")
    monkeypatch.delenv("RECSYS_TELEMETRY_RETENTION_DAYS")
    century = _cli(database_url, "telemetry", "prune", "--older-than", "36500", "--json")
    assert century.exit_code == 0, century.output
    assert json.loads(century.stdout)["deleted"] == 0
    assert _event_rows(database_url) == before


# --- recsys serve -----------------------------------------------------------------------------------

TOP = "Query parameter 'top' must be a whole number from 1 to 10000, got"
TASK = "Query parameter 'task' must be a task name: printable characters, at most 128 of them."
HOSTILE_QUERIES = [
    ("top=" + "9" * 5000, f"{TOP} '99999999999999999999...'."),
    ("top=10001", f"{TOP} '10001'."),
    ("top=%C2%B2", f"{TOP} '²'."),
    ("task=%00", TASK),
    ("task=%1B%5B31mred", TASK),
    ("task=" + "a" * 129, TASK),
    ("&".join(f"x{i}=1" for i in range(20)), None),
]


@pytest.mark.parametrize(("query", "message"), HOSTILE_QUERIES,
                         ids=["top_5000_digits", "top_too_large", "top_superscript", "task_nul", "task_escape",
                              "task_too_long", "too_many_fields"])
def test_serve_answers_out_of_bound_parameters_with_400(store: Store, query: str, message: str | None) -> None:
    """Case 9: `?top=<5,000 digits>` was a 500 with a traceback, `?task=%00` a 503 "Database error"
    (on Postgres). Every parameter is bounded: a 400 with one JSON message, and the server goes on."""
    from .test_serve import get, make_app, running
    from .test_snapshot import fill

    fill(store)
    with running(make_app(store)) as address:
        reply = get(address, f"/snapshot?{query}")
        assert (reply.status, reply.content_type) == (400, "application/json"), reply.body[:300]
        body = reply.json()
        assert body["error"] == "Bad Request"
        if message is not None:
            assert body["message"] == message
        else:
            assert str(body["message"]).startswith("Malformed query string 'x0=1&x1=1&")
        assert get(address, "/snapshot?task=coding&top=1").status == 200


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_serve_drops_idle_connections_and_logs_disconnects_as_debug_at_most(tmp_path: Path) -> None:
    """Case 9, with the installed entry point: idle connections each held a thread forever, and each
    client that hung up printed a BrokenPipeError/ConnectionResetError traceback (4,210 stderr lines
    for 198 disconnects). Now a connection silent for RECSYS_SERVE_IDLE_TIMEOUT_SECONDS is
    closed and its thread ends, and hang-ups print nothing at the default log level. (4 s here: long
    enough for all 20 idle connections to be open at once on a loaded machine.)"""
    env = {**os.environ, "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'recsys.db'}",
           "RECSYS_SERVE_IDLE_TIMEOUT_SECONDS": "4"}
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent))
    assert recsys is not None
    proc = subprocess.Popen([recsys, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    idle: list[socket.socket] = []
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        address = ("127.0.0.1", port)
        from .test_serve import get

        assert get(address, "/healthz").status == 200
        # The thread count with no connection open (the /healthz one's thread may take a moment to end).
        samples = []
        for _ in range(10):
            samples.append(_threads(proc.pid))
            time.sleep(0.05)
        baseline = min(samples)
        for _ in range(20):
            idle.append(socket.create_connection(address, timeout=20))
        assert _wait_for(lambda: _threads(proc.pid) >= baseline + 20, 3), "one thread per open connection"
        for conn in idle:
            assert conn.recv(1) == b""  # closed by the server (within the 20 s client timeout)
        assert _wait_for(lambda: _threads(proc.pid) <= baseline, 5), "the idle connections' threads ended"

        for i in range(60):
            conn = socket.create_connection(address, timeout=10)
            conn.sendall(b"GET /snapshot HTTP/1.1\r\nHost: x\r\n\r\n" if i % 2 else b"GET /snap")
            # Hang up hard (RST), before the answer: the server's next read or write fails.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
        assert get(address, "/healthz").status == 200  # still serving
    finally:
        for conn in idle:
            conn.close()
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0
    assert stderr == "", stderr[:2000]  # after the start line: nothing (disconnects are debug lines)


# --- credentials: each token only to its own service, over https ----------------------------------

def _lmsys_requests(mirror: str | None, monkeypatch: pytest.MonkeyPatch, **env: str) -> list[tuple[str, str | None]]:
    """(URL, Authorization) of every request one `ingest lmsys` makes through a Hub-compatible
    endpoint: the default Hub (``mirror`` None) or a mirror URL."""
    from recommender_core.config import Settings
    from recommender_core.policy import load_policy
    from recommender_core.sources.base import IngestOptions
    from recommender_core.sources.http import HttpSettings
    from recommender_core.sources.lmsys import LmsysSource
    from recommender_core.sources.lmsys import constants as lmsys

    from .lmsys_data import board_rows, parquet_bytes

    monkeypatch.setenv("HF_TOKEN", "hf_s3cret")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        if request.url.path.endswith("/api/datasets/" + lmsys.DATASET_ID):
            return httpx.Response(200, json={"id": lmsys.DATASET_ID, "sha": "b" * 40})
        return httpx.Response(200, content=parquet_bytes(board_rows()))

    store = Store("sqlite://")
    store.upgrade()
    source = LmsysSource(settings=Settings.load(), policy=load_policy(), transport=httpx.MockTransport(handler),
                         http_settings=HttpSettings(max_attempts=1))
    try:
        result = source.run(store, IngestOptions(mirror=mirror))
    finally:
        source.close()
        store.dispose()
    assert result.rows_accepted == 78
    return seen


@pytest.mark.parametrize(("mirror", "env", "sent"), [
    (None, {}, True),  # the Hub itself, over https
    ("https://hub.mirror.internal", {}, False),  # a mirror the user did not name for the token
    ("http://hub.mirror.internal", {}, False),
    ("https://hub.mirror.internal", {"RECSYS_HF_TOKEN_HOSTS": "hub.mirror.internal"}, True),  # named: it gets it
    ("http://hub.mirror.internal", {"RECSYS_HF_TOKEN_HOSTS": "hub.mirror.internal"}, False),  # never over http
    ("http://huggingface.co", {}, False),  # the Hub's own host, but plain http
    ("https://huggingface.co.evil.example", {}, False),
], ids=["hub", "https_mirror", "http_mirror", "named_https_mirror", "named_http_mirror", "hub_over_http",
        "lookalike_host"])
def test_hf_token_goes_only_to_the_hub_or_a_named_mirror_over_https(
        mirror: str | None, env: dict[str, str], sent: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 6: HF_TOKEN was sent as `Authorization: Bearer` to any --source host, even over plain http."""
    requests = _lmsys_requests(mirror, monkeypatch, **env)
    assert requests and {auth for _, auth in requests} == ({"Bearer hf_s3cret"} if sent else {None}), requests


def test_each_token_goes_to_its_own_service_and_never_follows_a_redirect_off_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GITHUB_TOKEN goes to the GitHub API only, HF_TOKEN to the Hub and its CDN only; a redirect to
    another host drops the header (a token never follows a redirect off its host)."""
    from recommender_core.config import Settings
    from recommender_core.sources.http import HttpSettings, SourceClient

    monkeypatch.setenv("HF_TOKEN", "hf_s3cret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_s3cret")
    settings = Settings.load()
    assert settings.hf_token is not None and settings.github_token is not None
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "https://collector.evil.example/loot"})
        return httpx.Response(200, json={"ok": True})

    def fetch(token: str, url: str) -> str | None:
        with SourceClient(source="test", token=token, transport=httpx.MockTransport(handler),
                          settings=HttpSettings(max_attempts=1)) as client:
            client.get_json(url)
        return seen[url]

    hf, github = settings.hf_token.get_secret_value(), settings.github_token.get_secret_value()
    assert fetch(hf, "https://huggingface.co/api/datasets/x") == "Bearer hf_s3cret"
    assert fetch(hf, "https://cas-bridge.xethub.hf.co/file") == "Bearer hf_s3cret"  # the Hub's CDN
    assert fetch(hf, "https://api.github.com/repos/x") is None
    assert fetch(github, "https://api.github.com/repos/x") == "Bearer ghp_s3cret"
    assert fetch(github, "https://huggingface.co/api/datasets/x") is None
    assert fetch(github, "https://raw.githubusercontent.com/x/y") is None
    assert fetch(hf, "https://huggingface.co/moved") == "Bearer hf_s3cret"
    assert seen["https://collector.evil.example/loot"] is None
