"""One model folder -> evidence records, with the one revision rule (``revision_key``).

When several revisions of a model hold a task, the newest ``mteb_version`` wins, then a real revision
over ``no_revision_available`` over ``external``, then the greatest revision name (deterministic). A
task missing from the map is still evidence when the file carries its own main scores (``task_type``
None, counted as ``unmapped_task``).
"""

from __future__ import annotations

import bisect
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...errors import SourceError
from ..base import Batch, EvidenceRecord
from ..mirror import OutsideMirror
from .constants import (
    MODEL_META,
    REJECT_UNREADABLE,
    SKIP_NESTED,
    SKIP_NOT_JSON,
    UNMAPPED_TASK,
    UNMAPPED_TASKS,
    revision_rank,
)
from .parse import Rejected, TaskMap, TaskScore, _version_tuple, parse_result

__all__ = [
    "FileReader",
    "RevisionKey",
    "add_records",
    "folder_model_name",
    "ingest_model_folder",
    "note_unmapped",
    "revision_key",
]

log = logging.getLogger("recsys.sources.mteb")


# --- revisions and model names -----------------------------------------------------------------------


def folder_model_name(folder: str) -> str:
    """``BAAI__bge-base-en-v1.5`` -> ``BAAI/bge-base-en-v1.5`` (the fallback when model_meta.json is missing)."""
    return folder.replace("__", "/", 1)


