"""Parsing and validating LMArena rows: the leaderboard parquet, a datasets-server ``/rows`` page and a
legacy Space leaderboard CSV, into evidence records (``<config>/<category>`` on the upstream's own
rating scale). Nothing is ever unpickled: parquet is read with pyarrow, JSON with ``json``, CSV with ``csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import SourceSchemaError
from ..base import Batch, EvidenceRecord
from . import NAME
from . import constants as C

if TYPE_CHECKING:
    pass

__all__ = [
    "UNSUPPORTED",
    "legacy_csv_version",
    "parse_legacy_csv",
    "parse_parquet",
    "parse_rows_page",
]

UNSUPPORTED = ("Supported: a parquet file, a datasets-server /rows JSON page, a folder laid out like the "
                f"dataset repo ({C.DATASET_ID}), or a legacy leaderboard CSV with an "
                f"'{C.LEGACY_RATING_COLUMN}' column.")


# --- value checks (a tight loop: 50,000 rows must parse in a fraction of a COPY) ----------------

class _Bad(Exception):
    """A row fails validation; the message is the rejection reason."""


def _float(value: Any, what: str) -> float:
    kind = type(value)
    if kind is float:
        number: float = value
    elif kind is int:
        number = float(value)
    elif kind is str:
        try:
            number = float(value)
        except ValueError:
            raise _Bad(f"{what} is not a number") from None
    else:  # None, bool, bytes, lists...
        raise _Bad(f"{what} is not a number")
    if not math.isfinite(number):
        raise _Bad(f"{what} is not finite")
    if not C.MIN_RATING <= number <= C.MAX_RATING:
        raise _Bad(f"{what} is out of range")
    return number


def _optional_float(value: Any, what: str) -> float | None:
    return None if value is None else _float(value, what)


def _count(value: Any, what: str, minimum: int) -> int | None:
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is float:
        if not math.isfinite(value) or value != int(value):
            raise _Bad(f"{what} is not a whole number")
        number = int(value)
    elif kind is str:
        try:
            parsed = float(value)
        except ValueError:
            raise _Bad(f"{what} is not a whole number") from None
        if not math.isfinite(parsed) or parsed != int(parsed):
            raise _Bad(f"{what} is not a whole number")
        number = int(parsed)
    else:
        raise _Bad(f"{what} is not a whole number")
    if not minimum <= number <= C.MAX_SAMPLES:
        raise _Bad(f"{what} is out of range")
    return number


def _date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise _Bad("publish date is not a date")


Columns = dict[str, list[Any]]


def _column_map(names: Iterable[str], origin: str) -> dict[str, str]:
    """canonical column -> the spelling present; a missing required column fails the run, naming it."""
    present = list(names)
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for canonical, spellings in C.COLUMN_SPELLINGS.items():
        actual = next((s for s in spellings if s in present), None)
        if actual is not None:
            mapping[canonical] = actual
        elif canonical in C.REQUIRED_COLUMNS:
            missing.append(" or ".join(spellings))
    if missing:
        raise SourceSchemaError(
            f"{NAME}: {origin} lacks the column(s) {', '.join(missing)} (found: {', '.join(present) or 'none'}); "
            "the dataset's schema changed, so nothing was written: update recsys or use a mirror in the known "
            "format.", source=NAME)
    return mapping


def _validate(columns: Columns, n: int, *, config: str, batch: Batch, seen: set[tuple[str, str]],
              truncated: Sequence[bool] | None = None) -> None:
    """Turn column lists into evidence records, rejecting and counting bad rows.

    Written for speed (it runs once per row of a board): the common well-typed values take an inline
    path, anything else goes through the general checks; board dates and licences repeat, so each
    distinct one is parsed once.
    """
    none: list[Any] = [None] * n
    names, cats = columns["model_name"], columns["category"]
    ratings, lowers, uppers = columns["rating"], columns["rating_lower"], columns["rating_upper"]
    votes, ranks, dates = columns["vote_count"], columns["rank"], columns["leaderboard_publish_date"]
    orgs = columns.get("organization", none)
    licenses = columns.get("license", none)
    prefix = f"{config}/"
    records = batch.records
    dates_seen: dict[Any, date | None] = {}
    extras: dict[Any, dict[str, Any]] = {}
    low, high, max_count = C.MIN_RATING, C.MAX_RATING, C.MAX_SAMPLES
    for i in range(n):
        try:
            if truncated is not None and truncated[i]:
                raise _Bad("truncated cell")
            name = names[i]
            if type(name) is not str or not name.strip():
                raise _Bad("no model name")
            raw_category = cats[i]
            if type(raw_category) is not str or not raw_category.strip():
                raise _Bad("no category")
            rating = ratings[i]
            if type(rating) is not float or not (low <= rating <= high):  # NaN fails the comparison too
                rating = _float(rating, "rating")
            lower = lowers[i]
            if lower is not None and (type(lower) is not float or not (low <= lower <= high)):
                lower = _float(lower, "lower bound")
            upper = uppers[i]
            if upper is not None and (type(upper) is not float or not (low <= upper <= high)):
                upper = _float(upper, "upper bound")
            if (lower is not None and lower > rating) or (upper is not None and upper < rating):
                raise _Bad("bounds do not contain the rating")
            samples = votes[i]
            if samples is not None and (type(samples) is not int or not 0 <= samples <= max_count):
                samples = _count(samples, "vote count", 0)
            rank = ranks[i]
            if rank is not None and (type(rank) is not int or not 1 <= rank <= max_count):
                rank = _count(rank, "rank", 1)
            raw_date = dates[i]
            if raw_date in dates_seen:
                published = dates_seen[raw_date]
            else:
                published = dates_seen[raw_date] = _date(raw_date)
            category = prefix + raw_category
            key = (category, name)
            if key in seen:
                raise _Bad("duplicate row")
            seen.add(key)
        except (_Bad, TypeError) as bad:
            # TypeError: an unhashable date cell (a list, a dict) from a JSON page.
            batch.reject(str(bad) if isinstance(bad, _Bad) else "publish date is not a date")
            continue
        licence = licenses[i]
        extra = extras.get(licence)
        if extra is None:
            extra = extras[licence] = {"license": str(licence)} if licence is not None else {}
        organization = orgs[i]
        records.append(EvidenceRecord(
            model=name, category=category, value=rating, lower=lower, upper=upper, samples=samples, rank=rank,
            published_on=published, organization=organization if type(organization) is str else None,
            split=C.SPLIT, extra=extra))


# --- formats --------------------------------------------------------------------------------------

def parse_parquet(data: bytes, *, config: str, origin: str, batch: Batch,
                  seen: set[tuple[str, str]] | None = None) -> None:
    """Parse one config's parquet into ``batch`` (pyarrow only; a non-parquet body fails clearly)."""
    if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        head = data[:64].lstrip().lower()
        what = ("empty (0 bytes)" if not data else
                "an HTML page" if head.startswith((b"<!doctype html", b"<html")) else
                "a truncated parquet file" if data[:4] == b"PAR1" else "something else")
        raise SourceSchemaError(f"{NAME}: {origin} is {what}, not a parquet file; nothing was written.",
                                source=NAME)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise SourceSchemaError(f"{NAME}: {origin} is not a readable parquet file ({exc}); nothing was written.",
                                source=NAME) from exc
    mapping = _column_map(table.column_names, origin)
    columns = {canonical: table.column(actual).to_pylist() for canonical, actual in mapping.items()}
    _validate(columns, table.num_rows, config=config, batch=batch, seen=set() if seen is None else seen)


