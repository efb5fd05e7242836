"""``recsys ingest litellm``: a real LiteLLM_SpendLogs table (SQL transcribed from litellm's
schema.prisma) in the test Postgres, imported into a store on each backend."""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.store import Store
from recommender_core.store.tables import IngestRun, SourceState, TelemetryEvent, TelemetryRollup
from recommender_core.telemetry.spend_logs import COLUMNS_READ, SPEND_LOGS_TABLE, ingest_spend_logs

from .conftest import store_at

runner = CliRunner()

# Transcribed from `model LiteLLM_SpendLogs` in litellm/proxy/schema.prisma (litellm 1.110.2) the way
# Prisma migrates it to Postgres: String -> TEXT, Float -> DOUBLE PRECISION, Int -> INTEGER,
# DateTime -> TIMESTAMP(3) (no time zone, UTC), Json -> JSONB; `?` -> nullable.
SPEND_LOGS_DDL = """
CREATE TABLE "LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL,
    "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '',
    "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "request_duration_ms" INTEGER,
    "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '',
    "model_id" TEXT DEFAULT '',
    "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '',
    "api_base" TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{}',
    "cache_hit" TEXT DEFAULT '',
    "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]',
    "team_id" TEXT,
    "organization_id" TEXT,
    "end_user" TEXT,
    "requester_ip_address" TEXT,
    "messages" JSONB DEFAULT '{}',
    "response" JSONB DEFAULT '{}',
    "session_id" TEXT,
    "status" TEXT,
    "mcp_namespaced_tool_name" TEXT,
    "billing_agent_id" TEXT,
    "agent_id" TEXT,
    "proxy_server_request" JSONB DEFAULT '{}',
    "litellm_call_id" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY ("request_id")
);
CREATE INDEX "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs"("startTime");
CREATE INDEX "LiteLLM_SpendLogs_startTime_request_id_idx" ON "LiteLLM_SpendLogs"("startTime", "request_id");
CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs"("end_user");
CREATE INDEX "LiteLLM_SpendLogs_session_id_idx" ON "LiteLLM_SpendLogs"("session_id");
CREATE INDEX "LiteLLM_SpendLogs_litellm_call_id_idx" ON "LiteLLM_SpendLogs"("litellm_call_id");
CREATE INDEX "LiteLLM_SpendLogs_api_key_startTime_idx" ON "LiteLLM_SpendLogs"("api_key", "startTime");
"""

SECRET = "TOP-SECRET-PROMPT-TEXT"


def _prisma_model(name: str) -> dict[str, str]:
    """Field name -> Prisma type (with `?` when optional) of one model in the installed schema.prisma."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    text = (Path(spec.origin).parent / "proxy" / "schema.prisma").read_text()
    block = re.search(rf"^model {name} \{{\n(.*?)^\}}", text, re.S | re.M)
    assert block is not None, f"model {name} not found in schema.prisma"
    fields = {}
    for line in block.group(1).splitlines():
        match = re.match(r"\s*(\w+)\s+(\w+\??)", line)
        if match and not line.strip().startswith("@@"):
            fields[match.group(1)] = match.group(2)
    return fields


def test_every_column_the_importer_reads_exists_with_a_compatible_type() -> None:
    fields = _prisma_model(SPEND_LOGS_TABLE)
    for column, expected in COLUMNS_READ.items():
        assert column in fields, f"schema.prisma has no {SPEND_LOGS_TABLE}.{column}"
        actual = fields[column]
        assert actual.rstrip("?") == expected.rstrip("?"), f"{column}: {actual} in schema.prisma, expected {expected}"
        # A column the importer treats as required must not have become optional.
        assert expected.endswith("?") or not actual.endswith("?"), f"{column} is now optional: {actual}"


def test_the_test_table_transcribes_every_prisma_column() -> None:
    declared = set(re.findall(r'^\s+"(\w+)" ', SPEND_LOGS_DDL, re.M))
    assert declared == set(_prisma_model(SPEND_LOGS_TABLE))


@pytest.fixture
def spend_logs_dsn(postgres_server: str) -> Iterator[str]:
    """A fresh Postgres database holding an empty LiteLLM_SpendLogs table, like a proxy's."""
    import psycopg
    from psycopg import sql

    admin = postgres_server.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"litellm_proxy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute(SPEND_LOGS_DDL)
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _insert(dsn: str, rows: list[dict[str, Any]]) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(dsn) as conn:
        for row in rows:
            values = {"call_type": "acompletion", "api_key": "hashed", "messages": Jsonb([{"content": SECRET}]),
                      "response": Jsonb({"choices": [{"message": {"content": SECRET}}]}),
                      "proxy_server_request": Jsonb({"body": SECRET}), **row}
            for key in ("metadata", "request_tags"):
                if key in values:
                    values[key] = Jsonb(values[key])
            columns = ", ".join(f'"{c}"' for c in values)
            marks = ", ".join(["%s"] * len(values))
            conn.execute(f'INSERT INTO "LiteLLM_SpendLogs" ({columns}) VALUES ({marks})',  # noqa: S608 - quoted constant column names; values are bound
                         list(values.values()))


