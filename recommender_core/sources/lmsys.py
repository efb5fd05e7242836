"""LMArena (Chatbot Arena) ratings: the ``lmsys`` source (README, "Arena ratings").

Network mode asks the Hub for the dataset ``sha`` of ``lmarena-ai/leaderboard-dataset`` (the
version: an unchanged sha is a no-op run) and downloads each configured config's ``latest`` parquet
from the immutable ``resolve/<sha>/...`` URL. Every (config, category, model) row becomes one
evidence value, category ``<config>/<category>``, on the upstream's own rating scale.

A mirror (``--source`` / ``RECSYS_LMSYS_URL``) replaces the Hub for air-gapped clusters:

- a parquet file (local or URL);
- a datasets-server ``/rows`` JSON page (local, or a URL that is paged through);
- a folder laid out like the dataset repo (``<config>/latest-00000-of-00001.parquet``), versioned by
  its ``VERSION`` file, else its git HEAD, else a hash of the files it serves;
- a Hub-compatible endpoint (any other URL: ``<url>/api/datasets/...`` and ``<url>/datasets/.../resolve/...``);
- a legacy Space leaderboard CSV with an ``Arena Elo rating`` column (local only, for backfill).

Nothing is ever unpickled: parquet is read with pyarrow, JSON with ``json``, CSV with ``csv``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from ..config import Settings
from ..errors import SourceError, SourceSchemaError
from ..policy import Policy
from ..redact import redact_url
from . import lmsys_constants as C
from .base import Batch, EvidenceRecord, IngestOptions, ProgressFactory, Source, register_source
from .http import HttpSettings, SourceClient

__all__ = ["LmsysSource", "configs_from_policy", "parse_legacy_csv", "parse_parquet", "parse_rows_page"]

NAME = "lmsys"
_CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_UNSUPPORTED = ("Supported: a parquet file, a datasets-server /rows JSON page, a folder laid out like the "
                f"dataset repo ({C.DATASET_ID}), or a legacy leaderboard CSV with an "
                f"'{C.LEGACY_RATING_COLUMN}' column.")


def configs_from_policy(policy: Policy) -> tuple[str, ...]:
    """The Arena configs the policy's tasks reference (``lmsys:<config>/...``), else the default."""
    found: list[str] = []
    for task in policy.tasks.values():
        for ref in task.evidence_refs:
            if ref.source == NAME:
                config = ref.selector.split("/", 1)[0]
                if config not in found:
                    found.append(config)
    return tuple(found) or C.DEFAULT_CONFIGS


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
        what = ("is empty (0 bytes), not a parquet file" if not data else
                "is an HTML page, not a parquet file" if head.startswith((b"<!doctype html", b"<html")) else
                "is a truncated parquet file (it ends before its footer)" if data[:4] == b"PAR1" else
                "is not a parquet file")
        raise SourceSchemaError(f"{NAME}: {origin} {what}; nothing was written.", source=NAME)
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
                                + _UNSUPPORTED, source=NAME)
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
        # Every other column (MT-bench, MMLU, licence, link) is ignored (README, "Arena ratings").
        batch.records.append(EvidenceRecord(model=name, category=category, value=rating, published_on=published_on))


