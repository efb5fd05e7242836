"""Saved ``recsys snapshot --json`` documents as utility tables: read, checked, and built into a
``UtilityTable`` (``route-test --scores``, ``RecommenderRouter(scores=PATH)``), so routing needs no
database in CI."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .table import ScoreRow, UtilityTable

__all__ = ["MAX_SNAPSHOT_BYTES", "read_snapshot", "table_from_snapshot"]

_ROUNDING = 1e-9


def _number(doc_path: str, where: str, value: Any, *, optional: bool = False, upper: float | None = None) -> float:
    """A finite number from 0 to ``upper`` (no bound when None); absent and optional: 0."""
    if value is None and optional:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"Snapshot {doc_path}: {where} must be a number, got {_shown(value)}. "
                          "Save a fresh one with 'recsys snapshot --json'.")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**1023 else math.inf
    # The tolerance is for float rounding: a utility of weights normalised to sum 1 can be 1 + 1 ulp.
    if not math.isfinite(number) or number < -_ROUNDING or (upper is not None and number > upper + _ROUNDING):
        scale = f"from 0 to {upper:g}" if upper is not None else "of at least 0"
        raise ConfigError(f"Snapshot {doc_path}: {where} must be a finite number {scale}, got {_shown(value)}. "
                          "Save a fresh one with 'recsys snapshot --json'.")
    return number


# A saved snapshot is a few hundred KB for dozens of tasks and models; this leaves room for thousands.
MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024
_SAVE_HINT = "Save one with 'recsys snapshot --json > FILE'."


def _read_snapshot_bytes(file: Path) -> bytes:
    """The file's bytes: a regular file (never a FIFO, device or directory: reading one could block
    forever or never end), at most ``MAX_SNAPSHOT_BYTES``."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it.
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise ConfigError(f"Snapshot file {file} does not exist. {_SAVE_HINT}") from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read snapshot file {file}: {exc.strerror or exc}. {_SAVE_HINT}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"Snapshot {file} is not a regular file (a directory, FIFO or device); give the "
                              f"path of a saved snapshot. {_SAVE_HINT}")
        if info.st_size > MAX_SNAPSHOT_BYTES:
            raise ConfigError(f"Snapshot {file} is {info.st_size} bytes, over the {MAX_SNAPSHOT_BYTES}-byte limit "
                              f"for a saved snapshot. {_SAVE_HINT}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_SNAPSHOT_BYTES + 1)  # a file that grew since fstat is still bounded
    except OSError as exc:
        raise ConfigError(f"Cannot read snapshot file {file}: {exc.strerror or exc}. {_SAVE_HINT}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ConfigError(f"Snapshot {file} is over the {MAX_SNAPSHOT_BYTES}-byte limit for a saved snapshot. "
                          f"{_SAVE_HINT}")
    return data


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """The document of a saved ``recsys snapshot --json`` file, checked; ``ConfigError`` otherwise.

    The rules (``docs/reliability.md`` lists them too):

    - a regular file (a symlink to one is fine) of at most ``MAX_SNAPSHOT_BYTES`` (32 MiB);
    - UTF-8 JSON holding an object, with no ``NaN``/``Infinity`` and nesting Python can parse;
    - ``schema_version`` present and the integer this recsys writes (``1``): a larger one was written
      by a newer recsys ("upgrade"), anything else (``"1"``, ``0``, missing) is not a snapshot;
    - ``tasks`` an object of task -> list of entries, each with a non-empty ``model`` name (once per
      task) and a finite ``utility`` in [0, 1]; ``quality``, ``cost``, ``latency``, ``reliability``
      and ``success_rate`` finite in [0, 1] when present; ``cost_per_1k_tokens`` and
      ``latency_p95_ms`` finite and at least 0 when present (every bound give or take 1e-9 of float
      rounding); ``evidence``, when present, a list of strings;
    - ``excluded``, when present, an object of task -> list of ``{"model", "reason"}`` strings.
    """
    from ..diagnostics.snapshot import SCHEMA_VERSION

    file = Path(path)
    data = _read_snapshot_bytes(file)
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise ConfigError(f"Snapshot file {file} is nested too deeply to be a snapshot. {_SAVE_HINT}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"Snapshot file {file} is not a JSON document: {str(exc)[:200]}. {_SAVE_HINT}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"Snapshot file {file} is not a JSON object. {_SAVE_HINT}")
    version = doc.get("schema_version")
    if "schema_version" not in doc:
        raise ConfigError(f"Snapshot file {file} has no schema_version, so it is no recsys snapshot. {_SAVE_HINT}")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"Snapshot {file}: schema_version must be the whole number {SCHEMA_VERSION}, got "
                          f"{_shown(version)}. {_SAVE_HINT}")
    if version > SCHEMA_VERSION:
        raise ConfigError(f"Snapshot {file} has schema_version {_shown(version)}: it was written by a newer "
                          f"recsys (this one reads {SCHEMA_VERSION}). Upgrade recsys to route from it.")
    if version != SCHEMA_VERSION:
        raise ConfigError(f"Snapshot {file} has schema_version {_shown(version)}, which no recsys writes (this "
                          f"one reads {SCHEMA_VERSION}). {_SAVE_HINT}")
    if not isinstance(doc.get("tasks"), dict):
        raise ConfigError(f"Snapshot file {file} has no 'tasks' object. {_SAVE_HINT}")
    return doc