T0 = datetime(2026, 11, 26, 10, 0)  # naive UTC, as Prisma stores it


def _row(request_id: str, offset_s: float, **extra: Any) -> dict[str, Any]:
    start = T0 + timedelta(seconds=offset_s)
    base: dict[str, Any] = {
        "request_id": request_id, "startTime": start, "endTime": start + timedelta(milliseconds=800),
        "model": "gpt-4o-2024-08-06", "model_group": "gpt-4o", "custom_llm_provider": "openai",
        "spend": 0.0042, "prompt_tokens": 400, "completion_tokens": 200, "total_tokens": 600,
        "status": "success", "cache_hit": "False", "request_tags": [], "metadata": {"user_api_key": "hashed"},
    }
    base.update(extra)
    return base


def _events(store: Store) -> dict[str, TelemetryEvent]:
    with store.session() as session:
        return {e.event_id: e for e in session.execute(sa.select(TelemetryEvent)).scalars()}


@pytest.mark.postgres
def test_import_maps_fields_and_is_incremental_and_idempotent(store: Store, spend_logs_dsn: str) -> None:
    _insert(spend_logs_dsn, [
        _row("req-ok", 0, request_tags=["task:coding", "team:a"], session_id="sess-1"),
        _row("req-stream", 1, completionStartTime=T0 + timedelta(seconds=1, milliseconds=150)),
        _row("req-fail", 2, status="failure", spend=0.0, prompt_tokens=0, completion_tokens=0,
             metadata={"error_information": {"error_class": "RateLimitError", "error_message": SECRET}}),
        _row("req-cache", 3, cache_hit="True", spend=0.0, metadata={"requester_metadata": {"task": "math"}}),
        _row("req-no-model", 4, model=""),  # the column's default: not a usable event
    ])
    # The import runs an hour after the calls by its clock, so the rollups' windows hold them on any date.
    store = store_at(store, FixedClock(T0.replace(tzinfo=UTC) + timedelta(hours=1)))
    first = ingest_spend_logs(store, dsn=spend_logs_dsn)
    assert (first.read, first.inserted, first.skipped, first.rejected) == (5, 4, 0, 1)
    events = _events(store)
    ok = events["req-ok"]
    assert (ok.origin, ok.model, ok.model_group, ok.provider, ok.task, ok.status) == (
        "spend_logs", "gpt-4o-2024-08-06", "gpt-4o", "openai", "coding", "success")
    assert ok.started_at == T0.replace(tzinfo=UTC)
    assert ok.latency_ms == pytest.approx(800.0)
    assert (ok.prompt_tokens, ok.completion_tokens, ok.cost) == (400, 200, 0.0042)
    assert ok.tags == ["task:coding", "team:a"] and ok.trace_id is None and ok.ttft_ms is None
    assert events["req-stream"].ttft_ms == pytest.approx(150.0)
    assert (events["req-fail"].status, events["req-fail"].error_class) == ("failure", "RateLimitError")
    assert events["req-cache"].cache_hit is True and events["req-cache"].task == "math"
    with store.session() as session:
        dump = json.dumps([e.model_dump(mode="json") for e in session.execute(sa.select(TelemetryEvent)).scalars()])
        run = session.execute(sa.select(IngestRun).where(IngestRun.source == "litellm")).scalars().one()
        rollups = session.execute(sa.select(TelemetryRollup)).scalars().all()
        cursor = session.execute(sa.select(SourceState).where(SourceState.source == "litellm")).scalars().one()
    assert SECRET not in dump
    assert (run.status, run.rows_accepted, run.rows_rejected) == ("success", 4, 1)
    now = store.clock.now()
    assert run.started_at == run.finished_at == cursor.updated_at == now  # every time written is the clock's
    assert rollups and {r.computed_at for r in rollups} == {now}
    assert {(r.model, r.calls) for r in rollups if r.window_hours == 24 and r.task is None} == {("gpt-4o", 4)}

    again = ingest_spend_logs(store, dsn=spend_logs_dsn)
    assert again.inserted == 0 and again.read == 5  # the overlap window re-reads, request_id dedupes

    # A row committed late with an earlier start (inside the overlap), and a new one.
    _insert(spend_logs_dsn, [_row("req-late", 2.5), _row("req-new", 60)])
    third = ingest_spend_logs(store, dsn=spend_logs_dsn)
    assert third.inserted == 2
    assert third.cursor == (T0 + timedelta(seconds=60)).replace(tzinfo=UTC)
    assert len(_events(store)) == 6