def _read_git_head(folder: Path) -> str | None:
    git = folder / ".git"
    try:
        head = (git / "HEAD").read_text("utf-8").strip()
        if not head.startswith("ref: "):
            return head if _SHA.match(head) else None
        ref = head[5:].strip()
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text("utf-8").strip() or None
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text("utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, UnicodeDecodeError):
        return None
    return None


# --- the source -----------------------------------------------------------------------------------

@register_source
class LmsysSource(Source):
    """LMArena ratings from ``lmarena-ai/leaderboard-dataset`` (or a mirror of it).

    >>> from recommender_core.policy import load_policy
    >>> source = LmsysSource(settings=Settings.load(), policy=load_policy())
    >>> source.configs
    ('text',)
    """

    name = NAME
    job = "ingest-lmsys"

    def __init__(self, *, settings: Settings, policy: Policy, progress: ProgressFactory | None = None,
                 configs: Sequence[str] | None = None, endpoint: str = C.HF_ENDPOINT,
                 transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None,
                 http_settings: HttpSettings | None = None, sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(settings=settings, policy=policy, progress=progress)
        chosen = tuple(dict.fromkeys(configs)) if configs else configs_from_policy(policy)  # --config text twice
        for config in chosen:
            if not _CONFIG_NAME.match(config):
                raise SourceError(f"{NAME}: {config!r} is not a dataset config name (e.g. text, vision, webdev).",
                                  source=NAME)
        self.configs = chosen
        self.endpoint = endpoint
        self._transport, self._client, self._http_settings, self._sleep = transport, client, http_settings, sleep
        self._http: SourceClient | None = None
        # Bodies fetched while resolving the version, reused by load (one download per run).
        self._cache: dict[str, bytes] = {}

    # --- plumbing ---

    def http(self) -> SourceClient:
        if self._http is None:
            token = self.settings.hf_token.get_secret_value() if self.settings.hf_token else None
            kwargs: dict[str, Any] = {}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            self._http = SourceClient(source=NAME, token=token, client=self._client, transport=self._transport,
                                      settings=self._http_settings, **kwargs)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._cache.clear()

    def _download(self, url: str, label: str) -> bytes:
        if url not in self._cache:
            callback = self.progress(label) if self.progress is not None else None
            self._cache[url] = self.http().get(url, progress=callback).content
        return self._cache[url]

    @staticmethod
    def _mirror(options: IngestOptions, settings: Settings) -> str | None:
        mirror = options.mirror or settings.lmsys_url
        mirror = mirror.strip() if mirror and mirror.strip() else None
        if mirror is not None and LmsysSource._is_url(mirror):
            try:
                parts = urlsplit(mirror)
                parts.port  # noqa: B018 - parsing the port is what validates it
                query = dict(parse_qsl(parts.query))
                for key in ("offset", "length"):
                    if key in query:
                        int(query[key])
            except ValueError as exc:
                raise SourceError(f"{NAME}: {redact_url(mirror)} is not a valid mirror URL ({exc}); check the --source "
                                  "URL (or RECSYS_LMSYS_URL).", source=NAME) from exc
        return mirror

    @staticmethod
    def _is_url(mirror: str) -> bool:
        return mirror.lower().startswith(("http://", "https://"))

    def _remote_kind(self, mirror: str) -> str:
        path = urlsplit(mirror).path.lower()
        if path.endswith(".parquet"):
            return "parquet"
        if path.endswith("/rows") or path.endswith(".json"):
            return "rows"
        if path.endswith(".csv"):
            return "csv"
        return "hub"

    @staticmethod
    def _local_kind(path: Path) -> str:
        if path.is_dir():
            return "folder"
        try:
            with path.open("rb") as handle:
                head = handle.read(64)
        except OSError as exc:
            raise SourceError(f"{NAME}: cannot read {path}: {exc.strerror or exc}.", source=NAME) from exc
        if head[:4] == b"PAR1":
            return "parquet"
        if head.lstrip()[:1] == b"{":
            return "rows"
        if path.suffix.lower() == ".csv":
            return "csv"
        raise SourceError(f"{NAME}: {path} is not in a supported format. {_UNSUPPORTED}", source=NAME)

    @staticmethod
    def _config_of(path_parts: Sequence[str], fallback: str) -> str:
        if len(path_parts) >= 2 and path_parts[-1] == C.PARQUET_FILE and _CONFIG_NAME.match(path_parts[-2]):
            return path_parts[-2]
        return fallback

    def _local_path(self, mirror: str) -> Path:
        path = Path(mirror).expanduser()
        if not path.exists():
            raise SourceError(f"{NAME}: the mirror {mirror} does not exist; pass an existing file or folder, "
                              "or a URL.", source=NAME)
        return path

    def _read_local(self, path: Path) -> bytes:
        key = str(path)
        if key not in self._cache:
            try:
                self._cache[key] = path.read_bytes()
            except OSError as exc:
                raise SourceError(f"{NAME}: cannot read {path}: {exc.strerror or exc}.", source=NAME) from exc
        return self._cache[key]

    def _folder_file(self, folder: Path, config: str) -> Path:
        file = folder / config / C.PARQUET_FILE
        if not file.is_file():
            raise SourceError(f"{NAME}: the mirror {folder} has no {config}/{C.PARQUET_FILE}; lay it out like the "
                              f"dataset repo ({C.DATASET_ID}), one folder per config.", source=NAME)
        return file

    # --- Source ---

    def scope(self, options: IngestOptions) -> str | None:
        """The configs a run ingests: asking for another config re-reads an unchanged dataset sha."""
        return "configs:" + ",".join(sorted(self.configs))

    def resolve_version(self, options: IngestOptions) -> str:
        mirror = self._mirror(options, self.settings)
        if mirror is None:
            return self._hub_sha(self.endpoint)
        if self._is_url(mirror):
            kind = self._remote_kind(mirror)
            if kind == "hub":
                return self._hub_sha(mirror)
            if kind == "csv":
                raise SourceError(f"{NAME}: legacy leaderboard CSVs are read from a local file only (a one-off "
                                  "backfill); download it and pass its path.", source=NAME)
            if kind == "parquet":
                return hashlib.sha256(self._download(mirror, "lmsys parquet")).hexdigest()
            return hashlib.sha256(json.dumps(self._rows_document(mirror), sort_keys=True).encode()).hexdigest()
        path = self._local_path(mirror)
        kind = self._local_kind(path)
        if kind == "folder":
            return self._folder_version(path)
        data = self._read_local(path)
        if kind == "csv":
            return legacy_csv_version(path, data)[0]
        return hashlib.sha256(data).hexdigest()

    def load(self, version: str, options: IngestOptions) -> Batch:
        mirror = self._mirror(options, self.settings)
        batch = Batch()
        seen: set[tuple[str, str]] = set()
        if mirror is None or (self._is_url(mirror) and self._remote_kind(mirror) == "hub"):
            endpoint = mirror or self.endpoint
            for config in self.configs:
                url = C.parquet_url(version, config, endpoint=endpoint)
                parse_parquet(self._download(url, f"lmsys {config}"), config=config, origin=redact_url(url),
                              batch=batch, seen=seen)
            batch.details["configs"] = list(self.configs)
        elif self._is_url(mirror):
            parts = urlsplit(mirror).path.split("/")
            if self._remote_kind(mirror) == "parquet":
                config = self._config_of(parts, self.configs[0])
                parse_parquet(self._download(mirror, "lmsys parquet"), config=config, origin=redact_url(mirror),
                              batch=batch)
            else:
                query = dict(parse_qsl(urlsplit(mirror).query))
                config = query.get("config") or self.configs[0]
                if not _CONFIG_NAME.match(config):
                    raise SourceError(f"{NAME}: {config!r} in {redact_url(mirror)} is not a dataset config name.",
                                      source=NAME)
                parse_rows_page(self._rows_document(mirror), config=config, origin=redact_url(mirror), batch=batch)
            batch.details["configs"] = [config]
        else:
            path = self._local_path(mirror)
            kind = self._local_kind(path)
            if kind == "folder":
                for config in self.configs:
                    file = self._folder_file(path, config)
                    parse_parquet(self._read_local(file), config=config, origin=str(file), batch=batch, seen=seen)
                batch.details["configs"] = list(self.configs)
            elif kind == "csv":
                data = self._read_local(path)
                try:
                    text = data.decode("utf-8-sig")
                except UnicodeDecodeError as exc:
                    raise SourceSchemaError(f"{NAME}: {path} is not UTF-8 text.", source=NAME) from exc
                parse_legacy_csv(text, origin=str(path), batch=batch,
                                 published_on=legacy_csv_version(path, data)[1])
                batch.details["format"] = "legacy-csv"
            elif kind == "parquet":
                config = self._config_of(path.parts, self.configs[0])
                parse_parquet(self._read_local(path), config=config, origin=str(path), batch=batch)
                batch.details["configs"] = [config]
            else:
                document = self._local_rows_document(path)
                parse_rows_page(document, config=self.configs[0], origin=str(path), batch=batch)
                batch.details["configs"] = [self.configs[0]]
        return batch

    # --- versions and documents ---

    def _hub_sha(self, endpoint: str) -> str:
        url = C.api_url(endpoint)
        document = self.http().get_json(url)
        sha = document.get("sha") if isinstance(document, dict) else None
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise SourceSchemaError(f"{NAME}: {redact_url(url)} answered without a dataset commit sha; the Hub API "
                                    "changed or the URL is not a dataset.", source=NAME, url=url)
        return sha

    def _folder_version(self, folder: Path) -> str:
        pinned = folder / C.VERSION_FILE
        if pinned.is_file():
            text = pinned.read_text("utf-8", errors="replace").strip().splitlines()
            if text and text[0].strip():
                return text[0].strip()[:256]
        head = _read_git_head(folder)
        if head:
            return head
        digest = hashlib.sha256()
        for config in self.configs:
            digest.update(config.encode() + b"\0" + self._read_local(self._folder_file(folder, config)))
        return digest.hexdigest()

    def _local_rows_document(self, path: Path) -> Any:
        try:
            document = json.loads(self._read_local(path))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise SourceSchemaError(f"{NAME}: {path} is not valid JSON. {_UNSUPPORTED}", source=NAME) from exc
        if isinstance(document, dict) and isinstance(document.get("rows"), list):
            total = document.get("num_rows_total")
            if isinstance(total, int) and len(document["rows"]) < total:
                raise SourceSchemaError(
                    f"{NAME}: {path} holds {len(document['rows'])} of {total} rows (one /rows page); save every "
                    "page into one document or mirror the parquet file instead.", source=NAME)
        return document

    def _rows_document(self, url: str) -> Any:
        """Every page of a datasets-server ``/rows`` query, merged into one document."""
        key = f"rows:{url}"
        if key in self._cache:
            return json.loads(self._cache[key])
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        offset = int(query.get("offset", "0") or 0)
        length = min(int(query.get("length", str(C.ROWS_PAGE_LENGTH)) or C.ROWS_PAGE_LENGTH), C.ROWS_PAGE_LENGTH)
        merged: dict[str, Any] | None = None
        for _ in range(100_000):  # a bound, not a limit anyone reaches
            query.update(offset=str(offset), length=str(length))
            page_url = urlunsplit(parts._replace(query=urlencode(query)))
            page = self.http().get_json(page_url)
            if not isinstance(page, dict) or not isinstance(page.get("rows"), list):
                raise SourceSchemaError(f"{NAME}: {redact_url(page_url)} is not a datasets-server /rows page "
                                        "(no 'rows' list).", source=NAME, url=page_url)
            if merged is None:
                merged = page
            else:
                merged["rows"].extend(page["rows"])
            total = page.get("num_rows_total")
            offset += len(page["rows"])
            if not page["rows"] or not isinstance(total, int) or offset >= total:
                break
        self._cache[key] = json.dumps(merged).encode()
        return merged