def parse_rows_page(document: Any, *, config: str, origin: str, batch: Batch,
                    seen: set[tuple[str, str]] | None = None) -> None:
    """Parse a datasets-server ``/rows`` document (``features`` + ``rows[].row``) into ``batch``."""
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise SourceSchemaError(f"{NAME}: {origin} is not a datasets-server /rows page (no 'rows' list). "
                                + UNSUPPORTED, source=NAME)
    rows = document["rows"]
    features = document.get("features")
    if isinstance(features, list) and features:
        names = [str(f["name"]) for f in features if isinstance(f, dict) and isinstance(f.get("name"), str)]
    else:
        first = rows[0].get("row") if rows and isinstance(rows[0], dict) else None
        names = list(first) if isinstance(first, dict) else []
    mapping = _column_map(names, origin)
    cells: list[dict[str, Any]] = []
    truncated: list[bool] = []
    for item in rows:
        row = item.get("row") if isinstance(item, dict) else None
        cells.append(row if isinstance(row, dict) else {})
        truncated.append(not isinstance(row, dict) or bool(item.get("truncated_cells")))
    columns = {canonical: [row.get(actual) for row in cells] for canonical, actual in mapping.items()}
    _validate(columns, len(cells), config=config, batch=batch, seen=set() if seen is None else seen,
              truncated=truncated)


