"""Bulk writes of evidence: COPY on Postgres (the fastest path psycopg has), executemany elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from .tables import BenchmarkEvidence

if TYPE_CHECKING:
    from ..sources.base import EvidenceRecord

__all__ = ["EVIDENCE_COLUMNS", "insert_evidence"]

EVIDENCE_COLUMNS: Sequence[str] = (
    "run_id", "source", "model", "category", "task_type", "metric", "value", "lower", "upper", "samples",
    "rank", "revision", "split", "subset_count", "source_version", "published_on", "organization", "extra",
)


def _rows(run_id: int, source: str, source_version: str,
          records: Iterable[EvidenceRecord]) -> Iterable[tuple[Any, ...]]:
    for r in records:
        yield (run_id, source, r.model, r.category, r.task_type, r.metric, r.value, r.lower, r.upper, r.samples,
               r.rank, r.revision, r.split, r.subset_count, source_version, r.published_on, r.organization,
               json.dumps(dict(r.extra), allow_nan=False))


def insert_evidence(session: Session, *, run_id: int, source: str, source_version: str,
                    records: Sequence[EvidenceRecord]) -> int:
    """Insert ``records`` for ``run_id`` inside the session's transaction; returns the row count."""
    if not records:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a live session has a DBAPI connection
        columns = ", ".join(f'"{c}"' for c in EVIDENCE_COLUMNS)
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            with cursor.copy(f"COPY benchmark_evidence ({columns}) FROM STDIN") as copy:
                for row in _rows(run_id, source, source_version, records):
                    copy.write_row(row)
        return len(records)
    table = BenchmarkEvidence.__table__  # type: ignore[attr-defined]
    payload = [dict(zip(EVIDENCE_COLUMNS, row, strict=True)) for row in _rows(run_id, source, source_version, records)]
    for item in payload:
        item["extra"] = json.loads(item["extra"])
    session.execute(sa.insert(table), payload)
    return len(records)
