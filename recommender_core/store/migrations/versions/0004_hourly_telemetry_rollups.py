"""telemetry_rollup: hourly mergeable aggregates per (model, task), kept current from dirty hours

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The old window rollups were derived data that nothing read: the table is recreated with one row per
(hour, model, task) and a latency sketch. ``telemetry_rollup_dirty`` lists the hours to recompute; a
trigger on ``telemetry_event`` marks the hour of each inserted event in the inserting transaction
(Postgres: one statement-level trigger per insert statement or COPY; SQLite: a row trigger). Every
hour that already holds events is marked, so the first catch-up builds the rollups of the history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The epoch hour of an event's start, the key of telemetry_rollup_dirty (UTC on both backends:
# SQLite stores naive UTC text, Postgres timestamptz).
_SQLITE_HOUR = "CAST(strftime('%s', {col}) AS INTEGER) / 3600"
_POSTGRES_HOUR = "CAST(floor(extract(epoch FROM {col}) / 3600) AS BIGINT)"

_SQLITE_TRIGGER = f"""
CREATE TRIGGER telemetry_event_mark_hour AFTER INSERT ON telemetry_event
BEGIN
    INSERT INTO telemetry_rollup_dirty (hour, version)
    VALUES ({_SQLITE_HOUR.format(col="NEW.started_at")}, 1)
    ON CONFLICT (hour) DO UPDATE SET version = version + 1;
END
"""  # noqa: S608 - constants

# ORDER BY: concurrent writers lock the marks in the same order, so they never deadlock. DO UPDATE
# (not DO NOTHING) takes the mark's row lock, which a concurrent catch-up's conditional delete waits for.
_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION telemetry_event_mark_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO telemetry_rollup_dirty (hour, version)
    SELECT DISTINCT {_POSTGRES_HOUR.format(col="started_at")}, 1 FROM new_events ORDER BY 1
    ON CONFLICT (hour) DO UPDATE SET version = telemetry_rollup_dirty.version + 1;
    RETURN NULL;
END
$$
"""  # noqa: S608 - constants
_POSTGRES_TRIGGER = """
CREATE TRIGGER telemetry_event_mark_hours AFTER INSERT ON telemetry_event
REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION telemetry_event_mark_hours()
"""


def upgrade() -> None:
    with op.batch_alter_table("telemetry_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_rollup_model_task_window")
    op.drop_table("telemetry_rollup")
    op.create_table(
        "telemetry_rollup",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("hour_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("span_hours", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("task", sa.String(length=128), nullable=True),
        sa.Column("all_tasks", sa.Boolean(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("cost_calls", sa.Integer(), nullable=False),
        sa.Column("cost_total", sa.Float(), nullable=False),
        sa.Column("priced_calls", sa.Integer(), nullable=False),
        sa.Column("priced_cost", sa.Float(), nullable=False),
        sa.Column("priced_tokens", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_samples", sa.Integer(), nullable=False),
        sa.Column("latency_sketch", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_rollup_hour", ["hour_start", "all_tasks"], unique=False)
    op.create_table(
        "telemetry_rollup_dirty",
        sa.Column("hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour"),
    )
    hour = _POSTGRES_HOUR if op.get_bind().dialect.name == "postgresql" else _SQLITE_HOUR
    op.execute(f"INSERT INTO telemetry_rollup_dirty (hour, version) "  # noqa: S608 - constants
               f"SELECT DISTINCT {hour.format(col='started_at')}, 1 FROM telemetry_event")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FUNCTION)
        op.execute(_POSTGRES_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS telemetry_event_mark_hours ON telemetry_event")
        op.execute("DROP FUNCTION IF EXISTS telemetry_event_mark_hours()")
    else:
        op.execute("DROP TRIGGER IF EXISTS telemetry_event_mark_hour")
    op.drop_table("telemetry_rollup_dirty")
    with op.batch_alter_table("telemetry_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_rollup_hour")
    op.drop_table("telemetry_rollup")
    op.create_table(
        "telemetry_rollup",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("task", sa.String(length=128), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=True),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("latency_p99_ms", sa.Float(), nullable=True),
        sa.Column("ttft_p50_ms", sa.Float(), nullable=True),
        sa.Column("ttft_p95_ms", sa.Float(), nullable=True),
        sa.Column("mean_cost_per_call", sa.Float(), nullable=True),
        sa.Column("cost_per_1k_tokens", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("telemetry_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_rollup_model_task_window", ["model", "task", "window_hours"], unique=False)
