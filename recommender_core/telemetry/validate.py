"""The rules every telemetry event must meet before it is stored: one place, for both edges.

The LiteLLM callback (``events.record_from_standard_logging``) and the SpendLogs import
(``spend_logs.record_from_spend_log``) both build a ``TelemetryRecord`` with the converters below
and hand it to ``check_record``. A value that breaks a rule rejects the whole event with
``RejectedRow``, whose ``reason`` names the field and the rule (never the value): the callback counts
it per reason, the import counts it per reason in the run, and neither stores it. A rejected SpendLogs
row never moves the import cursor (only stored events do).

The rules (``docs/reliability.md`` lists them too):

- an event id and a model name; no control character (C0, DEL, C1: a NUL cannot even be stored
  in Postgres text) in any text field or tag, and no text longer than its column (the builders cut
  names to fit first);
- ``started_at`` no earlier than ``EARLIEST`` (2000-01-01 UTC) and no later than now plus
  ``CLOCK_SKEW`` (5 minutes): "now" is the store's clock. A call cannot start in the future, and
  a future-dated row would otherwise carry the import cursor past every real row;
- ``ended_at``, when given, no earlier than ``started_at`` and no later than now plus the skew;
  the latency ``ended_at - started_at`` is at most ``MAX_LATENCY`` (24 hours);
- time to first token, when given, between 0 and the latency;
- ``prompt_tokens`` and ``completion_tokens``, when given, whole numbers from 0 to ``MAX_TOKENS``
  (100 million, ten times the largest context window on offer): a Postgres ``integer`` holds them
  and their sum with room to spare;
- ``cost``, when given, a finite number of USD from 0 to ``MAX_COST_USD`` (10,000 per call): sums
  over any window stay finite, and a negative cost cannot buy a model a better score.

A figure that is absent, or not a number at all (LiteLLM logs ``None`` when it has no cost), is
absent; a figure that is a number but NaN or infinite is rejected.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from ..errors import RejectedRow

if TYPE_CHECKING:
    from .events import TelemetryRecord

__all__ = [
    "CLOCK_SKEW",
    "EARLIEST",
    "MAX_COST_USD",
    "MAX_LATENCY",
    "MAX_TOKENS",
    "STORED_ROW_PARAMS",
    "STORED_ROW_RULES",
    "check_record",
    "epoch_time",
    "figure",
    "stored_row_rules",
    "token_count",
    "utc_time",
]

CLOCK_SKEW: Final = timedelta(minutes=5)
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
MAX_LATENCY: Final = timedelta(hours=24)
MAX_TOKENS: Final = 100_000_000
MAX_COST_USD: Final = 10_000.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _reject(reason: str, field: str) -> RejectedRow:
    return RejectedRow(reason, field=field, source="telemetry")


def figure(value: object, field: str) -> float | None:
    """A number as a float; None when absent or not a number; ``RejectedRow`` when NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = float(value) if abs(value) < 2**1023 else math.inf
    else:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(number):
        raise _reject(f"{field} is not finite", field)
    return number


