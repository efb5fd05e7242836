"""Alembic environment: recsys passes the connection in; there is no alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from recommender_core.store import tables  # noqa: F401 - registers the tables on SQLModel.metadata
from recommender_core.store.partitions import include_in_comparison

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - recsys always passes one
    raise RuntimeError("recsys migrations run through Store.upgrade(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables so the same
    # migration scripts run unchanged on SQLite and Postgres.
    render_as_batch=True,
    compare_type=True,
    # Autogenerate: telemetry_event's day partitions are not tables of the schema (store/partitions.py).
    include_object=include_in_comparison(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
