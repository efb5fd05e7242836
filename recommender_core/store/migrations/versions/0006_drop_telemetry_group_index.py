"""telemetry_event: drop the (model_group, started_at) index that no query uses

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

``ix_telemetry_group_started`` served the per-model window reads of raw events, which the hourly
rollups replaced (migration 0004): since then every read of ``telemetry_event`` selects by
``started_at`` alone (the rollup catch-up, retention, the SpendLogs cursor). Each stored event still
paid for the index, one of four B-tree inserts per row on Postgres: dropping it makes every insert
path (the callback's writer, the SpendLogs import) cheaper on both backends. On Postgres, dropping
the partitioned index drops it from every day partition; the downgrade builds it again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_telemetry_group_started", table_name="telemetry_event")


def downgrade() -> None:
    op.create_index("ix_telemetry_group_started", "telemetry_event", ["model_group", "started_at"])