def _shown(value: Any) -> str:
    """A value from the file as it may be quoted in one line: repr, bounded."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return "an integer of more than 30 digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(name: str) -> str:
    """A key from the file as it may be printed: as it is when short and printable, else quoted."""
    return name if name.isprintable() and len(name) <= 60 else _shown(name)


def _score_row(file: str, where: str, entry: dict[str, Any]) -> ScoreRow:
    def unit(name: str, *, optional: bool = True) -> float:
        return _number(file, f"{where}.{name}", entry.get(name), optional=optional, upper=1.0)

    def amount(name: str) -> float:
        return _number(file, f"{where}.{name}", entry.get(name), optional=True)

    return ScoreRow(
        model=entry["model"], utility=unit("utility", optional=False), quality=unit("quality"), cost=unit("cost"),
        latency=unit("latency"), reliability=unit("reliability"), cost_per_1k_tokens=amount("cost_per_1k_tokens"),
        latency_p95_ms=amount("latency_p95_ms"),
        success_rate=None if entry.get("success_rate") is None else unit("success_rate"),
        evidence=_evidence(file, where, entry.get("evidence")))


def _evidence(file: str, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"Snapshot {file}: {where}.evidence must be a list of references. "
                          "Save a fresh one with 'recsys snapshot --json'.")
    return tuple(value)


def table_from_snapshot(path: str | Path) -> UtilityTable:
    """The ``tasks`` of a saved ``recsys snapshot --json`` document (docs/snapshot.schema.json), checked
    by the rules of ``read_snapshot``."""
    file = Path(path)
    doc = read_snapshot(file)
    rows: dict[str, list[ScoreRow]] = {}
    for task, entries in doc["tasks"].items():
        if not isinstance(entries, list):
            raise ConfigError(f"Snapshot {file}: tasks.{_key(task)} must be a list.")
        for i, e in enumerate(entries):
            where = f"tasks.{_key(task)}[{i}]"
            if not isinstance(e, dict) or not isinstance(e.get("model"), str) or not e["model"]:
                raise ConfigError(f"Snapshot {file}: {where} needs a 'model' name.")
            rows.setdefault(task, []).append(_score_row(str(file), where, e))
    # The snapshot's per-task exclusions (with the scoring run's reasons), so a decision routed from a
    # saved snapshot explains itself exactly as one routed from the store (golden files compare both).
    excluded: dict[str, list[tuple[str, str]]] = {}
    listed = doc.get("excluded") or {}
    if not isinstance(listed, dict):
        raise ConfigError(f"Snapshot {file}: 'excluded' must be an object of task -> list.")
    for task, entries in listed.items():
        if not isinstance(entries, list):
            raise ConfigError(f"Snapshot {file}: excluded.{_key(task)} must be a list.")
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("model"), str) or not isinstance(e.get("reason"), str):
                raise ConfigError(f"Snapshot {file}: excluded.{_key(task)}[{i}] needs a 'model' and a 'reason'.")
            excluded.setdefault(task, []).append((e["model"], e["reason"]))
    return UtilityTable.build(rows, excluded=excluded, origin=f"snapshot {file}")
