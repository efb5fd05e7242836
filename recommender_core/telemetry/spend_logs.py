"""``recsys ingest litellm``: a LiteLLM proxy's ``LiteLLM_SpendLogs`` table into telemetry.

The proxy writes one row per request into its own Postgres database (Prisma model
``LiteLLM_SpendLogs`` in ``litellm/proxy/schema.prisma``). The importer reads only the columns in
``COLUMNS_READ`` (never ``messages``, ``response`` or ``proxy_server_request``), in pages ordered by
``("startTime", request_id)``.

Task attribution uses only what the proxy keeps in ``metadata`` (its ``SpendLogsMetadata``; the
client's ``requester_metadata`` is not kept): ``spend_logs_metadata.task`` (the documented way to
tag a request), else a ``task:<name>`` request tag, else the ``task/<name>`` alias in
``model_group`` (or in ``original_model_group``, the group asked for before a fallback); the rule
used is stored with the event (``TaskSource``).

One attempt, one event: the event id is ``attempt_event_id`` of the row's ``request_id`` (the
response id, else the call id), the key ``TelemetryCallback`` computes for the same attempt, so a
proxy that runs the callback and is also imported stores each attempt once.

Incremental: the cursor is the latest ``startTime`` imported, kept in ``source_state`` per proxy
database. Each run re-reads ``OVERLAP`` before the cursor, because the proxy commits its spend logs
in batches and a row can land after later-starting ones; rows already stored are skipped by their
event id (idempotent). ``since`` replaces the cursor for one run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import SourceError, SourceSchemaError
from ..redact import first_line, redact_url
from ..store import Store
from ..store.runs import finish_ingest_run, ingest_job
from ..store.tables import SourceState
from .events import TelemetryRecord, attempt_event_id, attempt_position, attribute_task, clean_tags
from .rollups import refresh_rollups
from .writer import write_records

__all__ = [
    "COLUMNS_READ",
    "JOB",
    "METADATA_READ",
    "SOURCE",
    "SPEND_LOGS_TABLE",
    "SpendLogsResult",
    "ingest_spend_logs",
    "record_from_spend_log",
]

SOURCE = "litellm"
JOB = "ingest-litellm"
SPEND_LOGS_TABLE = "LiteLLM_SpendLogs"
# Prisma types of every column read; a test checks them against the installed schema.prisma.
COLUMNS_READ: dict[str, str] = {
    "request_id": "String",
    "model": "String",
    "model_group": "String?",
    "custom_llm_provider": "String?",
    "startTime": "DateTime",
    "endTime": "DateTime",
    "completionStartTime": "DateTime?",
    "spend": "Float",
    "prompt_tokens": "Int",
    "completion_tokens": "Int",
    "cache_hit": "String?",
    "request_tags": "Json?",
    "status": "String?",
    "metadata": "Json?",
}
PAGE_SIZE = 5_000
OVERLAP = timedelta(minutes=15)

# The keys of the `metadata` JSON that are read, as JSON paths; the SQL reads only these, so no other
# metadata reaches this process. The first key of each path is a field of LiteLLM's SpendLogsMetadata
# (a test checks it against the installed litellm's types).
METADATA_READ: dict[str, tuple[str, ...]] = {
    "error_class": ("error_information", "error_class"),
    "spend_logs_task": ("spend_logs_metadata", "task"),
    "original_model_group": ("original_model_group",),
    "litellm_call_id": ("litellm_call_id",),
    "attempted_fallbacks": ("attempted_fallbacks",),
    "attempted_retries": ("attempted_retries",),
}
_METADATA_COLUMNS = ",\n       ".join(
    f"metadata #>> '{{{','.join(path)}}}' AS {alias}" for alias, path in METADATA_READ.items())
_QUERY = f"""
SELECT request_id, model, model_group, custom_llm_provider, "startTime", "endTime",
       "completionStartTime", spend, prompt_tokens, completion_tokens, cache_hit, request_tags, status,
       {_METADATA_COLUMNS}
