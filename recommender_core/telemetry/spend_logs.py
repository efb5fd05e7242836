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

Every row is checked against the rules of ``validate`` (finite, bounded figures; no call that
ends before it starts or starts in the future): a row that breaks one is not stored and is counted
per reason in the run (``rows_rejected``, ``details["rejected"]``), and the run goes on.

Incremental: the cursor is the latest ``startTime`` imported (of stored rows only: a rejected,
future-dated row cannot carry it past every real row), kept in ``source_state`` per proxy
database. Each run re-reads ``OVERLAP`` before the cursor, because the proxy commits its spend logs
in batches and a row can land after later-starting ones; rows already stored are skipped by their
event id (idempotent). ``since`` replaces the cursor for one run.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from ..errors import RejectedRow, SourceError, SourceSchemaError
from ..redact import first_line, redact_url
from ..store import Store
from ..store.runs import finish_ingest_run, ingest_job
from ..store.tables import SourceState, TelemetryEvent
from .events import TelemetryRecord, attempt_event_id, attempt_position, attribute_task, clean_tags, clean_text
from .rollups import catch_up_rollups
from .validate import CLOCK_SKEW, EARLIEST, check_record, figure, token_count, utc_time
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

log = logging.getLogger("recsys.telemetry")

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
    rejected_reasons: Mapping[str, int] = field(default_factory=dict)  # reason -> rows (validate.py)


def record_from_spend_log(row: Mapping[str, Any], *, now: datetime) -> TelemetryRecord:
    """Map one spend-log row (the columns of ``_QUERY``) to a record checked by
    ``validate.check_record`` against ``now``; ``RejectedRow`` names the rule it breaks."""
    request_id = clean_text(row.get("request_id"))
    if request_id is None:
        raise RejectedRow("no event id", field="event_id", source=SOURCE)
    # Prisma DateTime is timestamp(3) without time zone, written in UTC.
    started = utc_time(row.get("startTime"), "started_at")
    if started is None:
        raise RejectedRow("no started_at", field="started_at", source=SOURCE)
    ended = utc_time(row.get("endTime"), "ended_at")
    first = utc_time(row.get("completionStartTime"), "ttft_ms")
    status = "failure" if (row.get("status") or "success") == "failure" else "success"
    tags = clean_tags(row.get("request_tags"))
    latency = (ended - started).total_seconds() * 1000 if ended is not None else None
    ttft = None
    if first is not None and ended is not None and started <= first < ended:
        ttft = (first - started).total_seconds() * 1000
    cache_hit = (clean_text(row.get("cache_hit")) or "").lower() == "true"
    model_group = clean_text(row.get("model_group"))
    task, task_source = attribute_task(
        spend_logs_metadata={"task": row.get("spend_logs_task")}, tags=tags,
        model_groups=(model_group, row.get("original_model_group")))
    record = TelemetryRecord(
        event_id=attempt_event_id(request_id, call_id=clean_text(row.get("litellm_call_id")),
                                  fallback_depth=attempt_position(row.get("attempted_fallbacks")),
                                  retry=attempt_position(row.get("attempted_retries"))),
        origin="spend_logs",
        # The table has no trace id (session_id is a conversation id, not one request's attempts).
        trace_id=None,
        model_group=model_group,
        model=clean_text(row.get("model")) or "",
        provider=clean_text(row.get("custom_llm_provider"), 64),
        task=task,
        task_source=task_source,
        status=status,
        error_class=(clean_text(row.get("error_class"), 128) or "UnknownError") if status == "failure" else None,
        started_at=started,
        ended_at=ended,
        latency_ms=latency,
        ttft_ms=ttft,
        prompt_tokens=token_count(row.get("prompt_tokens"), "prompt_tokens"),
        completion_tokens=token_count(row.get("completion_tokens"), "completion_tokens"),
        cost=figure(row.get("spend"), "cost"),
        cache_hit=cache_hit,
        tags=tags,
    )
    return check_record(record, now=now)


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