def _model_name(folder: str, meta_raw: bytes | None) -> str:
    name = None
    if meta_raw is not None:
        try:
            meta = json.loads(meta_raw)
            name = meta.get("name") if isinstance(meta, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            name = None
    if not isinstance(name, str) or not name.strip():
        return folder_model_name(folder)
    name = name.strip()
    # Variant folders such as `openai__text-embedding-3-small_(embed_dim=512)` share the meta name:
    # keep the folder's suffix so the variant stays a model of its own.
    stem = name.replace("/", "__")
    if folder != stem and folder.startswith(stem):
        return name + folder[len(stem):]
    return name


RevisionKey = tuple[tuple[int, ...], int, str]


def revision_key(mteb_version: tuple[int, ...] | None, revision: str) -> RevisionKey:
    """The one revision rule: when several revisions of a model hold a task, the greatest key wins:
    the newest ``mteb_version`` (unknown lowest), then a real revision over ``no_revision_available``
    over ``external``, then the greatest revision name (deterministic)."""
    return (mteb_version or (-1,), revision_rank(revision), revision)


@dataclass
class _Pick:
    key: RevisionKey
    model: str
    revision: str
    score: TaskScore


@dataclass
class _ModelFolder:
    """Per model folder: the chosen revision per (model name, task)."""

    folder: str
    picks: dict[tuple[str, str], _Pick] = field(default_factory=dict)

    def offer(self, model: str, revision: str, score: TaskScore) -> None:
        key = revision_key(score.mteb_version, revision)
        slot = (model, score.task)
        current = self.picks.get(slot)
        if current is None or key > current.key:
            self.picks[slot] = _Pick(key, model, revision, score)

    def records(self) -> Iterator[EvidenceRecord]:
        # Records are held until the run's single write: share every repeated string and the extra
        # mapping, so memory per row stays small on the whole repository.
        extras: dict[tuple[int, ...] | None, dict[str, Any]] = {}
        for (model, task), pick in sorted(self.picks.items()):
            s = pick.score
            extra = extras.get(s.mteb_version)
            if extra is None:
                version = ".".join(map(str, s.mteb_version)) if s.mteb_version else None
                extra = extras[s.mteb_version] = {"folder": sys.intern(self.folder), "mteb_version": version}
            if len(s.splits) > 1:  # the split column may only summarise them: keep the list
                extra = {**extra, "splits": list(s.splits)}
            task_type = None if s.task_type is None else sys.intern(s.task_type)
            yield EvidenceRecord(model=sys.intern(model), category=sys.intern(task), value=s.value,
                                 metric="main_score", task_type=task_type,
                                 revision=sys.intern(pick.revision), split=sys.intern(s.split),
                                 subset_count=s.subset_count, extra=extra)


def _record_key(record: EvidenceRecord) -> RevisionKey:
    """The revision rule for records already built (their mteb version is in their extra)."""
    return revision_key(_version_tuple(record.extra.get("mteb_version")), record.revision or "")


def add_records(batch: Batch, records: list[EvidenceRecord], owners: dict[str, str], folder: str) -> None:
    """Append a folder's records; a model name another folder already produced is merged task by task
    with the same revision rule (one row per model and task, whichever folder it came from)."""
    collided = {r.model for r in records if owners.setdefault(r.model, folder) != folder}
    if not collided:
        batch.records.extend(records)
        return
    positions = {(r.model, r.category): i for i, r in enumerate(batch.records) if r.model in collided}
    for record in records:
        at = positions.get((record.model, record.category))
        if at is None:
            positions[(record.model, record.category)] = len(batch.records)
            batch.records.append(record)
        elif _record_key(record) > _record_key(batch.records[at]):
            batch.records[at] = record
    batch.details["merged_folders"] = batch.details.get("merged_folders", 0) + 1


# A folder's files: (path relative to the model folder with "/" separators, a reader of its bytes).
FileReader = Callable[[], bytes]


def ingest_model_folder(folder: str, files: Iterable[tuple[str, FileReader]], batch: Batch,
                        tasks: TaskMap) -> list[EvidenceRecord]:
    """Parse one model folder's files (the one parser every mode feeds) into records, counting rejects."""
    result = _ModelFolder(folder)
    by_revision: dict[str, list[tuple[str, FileReader]]] = {}
    metas: dict[str, FileReader] = {}
    for rel, reader in files:
        parts = rel.split("/")
        if len(parts) < 2:
            batch.skipped[SKIP_NESTED if parts[-1].endswith(".json") else SKIP_NOT_JSON] += 1
            continue
        if not parts[-1].endswith(".json"):
            batch.skipped[SKIP_NOT_JSON] += 1
            continue
        if len(parts) > 2:
            batch.skipped[SKIP_NESTED] += 1
            continue
        revision, filename = parts
        if filename == MODEL_META:
            metas[revision] = reader
        else:
            by_revision.setdefault(revision, []).append((filename, reader))
    for revision, entries in sorted(by_revision.items()):
        meta_reader = metas.get(revision)
        meta_raw = None
        if meta_reader is not None:
            try:
                meta_raw = meta_reader()
            except (OSError, SourceError) as exc:
                log.warning("%s/%s/%s unreadable (%s); using the folder name", folder, revision, MODEL_META, exc)
        model = _model_name(folder, meta_raw)
        for filename, reader in entries:
            try:
                raw = reader()
            except OutsideMirror as exc:
                batch.reject(exc.reason)
                _note_example(batch, exc.reason, f"{folder}/{revision}/{filename}")
                continue
            except OSError as exc:
                batch.reject(REJECT_UNREADABLE)
                log.debug("%s/%s/%s unreadable: %s", folder, revision, filename, exc)
                continue
            try:
                score = parse_result(raw, file_task=filename[:-5], tasks=tasks)
            except Rejected as exc:
                batch.reject(exc.reason)
                _note_example(batch, exc.reason, f"{folder}/{revision}/{filename}")
                continue
            if score.task_type is None:
                note_unmapped(batch, score.task)
            result.offer(model, revision, score)
    return list(result.records())


def note_unmapped(batch: Batch, task: str) -> None:
    """Count a score of a task the task map does not know: stored (``task_type`` null), not rejected, and
    named in the run summary so users know to regenerate the map."""
    batch.details[UNMAPPED_TASK] = batch.details.get(UNMAPPED_TASK, 0) + 1
    names: list[str] = batch.details.setdefault(UNMAPPED_TASKS, [])
    at = bisect.bisect_left(names, task)
    if at == len(names) or names[at] != task:
        names.insert(at, task)


def _note_example(batch: Batch, reason: str, path: str) -> None:
    examples: dict[str, list[str]] = batch.details.setdefault("rejected_examples", {})
    listed = examples.setdefault(reason, [])
    if len(listed) < 3:
        listed.append(path)