def token_count(value: object, field: str) -> int | None:
    """A token count as an int (see ``figure``); ``RejectedRow`` when not a whole number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact, however large: check_record bounds it
    number = figure(value, field)
    if number is None:
        return None
    if not number.is_integer():
        raise _reject(f"{field} is not a whole number", field)
    return int(number)


def epoch_time(value: object, field: str) -> datetime | None:
    """Seconds since the epoch (LiteLLM's callback times) as UTC; None when absent or not positive."""
    number = figure(value, field)
    if number is None or number <= 0:
        return None
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        raise _reject(f"{field} is not a valid time", field) from None


def utc_time(value: object, field: str) -> datetime | None:
    """A datetime as UTC (a naive one is UTC, as Prisma stores it); None when absent."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise _reject(f"{field} is not a time", field)
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _reject(f"{field} is not a valid time", field) from None


# The widths of telemetry_event's text columns: a longer value would fail the whole batch's write.
_WIDTHS: Final = {"event_id": 128, "trace_id": 128, "model": 256, "model_group": 256, "provider": 64,
                  "task": 128, "task_source": 32, "error_class": 128, "status": 16, "origin": 16}


def _check_text(record: TelemetryRecord) -> None:
    for field, width in _WIDTHS.items():
        text = getattr(record, field)
        if text is None:
            continue
        if _CONTROL.search(text):
            raise _reject(f"{field} has control characters", field)
        if len(text) > width:
            raise _reject(f"{field} is longer than {width} characters", field)
    if any(_CONTROL.search(tag) for tag in record.tags):
        raise _reject("tags has control characters", "tags")


def _check_times(record: TelemetryRecord, now: datetime) -> None:
    latest = now + CLOCK_SKEW
    started, ended = record.started_at, record.ended_at
    if started < EARLIEST:
        raise _reject("started_at is before 2000", "started_at")
    if started > latest:
        raise _reject("started_at is in the future", "started_at")
    if ended is not None:
        if ended < started:
            raise _reject("ended_at is before started_at", "ended_at")
        if ended > latest:
            raise _reject("ended_at is in the future", "ended_at")
        if ended - started > MAX_LATENCY:
            raise _reject("latency_ms is over 24 hours", "latency_ms")
    latency, ttft = record.latency_ms, record.ttft_ms
    if latency is not None and not 0 <= latency <= MAX_LATENCY.total_seconds() * 1000:
        raise _reject("latency_ms is out of range", "latency_ms")
    if ttft is not None and not (0 <= ttft and (latency is None or ttft <= latency)):
        raise _reject("ttft_ms is out of range", "ttft_ms")


def _check_figures(record: TelemetryRecord) -> None:
    for field in ("prompt_tokens", "completion_tokens"):
        tokens = getattr(record, field)
        if tokens is None:
            continue
        if tokens < 0:
            raise _reject(f"{field} is negative", field)
        if tokens > MAX_TOKENS:
            raise _reject(f"{field} is over {MAX_TOKENS:,}", field)
    cost = record.cost
    if cost is not None:
        if not math.isfinite(cost):
            raise _reject("cost is not finite", "cost")
        if cost < 0:
            raise _reject("cost is negative", "cost")
        if cost > MAX_COST_USD:
            raise _reject(f"cost is over {MAX_COST_USD:,.0f} USD", "cost")


def check_record(record: TelemetryRecord, *, now: datetime) -> TelemetryRecord:
    """``record`` unchanged when it meets every rule of this module; ``RejectedRow`` otherwise.

    >>> from datetime import UTC, datetime
    >>> from recommender_core.telemetry.events import TelemetryRecord
    >>> now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    >>> ok = TelemetryRecord(event_id="e1", model="gpt-4o", status="success", started_at=now, cost=0.01)
    >>> check_record(ok, now=now) is ok
    True
    >>> check_record(TelemetryRecord(event_id="e2", model="gpt-4o", status="success",
    ...                              started_at=datetime(9999, 12, 31, tzinfo=UTC)), now=now)
    Traceback (most recent call last):
    ...
    recommender_core.errors.RejectedRow: started_at is in the future
    """
    if not record.event_id:
        raise _reject("no event id", "event_id")
    if not record.model:
        raise _reject("no model", "model")
    _check_text(record)
    _check_times(record, now)
    _check_figures(record)
    return record


# --- rows already stored ----------------------------------------------------------------------------
# Rows stored before these rules existed (or by another writer) can hold anything the columns take:
# NaN or infinite costs, token counts at the integer limits, negative latencies. Every query that
# aggregates telemetry for scoring reads only the rows meeting the figure rules above, so one such row
# can neither fail a sum (`integer out of range`, NaN in a JSON document) nor skew a score. On Postgres
# NaN sorts above every number, so the upper bounds leave it out; SQLite stores NaN as NULL (absent).
STORED_ROW_RULES: Final = (
    "(cost IS NULL OR (cost >= 0 AND cost <= :rule_max_cost))"
    " AND (prompt_tokens IS NULL OR (prompt_tokens >= 0 AND prompt_tokens <= :rule_max_tokens))"
    " AND (completion_tokens IS NULL OR (completion_tokens >= 0 AND completion_tokens <= :rule_max_tokens))"
    " AND (latency_ms IS NULL OR (latency_ms >= 0 AND latency_ms <= :rule_max_latency_ms))"
    " AND (ttft_ms IS NULL OR (ttft_ms >= 0 AND ttft_ms <= :rule_max_latency_ms))"
)
STORED_ROW_PARAMS: Final = {"rule_max_cost": MAX_COST_USD, "rule_max_tokens": MAX_TOKENS,
                            "rule_max_latency_ms": MAX_LATENCY.total_seconds() * 1000.0}


def stored_row_rules() -> Any:
    """``STORED_ROW_RULES`` as a SQLAlchemy clause with its parameters bound (for ``.where()``).

    Rows outside the rules (NaN, infinite or negative cost, token counts at the integer limits,
    negative latencies), written before the rules or by another writer, never enter a rollup: one
    such row can neither fail a catch-up (``integer out of range``, NaN in a JSON sketch, ln of a
    negative latency) nor skew a score built from the rollups."""
    import sqlalchemy as sa

    return sa.text(STORED_ROW_RULES).bindparams(**STORED_ROW_PARAMS)
