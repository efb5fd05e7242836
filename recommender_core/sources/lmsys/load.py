"""Reading LMArena ratings for the ``lmsys`` plugin: the Hub, mirrors, versions and the parsers.

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

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import SourceError, SourceSchemaError
from ...redact import redact_url
from ..base import Batch, IngestOptions, git_head
from ..http import SourceClient
from . import CONFIG_NAME as _CONFIG_NAME
from . import NAME
from . import constants as C

if TYPE_CHECKING:
    from . import LmsysSource

from .parse import UNSUPPORTED as _UNSUPPORTED
from .parse import legacy_csv_version, parse_legacy_csv, parse_parquet, parse_rows_page

__all__ = ["LmsysReader", "legacy_csv_version", "parse_legacy_csv", "parse_parquet", "parse_rows_page"]

_SHA = re.compile(r"^[0-9a-f]{40}$")



class LmsysReader:
    """One run's reading of the Hub or a mirror for an ``LmsysSource`` (bodies cached: one download per run)."""

    def __init__(self, source: LmsysSource) -> None:
        self.source = source
        self.settings, self.configs, self.endpoint = source.settings, source.configs, source.endpoint
        self.progress = source.progress
        # Bodies fetched while resolving the version, reused by load (one download per run).
        self._cache: dict[str, bytes] = {}

    # --- plumbing ---

    def http(self) -> SourceClient:
        token = self.settings.hf_token.get_secret_value() if self.settings.hf_token else None
        return self.source.http(token)

    def close(self) -> None:
        self._cache.clear()

    def _download(self, url: str, label: str) -> bytes:
        if url not in self._cache:
            callback = self.progress(label) if self.progress is not None else None
            self._cache[url] = self.http().get(url, progress=callback).content
        return self._cache[url]

    def _mirror(self, options: IngestOptions) -> str | None:
        mirror = self.source.mirror(options)
        if mirror is not None and self._is_url(mirror):
            try:
                parts = urlsplit(mirror)
                parts.port  # noqa: B018 - parsing the port is what validates it
                query = dict(parse_qsl(parts.query))
                for key in ("offset", "length"):
                    if key in query:
                        int(query[key])
            except ValueError as exc:
                raise SourceError(f"{NAME}: {redact_url(mirror)} is not a valid mirror URL ({exc}); check the mirror "
                                  "URL (or RECSYS_LMSYS_URL).", source=NAME, option="mirror") from exc
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

    # --- version and rows ---

    def resolve_version(self, options: IngestOptions) -> str:
        mirror = self._mirror(options)
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
        mirror = self._mirror(options)
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
        head = git_head(folder)
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