def _usable_cursor(session: Session, value: str | None, *, now: datetime) -> tuple[datetime | None, bool]:
    """The stored cursor, and whether it had to be repaired.

    A cursor this version stores is the start of a stored, checked event. One that is unreadable or
    lies in the future was left by an older version (a future-dated row carried it there, and every
    import after it read nothing): it is replaced by the latest start of the spend-log events stored
    (re-reading from there is idempotent), or by none.
    """
    if value is None:
        return None, False
    try:
        cursor: datetime | None = datetime.fromisoformat(value)
    except ValueError:
        cursor = None
    if cursor is not None and cursor.tzinfo is not None and EARLIEST <= cursor <= now + CLOCK_SKEW:
        return cursor, False
    latest = session.execute(
        sa.select(sa.func.max(col(TelemetryEvent.started_at)))
        .where(col(TelemetryEvent.origin) == "spend_logs", col(TelemetryEvent.started_at) <= now + CLOCK_SKEW)
    ).scalar()
    log.warning("ingest litellm: the stored cursor %s is not a usable time (left by an older version); "
                "importing from %s instead", value[:40], latest.isoformat() if latest else "the first row")
    return latest, True


def ingest_spend_logs(
    store: Store, *, dsn: str, since: datetime | None = None, keep_runs: int = 30
) -> SpendLogsResult:
    """Import new spend-log rows as telemetry events under the ``ingest-litellm`` job lock.

    The run is recorded as an ingest run of source ``litellm``; the cursor moves only when every
    page was written, so a failed run is simply retried by the next one. The hourly rollups are
    refreshed afterwards.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    key = _cursor_key(dsn)
    with ingest_job(store, job=JOB, source=SOURCE, keep_runs=keep_runs) as handle:
        with store.session() as session:
            state = session.get(SourceState, (SOURCE, key))
            stored, repaired = _usable_cursor(session, state.value if state is not None else None,
                                              now=store.clock.now())
        start = since if since is not None else (stored - OVERLAP if stored is not None else None)
        read = inserted = 0
        rejected: Counter[str] = Counter()
        cursor = stored
        for page in _pages(dsn, start or datetime(1970, 1, 1, tzinfo=UTC)):
            # "now" as the page was read: no row of it can have started later (bar the allowed skew).
            page_now = store.clock.now()
            records = []
            for row in page:
                try:
                    record = record_from_spend_log(row, now=page_now)
                except RejectedRow as exc:
                    rejected[exc.reason] += 1  # never stored, and never moves the cursor
                    continue
                records.append(record)
                if cursor is None or record.started_at > cursor:
                    cursor = record.started_at
            read += len(page)
            inserted += write_records(store, records, claim=handle.claim)
        rows_rejected = sum(rejected.values())
        if rows_rejected:
            log.info("ingest litellm: %d spend-log rows rejected (%s)", rows_rejected,
                        ", ".join(f"{reason}: {n}" for reason, n in rejected.most_common()))
        handle.source_version = cursor.isoformat() if cursor is not None else None
        handle.rows_accepted = inserted
        handle.rows_rejected = rows_rejected
        handle.details = {"read": read, "skipped_existing": read - rows_rejected - inserted,
                          "rejected": dict(rejected), "start": start.isoformat() if start else None}
        now = store.clock.now()
        with store.session() as session:
            if cursor is not None and (cursor != stored or repaired):
                session.merge(SourceState(source=SOURCE, key=key, value=cursor.isoformat(), updated_at=now))
            elif cursor is None and repaired:
                session.execute(sa.delete(SourceState).where(col(SourceState.source) == SOURCE,
                                                             col(SourceState.key) == key))
            finish_ingest_run(session, handle, now=now)
        run_id = handle.run_id
    catch_up_rollups(store)
    return SpendLogsResult(run_id=run_id, read=read, inserted=inserted, skipped=read - rows_rejected - inserted,
                           rejected=rows_rejected, rejected_reasons=dict(rejected), start=start, cursor=cursor)
