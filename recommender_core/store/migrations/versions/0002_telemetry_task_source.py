"""telemetry_event.task_source: which rule gave an event its task

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: events stored before this migration keep their task, with no recorded rule.
    with op.batch_alter_table("telemetry_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_source", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("telemetry_event", schema=None) as batch_op:
        batch_op.drop_column("task_source")