@pytest.mark.postgres
def test_cli_since_json_and_errors(database_url: str, spend_logs_dsn: str) -> None:
    _insert(spend_logs_dsn, [_row("old", 0), _row("recent", 3600)])
    assert runner.invoke(app, ["--database-url", database_url, "db", "upgrade"]).exit_code == 0
    since = (T0 + timedelta(minutes=30)).isoformat() + "Z"
    result = runner.invoke(app, ["--database-url", database_url, "ingest", "litellm",
                                 "--spend-logs-url", spend_logs_dsn, "--since", since, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["read"], doc["inserted"]) == (1, 1)

    bad = runner.invoke(app, ["--database-url", database_url, "ingest", "litellm",
                              "--spend-logs-url", spend_logs_dsn, "--since", "yesterday"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("UsageError: --since 'yesterday' is not an ISO 8601 time")

    refused = runner.invoke(app, ["--database-url", database_url, "ingest", "litellm",
                                  "--spend-logs-url", "postgresql://proxy:hunter2@127.0.0.1:1/litellm"])
    assert refused.exit_code == 1
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(
        "SourceError: Cannot connect to the LiteLLM proxy database at postgresql://proxy:***@127.0.0.1:1/litellm")
    assert "hunter2" not in refused.output

    no_table = runner.invoke(app, ["--database-url", database_url, "ingest", "litellm",
                                   "--spend-logs-url", database_url])
    assert no_table.exit_code == 1
    assert no_table.stderr.startswith('SourceSchemaError: The database at ') if database_url.startswith(
        "postgresql") else no_table.stderr.startswith("SourceError: ")
    store = Store(database_url)
    try:
        with store.session() as session:
            statuses = session.execute(sa.select(IngestRun.status).order_by(IngestRun.id)).scalars().all()
    finally:
        store.dispose()
    assert statuses == ["success", "failed", "failed"]  # failed runs recorded, the good data kept
    assert len(_events_of(database_url)) == 1


def _events_of(url: str) -> dict[str, TelemetryEvent]:
    store = Store(url)
    try:
        return _events(store)
    finally:
        store.dispose()
