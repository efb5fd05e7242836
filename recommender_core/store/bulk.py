"""Bulk writes: COPY on Postgres (the fastest path psycopg has), executemany elsewhere.

Every COPY goes through ``copy_rows``, which keeps anything that can fail on the client out of the
COPY itself. An exception raised inside psycopg's ``with cursor.copy(...)`` makes psycopg end the
COPY on a connection the server may already have failed, and log that second failure as "error
ignored terminating <psycopg.Copy ...>" on stderr, beside the traceback of the first. So the rows
are built and checked before the COPY starts, a lost connection ends the COPY once, and whatever
the COPY raises leaves as a SQLAlchemy error, which the store turns into one ``StoreError`` line.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from ..scored import SCORED_COLUMNS
from .tables import BenchmarkEvidence, UtilityScore

if TYPE_CHECKING:
    from ..sources.base import EvidenceRecord

__all__ = ["EVIDENCE_COLUMNS", "UTILITY_COLUMNS", "copy_rows", "insert_evidence", "insert_utility_scores"]

# Rows per executemany on SQLite: memory stays bounded whatever the size of the batch.
_SQLITE_CHUNK = 5000

# How many distinct ``extra`` objects ``_rows`` keeps encoded at once.
_SHARED_EXTRAS = 64

EVIDENCE_COLUMNS: Sequence[str] = (
    "run_id", "source", "model", "category", "task_type", "metric", "value", "lower", "upper", "samples",
    "rank", "revision", "split", "subset_count", "source_version", "published_on", "organization", "extra",
)


def _rows(run_id: int, source: str, source_version: str,
          records: Iterable[EvidenceRecord]) -> Iterable[tuple[Any, ...]]:
    # Sources share one ``extra`` object between the rows it describes (an Arena board's licence, in
    # every category): each object is encoded once. The cache holds the object itself beside its
    # text, so its id cannot be reused by another object while it is cached; it is emptied when it
    # fills, so rows that each have their own extra (MTEB's) keep no more than that in memory.
    encoded: dict[int, tuple[Any, str]] = {}
    for r in records:
        extra = r.extra
        cached = encoded.get(id(extra))
        if cached is None:
            if len(encoded) >= _SHARED_EXTRAS:
                encoded.clear()
            cached = encoded[id(extra)] = (extra, json.dumps(dict(extra), allow_nan=False))
        yield (run_id, source, r.model, r.category, r.task_type, r.metric, r.value, r.lower, r.upper, r.samples,
               r.rank, r.revision, r.split, r.subset_count, source_version, r.published_on, r.organization,
               cached[1])


def _refuse_nul(statement: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """PostgreSQL text cannot hold a NUL byte, and psycopg refuses one while formatting the row, which
    would be inside the COPY: refuse it before."""
    import psycopg

    # Column by column, in C (map, set, join): a value-by-value loop took 0.1 s for 15,000 utility rows.
    for values in zip(*rows, strict=True):
        kinds = set(map(type, values))
        if str in kinds and "\x00" in "".join(values if len(kinds) == 1 else [v for v in values if type(v) is str]):
            break
    else:
        return
    for number, row in enumerate(rows, start=1):
        for column, value in zip(columns, row, strict=True):
            if type(value) is str and "\x00" in value:
                raise sa.exc.DataError(statement, None, psycopg.DataError(
                    f"row {number} of the write holds a NUL byte in '{column}', which PostgreSQL text cannot store"))


def copy_rows(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` (values in ``columns`` order) into ``table`` through a psycopg ``cursor``; returns
    the row count. Raises SQLAlchemy errors (the store translates them), never a bare driver error."""
    import psycopg

    names = ", ".join(f'"{c}"' for c in columns)
    statement = f"COPY {table} ({names}) FROM STDIN"
    built = [tuple(row) for row in rows]  # any error building a row happens here, before the COPY
    _refuse_nul(statement, columns, built)
    lost: psycopg.OperationalError | None = None
    try:
        with cursor.copy(statement) as copy:
            try:
                for row in built:
                    copy.write_row(row)
            except psycopg.OperationalError as exc:
                # The connection failed mid-COPY: leave the block normally, so the COPY ends once (its
                # end fails the same way and raises) instead of psycopg logging a second failure.
                lost = exc
        if lost is not None:
            raise lost
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return len(built)


