"""Day partitions of ``telemetry_event`` on Postgres (migration 0005); SQLite has none.

On Postgres ``telemetry_event`` is partitioned by range of ``started_at``: one partition per UTC day,
``telemetry_event_pYYYYMMDD`` holding ``[day, day + 1)``, and ``telemetry_event_default``, the
DEFAULT partition, a safety net that takes any row whose day has no partition, so an insert never
fails for want of one. ``telemetry prune`` drops the day partitions wholly before its cutoff.

Every insert path calls ``ensure_event_partitions`` with the start times it is about to write, before
it opens its write transaction: it creates the partitions of those days and of the day after each
(so a writer crosses midnight without creating one), in one short transaction of its own that
  - takes a transaction advisory lock, so two writers never race to create the same partition;
  - sets ``lock_timeout``: ``CREATE TABLE ... PARTITION OF`` takes an ACCESS EXCLUSIVE lock on
    ``telemetry_event`` until that transaction commits (PostgreSQL 15), so a creation that cannot
    get it within ``LOCK_TIMEOUT`` gives up, the rows go to the DEFAULT partition, and the day is
    tried again after ``RETRY_AFTER``;
  - gives up on a day whose rows the DEFAULT partition already holds (Postgres refuses to create the
    partition then): that day's rows keep going to the DEFAULT partition, and prune deletes them in
    batches once they are older than the retention.
Known days are cached per database in the process, so a batch whose days are known costs nothing.

The unique key is ``(event_id, started_at)``, as a unique key on a partitioned table must hold the
partition key; ``EVENT_INSERT`` keeps the dedupe of ``event_id`` (see its comment).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .locks import advisory_key

if TYPE_CHECKING:
    from .engine import Store

__all__ = [
    "DEFAULT_PARTITION",
    "LOCK_TIMEOUT",
    "RETRY_AFTER",
    "day_partitions",
    "ensure_event_partitions",
    "event_insert_sql",
    "forget_partitions",
    "include_in_comparison",
    "is_event_partition",
    "partition_ddl",
    "partition_name",
]

log = logging.getLogger("recsys.store")

PARENT = "telemetry_event"
DEFAULT_PARTITION = "telemetry_event_default"
_DAY_NAME = re.compile(r"^telemetry_event_p(\d{8})$")
LOCK_TIMEOUT = "2s"
RETRY_AFTER = 60.0  # seconds before a day whose creation timed out is tried again
_CREATE_LOCK = advisory_key("telemetry-event-partitions")
# Refusals that leave the insert working (its rows go to the DEFAULT partition): the default holds
# rows of the day (check_violation), the parent's lock was not granted in time (lock_not_available),
# a partition of that name or range appeared meanwhile (duplicate_table, invalid_object_definition),
# the role may insert but not create tables (insufficient_privilege: prune, run by a role that may,
# makes today's and tomorrow's).
_GIVE_UP = {"23514": "the DEFAULT partition holds rows of that day", "55P03": "lock timeout",
            "42P07": "it exists", "42P17": "it overlaps another partition",
            "42501": "this role may not create tables"}

_known: dict[str, set[date]] = {}
_retry_at: dict[tuple[str, date], float] = {}
_guard = threading.Lock()

# Dedupe of event_id on Postgres. ON CONFLICT can only use the unique key (event_id, started_at), so
# it catches a record sent twice (a writer's retried batch, a re-imported spend-log row: the same
# record, the same started_at). One attempt logged by the callback and also imported from the
# proxy's LiteLLM_SpendLogs has one event id but two start times: the callback's is exact to the
# microsecond, the proxy stores it rounded to the millisecond (TIMESTAMP(3)). The NOT EXISTS skips a
# row whose event id is stored with a start within DEDUPE_WINDOW of its own (one probe of the
# unique index, in the partitions of that window only).
DEDUPE_WINDOW = "1 minute"


def event_insert_sql(columns: str, source: str) -> str:
    """``INSERT INTO telemetry_event`` of every row of ``source`` whose event id is not stored (Postgres)."""
    return (
        f"INSERT INTO {PARENT} ({columns}) SELECT {columns} FROM {source} AS s "  # noqa: S608 - constants
        f"WHERE NOT EXISTS (SELECT 1 FROM {PARENT} AS e WHERE e.event_id = s.event_id "
        f"AND e.started_at BETWEEN s.started_at - INTERVAL '{DEDUPE_WINDOW}' "
        f"AND s.started_at + INTERVAL '{DEDUPE_WINDOW}') "
        "ON CONFLICT (event_id, started_at) DO NOTHING")


def partition_name(day: date) -> str:
    return f"telemetry_event_p{day:%Y%m%d}"


def is_event_partition(name: str) -> bool:
    """Whether ``name`` is a partition of ``telemetry_event`` (a day's, or the DEFAULT one)."""
    return name == DEFAULT_PARTITION or _DAY_NAME.match(name) is not None


def include_in_comparison(dialect: str) -> Any:
    """An Alembic ``include_object`` for comparing the schema with the tables on ``dialect``: the
    partitions of ``telemetry_event`` are not tables of their own, and a constraint declared for
    another dialect only (``ddl_if``) is not expected."""
    def include(obj: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        if type_ == "table" and reflected and name is not None and is_event_partition(name):
            return False
        condition = getattr(obj, "_ddl_if", None)
        return reflected or condition is None or condition.dialect in (None, dialect)

    return include


def partition_ddl(day: date) -> str:
    """The statement that creates ``day``'s partition (UTC bounds, whatever the session's time zone)."""
    after = day + timedelta(days=1)
    return (f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF {PARENT} "
            f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{after.isoformat()} 00:00:00+00')")


def day_partitions(conn: sa.Connection) -> dict[date, str]:
    """The day partitions of ``telemetry_event`` that exist, by day (Postgres)."""
    names = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:parent)"), {"parent": PARENT}).scalars().all()
    days: dict[date, str] = {}
    for name in names:
        match = _DAY_NAME.match(name)
        if match:
            days[datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()] = name
    return days


def _days(moments: Iterable[datetime | date]) -> set[date]:
    days: set[date] = set()
    for moment in moments:
        day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
        days.update((day, day + timedelta(days=1)))
    return days


def ensure_event_partitions(store: Store, moments: Iterable[datetime | date]) -> set[date]:
    """Create the missing partitions of the days of ``moments`` and of the day after each; returns the
    days created. A no-op on SQLite, and without a query when every day is known.

    Call it before opening the transaction that inserts: it commits its own, short one (and would
    wait on a transaction of the caller's that already touched ``telemetry_event``).
    """
    if store.dialect != "postgresql":
        return set()
    wanted = _days(moments)
    now = time.monotonic()
    with _guard:
        known = _known.setdefault(store.url, set())
        missing = {d for d in wanted - known if _retry_at.get((store.url, d), 0.0) <= now}
    if not missing:
        return set()
    created: set[date] = set()
    settled: set[date] = set()
    with store.connect() as conn:
        # First wait for a concurrent creator (it holds this lock for at most about LOCK_TIMEOUT per
        # attempt), then bound the wait for the table's lock.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        existing = set(day_partitions(conn))
        for day in sorted(missing - existing):
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(partition_ddl(day))
                created.add(day)
            except sa.exc.DBAPIError as exc:
                code = str(getattr(exc.orig, "sqlstate", None) or "")
                if code not in _GIVE_UP:
                    raise
                log.warning("telemetry_event: no partition for %s (%s); its events go to %s",
                            day.isoformat(), _GIVE_UP[code], DEFAULT_PARTITION)
                if code == "55P03":  # the next day would wait as long: try them all again later
                    retry_at = time.monotonic() + RETRY_AFTER
                    with _guard:
                        _retry_at.update({(store.url, d): retry_at for d in missing - existing - created - settled})
                    break
                settled.add(day)
    with _guard:
        _known.setdefault(store.url, set()).update(existing | created | settled)
    return created


def forget_partitions(store: Store, days: Iterable[date] | None = None) -> None:
    """Drop ``days`` (every day when None) from this process's cache of known partitions."""
    with _guard:
        if days is None:
            _known.pop(store.url, None)
        else:
            _known.get(store.url, set()).difference_update(days)
