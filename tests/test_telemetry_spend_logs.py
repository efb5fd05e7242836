"""``recsys ingest litellm``: a real LiteLLM_SpendLogs table (SQL transcribed from litellm's
schema.prisma) in the test Postgres, imported into a store on each backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from recsys_cli._base import AppState
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.store import Store
from recommender_core.store.tables import IngestRun, SourceState, TelemetryEvent, TelemetryRollup
from recommender_core.telemetry.spend_logs import COLUMNS_READ, SPEND_LOGS_TABLE, ingest_spend_logs

from ._spend_logs import ddl_columns, prisma_model
from .conftest import store_at

runner = CliRunner()

SECRET = "TOP-SECRET-PROMPT-TEXT"


def test_every_column_the_importer_reads_exists_with_a_compatible_type() -> None:
    fields = prisma_model(SPEND_LOGS_TABLE)
    for column, expected in COLUMNS_READ.items():
        assert column in fields, f"schema.prisma has no {SPEND_LOGS_TABLE}.{column}"
        actual = fields[column]
        assert actual.rstrip("?") == expected.rstrip("?"), f"{column}: {actual} in schema.prisma, expected {expected}"
        # A column the importer treats as required must not have become optional.
        assert expected.endswith("?") or not actual.endswith("?"), f"{column} is now optional: {actual}"


def test_the_test_table_transcribes_every_prisma_column() -> None:
    assert set(ddl_columns()) == set(prisma_model(SPEND_LOGS_TABLE))


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
        _row("req-cache", 3, cache_hit="True", spend=0.0, metadata={"spend_logs_metadata": {"task": "math"}}),
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
    assert (ok.task_source, events["req-cache"].task_source) == ("request_tag", "spend_logs_metadata")
    with store.session() as session:
        dump = json.dumps([e.model_dump(mode="json") for e in session.execute(sa.select(TelemetryEvent)).scalars()])
        run = session.execute(sa.select(IngestRun).where(IngestRun.source == "litellm")).scalars().one()
        rollups = session.execute(sa.select(TelemetryRollup)).scalars().all()
        cursor = session.execute(sa.select(SourceState).where(SourceState.source == "litellm")).scalars().one()
    assert SECRET not in dump
    assert (run.status, run.rows_accepted, run.rows_rejected) == ("success", 4, 1)
    now = store.clock.now()
    assert run.started_at == run.finished_at == cursor.updated_at == now  # every time written is the clock's
    assert rollups and {r.computed_at for r in rollups} == {now}  # caught up by the import
    assert sum(r.calls for r in rollups if r.model == "gpt-4o" and r.all_tasks and r.span_hours == 1) == 4

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
                                 "--spend-logs-url", spend_logs_dsn, "--since", since, "--json"], obj=_at(T0))
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


def _at(naive_utc: datetime) -> AppState:
    """CLI state whose clock reads two hours after ``naive_utc``: the rows are in the past on any date."""
    return AppState(clock=FixedClock(naive_utc.replace(tzinfo=UTC) + timedelta(hours=2)))


def _events_of(url: str) -> dict[str, TelemetryEvent]:
    store = Store(url)
    try:
        return _events(store)
    finally:
        store.dispose()


@pytest.mark.postgres
def test_the_task_comes_from_what_the_proxy_keeps_and_the_rule_is_stored(store: Store, spend_logs_dsn: str) -> None:
    """spend_logs_metadata.task, else a task: request tag, else the task/<name> alias the client called
    (model_group, or original_model_group after a fallback). The proxy does not keep the client's
    requester_metadata in SpendLogs, so a task there is not read."""
    _insert(spend_logs_dsn, [
        _row("documented", 0, request_tags=["task:coding"], model_group="task/chat",
             metadata={"spend_logs_metadata": {"task": "math", "team": "x"}}),
        _row("tagged", 1, request_tags=["team:a", "task:coding"], model_group="task/chat"),
        _row("alias", 2, model_group="task/long_context"),
        _row("fell-back", 3, model_group="claude-sonnet-4-5",
             metadata={"original_model_group": "task/creative_writing", "attempted_fallbacks": 1}),
        _row("requester-only", 4, metadata={"requester_metadata": {"task": "math"}}),
        _row("plain", 5, model_group="gpt-4o"),
    ])
    ingest_spend_logs(store_at(store, FixedClock(T0.replace(tzinfo=UTC) + timedelta(hours=1))), dsn=spend_logs_dsn)
    events = _events(store)
    assert {k: (e.task, e.task_source) for k, e in events.items()} == {
        "documented": ("math", "spend_logs_metadata"),
        "tagged": ("coding", "request_tag"),
        "alias": ("long_context", "model_group_alias"),
        "fell-back": ("creative_writing", "model_group_alias"),
        "requester-only": (None, None),
        "plain": (None, None),
    }


@pytest.mark.postgres
def test_attempts_of_one_proxy_request_stay_apart(store: Store, spend_logs_dsn: str) -> None:
    """A proxy gives every attempt of a request one litellm_call_id; a failed attempt's request_id is
    that id. The attempt's position (attempted_fallbacks, attempted_retries) keeps them apart, with the
    same key the callback computes; a cache hit's id drops the time the proxy stamped on it."""
    _insert(spend_logs_dsn, [
        _row("call-1", 0, status="failure", metadata={"litellm_call_id": "call-1", "attempted_fallbacks": 0,
                                                      "attempted_retries": 0}),
        _row("chatcmpl-9", 1, metadata={"litellm_call_id": "call-1", "attempted_fallbacks": 1,
                                        "attempted_retries": 0}),
        _row("chatcmpl-9_cache_hit1795855623.8772945", 2, cache_hit="True",
             metadata={"litellm_call_id": "call-2", "attempted_fallbacks": 0}),
        # A request whose fallback failed too: the proxy's failure row is its last attempt.
        _row("call-3", 3, status="failure", metadata={"litellm_call_id": "call-3", "attempted_fallbacks": 1,
                                                      "attempted_retries": 2}),
    ])
    ingest_spend_logs(store_at(store, FixedClock(T0.replace(tzinfo=UTC) + timedelta(hours=1))), dsn=spend_logs_dsn)
    assert set(_events(store)) == {"call-1", "chatcmpl-9", "chatcmpl-9#cache:call-2", "call-3#1.2"}