def insert_evidence(session: Session, *, run_id: int, source: str, source_version: str,
                    records: Sequence[EvidenceRecord]) -> int:
    """Insert ``records`` for ``run_id`` inside the session's transaction; returns the row count."""
    if not records:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a live session has a DBAPI connection
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            return copy_rows(cursor, "benchmark_evidence", EVIDENCE_COLUMNS,
                             _rows(run_id, source, source_version, records))
    # SQLite: plain executemany in bounded chunks of tuples, the JSON column as the JSON text SQLAlchemy
    # would write. A list of 100k parameter dicts through the ORM's insert tripled the peak memory of an
    # MTEB ingest of the whole results repository (98 MB at 10% of it, 284 MB at 100%).
    table = BenchmarkEvidence.__table__.name  # type: ignore[attr-defined]
    names = ", ".join(EVIDENCE_COLUMNS)
    marks = ", ".join("?" for _ in EVIDENCE_COLUMNS)
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608 - constants
    # Dates as the ISO text SQLAlchemy's Date type stores on SQLite (not the sqlite3 adapter, deprecated in 3.12).
    published = EVIDENCE_COLUMNS.index("published_on")
    rows = ((*row[:published], row[published] and row[published].isoformat(), *row[published + 1:])
            for row in _rows(run_id, source, source_version, records))
    while chunk := list(islice(rows, _SQLITE_CHUNK)):
        connection.exec_driver_sql(statement, chunk)
    return len(records)


# The scored row's columns (one declaration: ``recommender_core.scored``), after the run they belong to.
UTILITY_COLUMNS: Sequence[str] = ("run_id", *SCORED_COLUMNS)


_PLAIN = SCORED_COLUMNS[:SCORED_COLUMNS.index("excluded")]
if SCORED_COLUMNS[len(_PLAIN):] != ("excluded", "reason", "evidence", "details"):  # pragma: no cover
    raise AssertionError("insert_utility_scores writes excluded, reason, evidence, details last")


_ENCODER = json.JSONEncoder()  # json.dumps's defaults


def _utility_rows(run_id: int, scores: Iterable[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``scores`` in ``UTILITY_COLUMNS`` order, with ``evidence`` and ``details`` as JSON text.

    The JSON is what ``json.dumps`` writes; a run has one evidence list per task, encoded once, and
    the details go through one encoder object instead of ``json.dumps`` building one per call.
    """
    evidence_json: dict[tuple[str, ...], str] = {}
    encode = _ENCODER.encode
    plain = operator.attrgetter(*_PLAIN)
    rows = []
    for s in scores:
        evidence = tuple(s.evidence)
        text = evidence_json.get(evidence)
        if text is None:
            text = evidence_json[evidence] = json.dumps(list(evidence))
        rows.append((run_id, *plain(s), bool(s.excluded), s.reason, text,
                     encode(dict(s.details))))
    return rows


def insert_utility_scores(session: Session, *, run_id: int, scores: Iterable[Any]) -> int:
    """Insert one scoring run's scored rows inside the session's transaction; returns the row count.

    ``scores`` are scored rows (``task``, ``model``, the components, ``excluded``, ``reason``,
    ``evidence``, ``details``). Postgres: one ``COPY``; SQLite: one executemany of a plain INSERT (no
    ORM objects, no per-row RETURNING): 15,000 rows through the ORM took 0.8 s of a 1.3 s ``score``.
    """
    rows = _utility_rows(run_id, scores)
    if not rows:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a live session has a DBAPI connection
        with raw.cursor() as cursor:  # type: ignore[attr-defined]
            return copy_rows(cursor, "utility_score", UTILITY_COLUMNS, rows)
    names = ", ".join(UTILITY_COLUMNS)
    marks = ", ".join("?" for _ in UTILITY_COLUMNS)
    table = UtilityScore.__table__.name  # type: ignore[attr-defined]
    # The JSON columns hold JSON text on SQLite, as SQLAlchemy's JSON type writes them.
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608 - constants
    return len(rows)