FROM "{SPEND_LOGS_TABLE}"
WHERE ("startTime", request_id) > (%(start)s, %(after_id)s)
ORDER BY "startTime", request_id
LIMIT %(limit)s
"""  # noqa: S608 - the table name and JSON paths are constants; every value is a bound parameter


@dataclass(frozen=True)
class SpendLogsResult:
    """What one import did."""

    run_id: int
    read: int
    inserted: int
    skipped: int
    rejected: int
    start: datetime | None
    cursor: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # Prisma DateTime is timestamp(3) without time zone, written in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def record_from_spend_log(row: dict[str, Any]) -> TelemetryRecord | None:
    """Map one spend-log row (the columns of ``_QUERY``) to a record; None without id or model."""
    request_id = str(row.get("request_id") or "").strip()
    model = str(row.get("model") or "").strip()[:256]
    started = _utc(row.get("startTime"))
    if not request_id or not model or started is None:
        return None
    ended = _utc(row.get("endTime"))
    first = _utc(row.get("completionStartTime"))
    status = "failure" if (row.get("status") or "success") == "failure" else "success"
    tags = clean_tags(row.get("request_tags"))
    latency = (ended - started).total_seconds() * 1000 if ended is not None else None
    ttft = None
    if first is not None and ended is not None and started <= first < ended:
        ttft = (first - started).total_seconds() * 1000
    cache_hit = str(row.get("cache_hit") or "").strip().lower() == "true"
    spend = row.get("spend")
    model_group = str(row["model_group"])[:256] if row.get("model_group") else None
    task, task_source = attribute_task(
        spend_logs_metadata={"task": row.get("spend_logs_task")}, tags=tags,
        model_groups=(model_group, row.get("original_model_group")))
    call_id = str(row.get("litellm_call_id") or "").strip() or None
    return TelemetryRecord(
        event_id=attempt_event_id(request_id, call_id=call_id,
                                  fallback_depth=attempt_position(row.get("attempted_fallbacks")),
                                  retry=attempt_position(row.get("attempted_retries"))),
        origin="spend_logs",
        # The table has no trace id (session_id is a conversation id, not one request's attempts).
        trace_id=None,
        model_group=model_group,
        model=model,
        provider=(str(row["custom_llm_provider"])[:64] if row.get("custom_llm_provider") else None),
        task=task,
        task_source=task_source,
        status=status,
        error_class=((row.get("error_class") or "UnknownError")[:128] if status == "failure" else None),
        started_at=started,
        ended_at=ended,
        latency_ms=max(latency, 0.0) if latency is not None else None,
        ttft_ms=ttft,
        prompt_tokens=row.get("prompt_tokens"),
        completion_tokens=row.get("completion_tokens"),
        cost=float(spend) if spend is not None else None,
        cache_hit=cache_hit,
        tags=tags,
    )


def _cursor_key(dsn: str) -> str:
    """One cursor per proxy database, keyed without its password."""
    return "cursor:" + hashlib.sha256(redact_url(dsn).encode()).hexdigest()[:16]


def _libpq(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    if sep and scheme.lower() in ("postgresql+psycopg", "postgres"):
        return f"postgresql://{rest}"
    return dsn


def _pages(dsn: str, start: datetime) -> Iterator[list[dict[str, Any]]]:
    import psycopg
    from psycopg.rows import dict_row

    shown = redact_url(dsn)
    try:
        conn = psycopg.connect(_libpq(dsn), connect_timeout=10, row_factory=dict_row)
    except psycopg.Error as exc:
        raise SourceError(f"Cannot connect to the LiteLLM proxy database at {shown}: "
                          f"{first_line(exc)}. "
                          "Check the DSN and that the database accepts connections.") from exc
    with conn:
        # A read-only transaction per run: a consistent view, and no way to write to the proxy's database.
        conn.read_only = True
        start_naive = start.astimezone(UTC).replace(tzinfo=None)
        after_id = ""
        while True:
            try:
                rows = conn.execute(_QUERY, {"start": start_naive, "after_id": after_id,
                                             "limit": PAGE_SIZE}).fetchall()
            except psycopg.errors.UndefinedTable as exc:
                raise SourceSchemaError(f"The database at {shown} has no \"{SPEND_LOGS_TABLE}\" table. "
                                        "Point the DSN at the LiteLLM proxy's database.") from exc
            except psycopg.errors.UndefinedColumn as exc:
                raise SourceSchemaError(f"\"{SPEND_LOGS_TABLE}\" at {shown} lacks a column recsys reads "
                                        f"({first_line(exc)}); "
                                        "is the proxy's litellm version supported?") from exc
            except psycopg.Error as exc:
                raise SourceError(f"Reading \"{SPEND_LOGS_TABLE}\" at {shown} failed: "
                                  f"{first_line(exc)}") from exc
            if not rows:
                return
            yield rows
            if len(rows) < PAGE_SIZE:
                return
            start_naive, after_id = rows[-1]["startTime"], rows[-1]["request_id"]


def ingest_spend_logs(
    store: Store, *, dsn: str, since: datetime | None = None, keep_runs: int = 30
) -> SpendLogsResult:
    """Import new spend-log rows as telemetry events under the ``ingest-litellm`` job lock.

    The run is recorded as an ingest run of source ``litellm``; the cursor moves only when every
    page was written, so a failed run is simply retried by the next one. The stored rollups are
    refreshed afterwards.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    key = _cursor_key(dsn)
    with ingest_job(store, job=JOB, source=SOURCE, keep_runs=keep_runs) as handle:
        with store.session() as session:
            state = session.get(SourceState, (SOURCE, key))
            stored = datetime.fromisoformat(state.value) if state is not None else None
        start = since if since is not None else (stored - OVERLAP if stored is not None else None)
        read = inserted = rejected = 0
        cursor = stored
        for page in _pages(dsn, start or datetime(1970, 1, 1, tzinfo=UTC)):
            records = []
            for row in page:
                record = record_from_spend_log(row)
                if record is None:
                    rejected += 1
                    continue
                records.append(record)
                if cursor is None or record.started_at > cursor:
                    cursor = record.started_at
            read += len(page)
            inserted += write_records(store, records, claim=handle.claim)
        handle.source_version = cursor.isoformat() if cursor is not None else None
        handle.rows_accepted = inserted
        handle.rows_rejected = rejected
        handle.details = {"read": read, "skipped_existing": read - rejected - inserted,
                          "start": start.isoformat() if start else None}
        now = store.clock.now()
        with store.session() as session:
            if cursor is not None and cursor != stored:
                session.merge(SourceState(source=SOURCE, key=key, value=cursor.isoformat(), updated_at=now))
            finish_ingest_run(session, handle, now=now)
        run_id = handle.run_id
    refresh_rollups(store)
    return SpendLogsResult(run_id=run_id, read=read, inserted=inserted, skipped=read - rejected - inserted,
                           rejected=rejected, start=start, cursor=cursor)
