"""drop the unused model and model_alias tables

Candidates and their evidence aliases live in the policy (identity.NameMatcher); nothing ever
wrote or read these two tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_alias", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_alias_model_id"))
    op.drop_table("model_alias")
    op.drop_table("model")


def downgrade() -> None:
    # The tables as revision 0001 created them (empty: they never held data).
    op.create_table(
        "model",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "model_alias",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=512), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "alias", name="uq_model_alias_source_alias"),
    )
    with op.batch_alter_table("model_alias", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_alias_model_id"), ["model_id"], unique=False)
