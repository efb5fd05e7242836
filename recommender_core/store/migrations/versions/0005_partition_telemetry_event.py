"""telemetry_event partitioned by UTC day on Postgres, so that prune drops whole days

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Postgres only (SQLite is unchanged: no-op). The table is rebuilt as a partitioned table, by range of
``started_at``: one partition per UTC day that holds events (``telemetry_event_pYYYYMMDD``) and the
DEFAULT partition ``telemetry_event_default``; the rows are moved, in one transaction (the upgrade
rewrites the table: minutes for tens of millions of events, during which telemetry writes wait). A
partitioned table's keys must hold the partition key: the primary key becomes ``(id, started_at)``
and ``UNIQUE (event_id)`` becomes ``UNIQUE (event_id, started_at)`` (``store/partitions.py`` says how
the dedupe of event ids holds). The id sequence, the indexes and the rollup trigger of 0004 (a
statement-level trigger with a transition table, which sees the rows routed to every partition)
move to the new table. The moved rows do not mark their hours dirty: their rollups stay as they were.

The downgrade rebuilds the plain table, keeping the first row of an event id stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGER = """
CREATE TRIGGER telemetry_event_mark_hours AFTER INSERT ON telemetry_event
REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION telemetry_event_mark_hours()
"""
_INDEXES = (
    "CREATE INDEX ix_telemetry_started_at ON telemetry_event (started_at)",
    "CREATE INDEX ix_telemetry_group_started ON telemetry_event (model_group, started_at)",
)


def _rebuild(new_table: str, partition_by: str, copy_rows: str) -> None:
    """Replace telemetry_event by ``new_table``: same columns and id sequence, rows from ``copy_rows``."""
    bind = op.get_bind()
    sequence = bind.exec_driver_sql("SELECT pg_get_serial_sequence('telemetry_event', 'id')").scalar_one()
    op.execute(f"CREATE TABLE {new_table} (LIKE telemetry_event INCLUDING DEFAULTS){partition_by}")
    if partition_by:
        op.execute(f"CREATE TABLE telemetry_event_default PARTITION OF {new_table} DEFAULT")
        days = bind.exec_driver_sql(
            "SELECT DISTINCT CAST(started_at AT TIME ZONE 'UTC' AS date) FROM telemetry_event ORDER BY 1"
        ).scalars().all()
        for day in days:
            assert isinstance(day, date)  # noqa: S101 - a date column
            after = day + timedelta(days=1)
            op.execute(f"CREATE TABLE telemetry_event_p{day:%Y%m%d} PARTITION OF {new_table} FOR VALUES "
                       f"FROM ('{day.isoformat()} 00:00:00+00') TO ('{after.isoformat()} 00:00:00+00')")
    op.execute(f"INSERT INTO {new_table} {copy_rows}")
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {new_table}.id")
    op.execute("DROP TABLE telemetry_event")  # its indexes, constraints and trigger with it
    op.execute(f"ALTER TABLE {new_table} RENAME TO telemetry_event")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _rebuild("telemetry_event_partitioned", " PARTITION BY RANGE (started_at)", "SELECT * FROM telemetry_event")
    op.execute("ALTER TABLE telemetry_event ADD CONSTRAINT telemetry_event_pkey PRIMARY KEY (id, started_at)")
    op.execute("ALTER TABLE telemetry_event ADD CONSTRAINT uq_telemetry_event_id_started "
               "UNIQUE (event_id, started_at)")
    for statement in (*_INDEXES, _TRIGGER):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # DISTINCT ON: one event id stored with two start times (partitions.py) keeps its first row.
    _rebuild("telemetry_event_plain", "",
             "SELECT DISTINCT ON (event_id) * FROM telemetry_event ORDER BY event_id, id")
    op.execute("ALTER TABLE telemetry_event ADD CONSTRAINT telemetry_event_pkey PRIMARY KEY (id)")
    op.execute("ALTER TABLE telemetry_event ADD CONSTRAINT telemetry_event_event_id_key UNIQUE (event_id)")
    for statement in (*_INDEXES, _TRIGGER):
        op.execute(statement)