def legacy_csv_version(path: Path, data: bytes) -> tuple[str, date | None]:
    """``leaderboard_table_YYYYMMDD[-N].csv`` -> (ISO date[.N], date); any other name -> (sha256, None)."""
    match = C.LEGACY_CSV_NAME.match(path.name)
    if match:
        try:
            day = datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            day = None
        if day is not None:
            return day.isoformat() + (f".{match.group(2)}" if match.group(2) else ""), day
    return hashlib.sha256(data).hexdigest(), None


def parse_legacy_csv(text: str, *, origin: str, batch: Batch, published_on: date | None) -> None:
    """A 2023 Space ``leaderboard_table_*.csv``: ``Model`` + ``Arena Elo rating`` (``-`` = unrated)."""
    try:
        _parse_legacy_csv(csv.DictReader(io.StringIO(text)), origin=origin, batch=batch, published_on=published_on)
    except csv.Error as exc:
        raise SourceSchemaError(f"{NAME}: {origin} is not a well-formed CSV ({exc}); nothing was written.",
                                source=NAME) from exc


def _parse_legacy_csv(reader: csv.DictReader[str], *, origin: str, batch: Batch, published_on: date | None) -> None:
    fields = reader.fieldnames or []
    if C.LEGACY_RATING_COLUMN not in fields:
        raise SourceSchemaError(
            f"{NAME}: {origin} has no '{C.LEGACY_RATING_COLUMN}' column: it carries no ratings (leaderboard "
            f"CSVs since 2024 are model-metadata tables). Use the dataset {C.DATASET_ID} or a 2023 "
            "leaderboard_table CSV.", source=NAME)
    if C.LEGACY_MODEL_COLUMN not in fields:
        raise SourceSchemaError(f"{NAME}: {origin} lacks the column {C.LEGACY_MODEL_COLUMN} "
                                f"(found: {', '.join(fields)}); nothing was written.", source=NAME)
    seen: set[str] = set()
    category = f"{C.DEFAULT_CONFIGS[0]}/overall"
    for row in reader:
        raw_rating = row.get(C.LEGACY_RATING_COLUMN)
        name = row.get(C.LEGACY_MODEL_COLUMN)
        try:
            if None in row or raw_rating is None:
                raise _Bad("malformed row")
            if not name or not name.strip():
                raise _Bad("no model name")
            if raw_rating.strip() in C.LEGACY_UNRATED:
                batch.skipped["unrated"] += 1
                continue
            rating = _float(raw_rating.strip(), "rating")
            if name in seen:
                raise _Bad("duplicate row")
            seen.add(name)
        except _Bad as bad:
            batch.reject(str(bad))
            continue
        # Every other column (MT-bench, MMLU, licence, link) is ignored (DESIGN.md section 4).
        batch.records.append(EvidenceRecord(model=name, category=category, value=rating, published_on=published_on))