def test_the_dsn_comes_from_the_environment(store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """RECSYS_SPEND_LOGS_URL is read by Settings; with neither it nor --spend-logs-url: exit 2, one line."""
    missing = runner.invoke(app, ["--database-url", database_url, "ingest", "litellm"])
    assert missing.exit_code == 2
    assert missing.stderr == ("UsageError: No LiteLLM proxy database given: set RECSYS_SPEND_LOGS_URL to its "
                              "DSN (or pass --spend-logs-url for local use).\n")
    monkeypatch.setenv("RECSYS_SPEND_LOGS_URL", "postgresql://proxy:hunter2@127.0.0.1:1/litellm")
    refused = runner.invoke(app, ["--database-url", database_url, "ingest", "litellm"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "SourceError: Cannot connect to the LiteLLM proxy database at postgresql://proxy:***@127.0.0.1:1/litellm")
    assert "hunter2" not in refused.output


def test_the_cronjob_passes_the_dsn_through_the_environment_not_argv() -> None:
    """No secret in argv (readable by any process on the node): the ingest-litellm CronJob's args name
    no variable, and RECSYS_SPEND_LOGS_URL comes from the Secret."""
    import yaml

    from ._deploy import parse_command
    from .conftest import REPO_ROOT

    docs = list(yaml.safe_load_all((REPO_ROOT / "k8s" / "base" / "cronjobs.yaml").read_text()))
    (cronjob,) = [d for d in docs if d and d["metadata"]["name"] == "recsys-ingest-litellm"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert parse_command(container["args"]) == ("ingest", "litellm")
    assert not any("$(" in arg or "://" in arg for arg in container["args"]), container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RECSYS_SPEND_LOGS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "recsys-litellm-spend-logs",
                                                                          "key": "url"}
