"""``ingest mteb``: MTEB results (embeddings-benchmark/results) into evidence, one row per (model, task).

Three ways in, one parser:

- a local clone or mirror (``--source PATH`` / ``RECSYS_MTEB_URL``): every model folder, read one file at a
  time (flat memory for the whole 105k-file repository). Version: the git HEAD of a clone, else a
  fingerprint of the file list (paths, sizes, mtimes); a ``RECSYS_MIRROR_VERSION`` file at the root
  overrides it (the shipped sample mirror says ``sample``).
- network (default): the policy's embedding candidates only, through the GitHub API (commit sha of
  ``main`` -> root tree -> ``results`` tree -> each tracked model's tree). A model whose tree sha is the
  one recorded by the last successful run keeps its current evidence without a single download; the
  files of the others are read from raw URLs pinned to the commit sha.
- ``--all`` (network): every model from the Hugging Face dataset ``mteb/results`` (bulk parquet, files
  discovered through the Hub API, pinned to the dataset sha).

Aggregation (the same for all three), mteb's own: a task's score is the mean ``main_score`` over every
subset of every evaluated split, as ``TaskResult.get_score(splits=...)`` computes it. The evaluated splits
come from the task's evaluation splits in mteb's metadata (``choose_splits``). Legacy (pre-1.11) files take
the task's main metric from the task map. A task missing from the map is still evidence when the file
carries its own main scores (``task_type`` None, counted as ``unmapped_task``). When several revisions of a
model hold a task, the newest ``mteb_version`` wins, then a real revision over ``no_revision_available``
over ``external``, then the greatest revision name (deterministic).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import sqlalchemy as sa
from sqlmodel import Session

from ..errors import ConfigError, RejectedRow, SourceError, SourceSchemaError
from ..store import Store
from ..store.runs import current_ingest_run
from ..store.tables import BenchmarkEvidence, SourceState
from .base import Batch, EvidenceRecord, IngestOptions, IngestResult, Source, register_source
from .http import SourceClient
from .mirror import OutsideMirror, inside, read_inside
from .mteb_constants import (
    GITHUB_API,
    GITHUB_BRANCH,
    GITHUB_RAW,
    HF_API,
    HF_RESOLVE,
    MIRROR_VERSION_FILE,
    MODEL_META,
    PARQUET_COLUMNS,
    REJECT_AMBIGUOUS_SPLIT,
    REJECT_MALFORMED,
    REJECT_MISSING_SCORE,
    REJECT_MISSING_SPLIT,
    REJECT_NOT_A_RESULT,
    REJECT_OUTSIDE_MIRROR,
    REJECT_UNKNOWN_TASK,
    REJECT_UNREADABLE,
    SKIP_NESTED,
    SKIP_NOT_JSON,
    SKIP_UNCHANGED_TREE,
    STATE_TREE_PREFIX,
    TASKS_DATA_FILE,
    UNMAPPED_TASK,
    UNMAPPED_TASKS,
    revision_rank,
)
from .validate import check_version

__all__ = [
    "MtebSource",
    "Rejected",
    "TaskInfo",
    "TaskMap",
    "TaskScore",
    "add_records",
    "choose_splits",
    "folder_model_name",
    "load_task_map",
    "mirror_version",
    "note_unmapped",
    "parse_result",
]

log = logging.getLogger("recsys.sources.mteb")


# --- the task map ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskInfo:
    """What mteb's own task metadata says about a task."""

    type: str
    main_score: str
    eval_splits: tuple[str, ...]


class TaskMap(Mapping[str, TaskInfo]):
    """Task name -> metadata, from the mteb version that generated it (``mteb_version``); read-only.

    ``find`` looks a name up as mteb's own loader does: the exact name, else the same name in another case
    (``DiaBLaBitextMining`` result files are mteb's ``DiaBlaBitextMining``).
    """

    __slots__ = ("_folded", "mteb_version", "tasks")

    def __init__(self, tasks: Mapping[str, TaskInfo], *, mteb_version: str = "unknown") -> None:
        self.tasks = dict(tasks)
        self.mteb_version = mteb_version
        self._folded: dict[str, str] = {}
        for name in sorted(self.tasks):
            self._folded.setdefault(name.lower(), name)

    def __getitem__(self, name: str) -> TaskInfo:
        return self.tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def find(self, name: str) -> tuple[str, TaskInfo] | None:
        """The task's name as the map spells it and its metadata, or None for a task the map does not know."""
        info = self.tasks.get(name)
        if info is not None:
            return name, info
        canonical = self._folded.get(name.lower())
        return None if canonical is None else (canonical, self.tasks[canonical])


@lru_cache(maxsize=1)
def load_task_map() -> TaskMap:
    """The shipped task map (generated from mteb's task definitions by scripts/gen_mteb_tasks.py)."""
    text = resources.files("recommender_core").joinpath("data", TASKS_DATA_FILE).read_text(encoding="utf-8")
    document = json.loads(text)
    return TaskMap({name: TaskInfo(type=t["type"], main_score=t["main_score"], eval_splits=tuple(t["eval_splits"]))
                    for name, t in document["tasks"].items()}, mteb_version=str(document["mteb_version"]))


# --- the one parser ----------------------------------------------------------------------------------


class Rejected(Exception):
    """A result file that cannot become evidence; ``reason`` is counted in the run summary."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# The evidence table's split column holds at most this many characters; longer split lists are summarised.
_SPLIT_COLUMN_CHARS = 64


@dataclass(frozen=True)
class TaskScore:
    """One task's score from one result file: the mean main score over every subset of ``splits``.

    ``task_type`` is None for a task the task map does not know (its file still carries a main score).
    """

    task: str
    task_type: str | None
    value: float
    splits: tuple[str, ...]
    subset_count: int
    mteb_version: tuple[int, ...] | None

    @property
    def split(self) -> str:
        """The evaluated split, or the comma-joined splits averaged (``<n> splits`` when that is too long)."""
        joined = ",".join(self.splits)
        return joined if len(joined) <= _SPLIT_COLUMN_CHARS else f"{len(self.splits)} splits"


_VERSION = re.compile(r"\d+")


def _version_tuple(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        check_version(value, "mteb_version")  # a 5,000-digit version is a rejected file, not a ValueError
    except RejectedRow as bad:
        raise Rejected(bad.reason) from None
    return tuple(int(part) for part in _VERSION.findall(value)[:4]) or None


def choose_splits(splits: Iterable[str], info: TaskInfo | None) -> tuple[str, ...]:
    """The splits a task score averages, as mteb evaluates the task.

    ``test`` when the task evaluates it; else every evaluation split of the task (mteb's metadata) that the
    file holds; else ``test`` when present; else the only split. A task the map does not know, with several
    splits and no ``test``, averages all of them (what mteb's ``TaskResult.get_score`` does without metadata).
    """
    present = list(splits)
    if not present:
        raise Rejected(REJECT_MISSING_SPLIT)
    if info is not None:
        evaluated = tuple(s for s in info.eval_splits if s in present)
        if "test" in evaluated:
            return ("test",)
        if evaluated:
            return evaluated
    if "test" in present:
        return ("test",)
    if len(present) == 1 or info is None:
        return tuple(present)
    raise Rejected(REJECT_AMBIGUOUS_SPLIT, ", ".join(sorted(present)))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# Legacy (pre-1.11) metric groups, renamed as mteb's TaskResult._convert_from_before_v1_11_0 does:
# {"cos_sim": {"spearman": x}} becomes "cosine_spearman".
_LEGACY_GROUPS = {"cos_sim": "cosine", "manhattan": "manhattan", "euclidean": "euclidean", "dot": "dot",
                  "max": "max", "similarity": "similarity"}
# Dict-valued keys that are metric groups, not subsets (the same list mteb uses).
_NOT_SUBSETS = frozenset({"v_measures", "cos_sim", "euclidean", "manhattan", "dot", "max"})
_LEGACY_META = frozenset({"dataset_revision", "mteb_dataset_name", "mteb_version", "task_name", "evaluation_time"})


def _legacy_subset_score(metrics: dict[str, Any], main: str) -> float | None:
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in _LEGACY_GROUPS and isinstance(value, dict):
            for inner, number in value.items():
                flat[f"{_LEGACY_GROUPS[key]}_{inner}"] = number
        else:
            flat[key] = value
    if "main_score" in flat:
        return _number(flat["main_score"])
    found = _number(flat.get(main))
    if found is None and main.startswith("max_"):
        # Newer PairClassification tasks score "max_<m>" (the best similarity function); old files
        # hold "<similarity>_<m>" per function only: take their maximum (mteb itself leaves it null).
        tail = f"_{main[4:]}"
        values = [v for k, v in ((k, _number(v)) for k, v in flat.items())
                  if v is not None and k.endswith(tail) and k[: -len(tail)] in _LEGACY_GROUPS.values()]
        found = max(values) if values else None
    return found


def _legacy_score(data: dict[str, Any], task: str, info: TaskInfo) -> TaskScore:
    splits = {k: v for k, v in data.items() if isinstance(v, dict) and k not in _LEGACY_META}
    chosen = choose_splits(splits, info)
    has_subsets = any(isinstance(v, dict) and k not in _NOT_SUBSETS
                      for per_split in splits.values() for k, v in per_split.items())
    values: list[float] = []
    for split in chosen:
        block = splits[split]
        subsets = [v for k, v in block.items() if isinstance(v, dict) and k not in _NOT_SUBSETS] \
            if has_subsets else [block]
        for subset in subsets:
            value = _legacy_subset_score(subset, info.main_score)
            if value is None:
                raise Rejected(REJECT_MISSING_SCORE, f"{task}: no {info.main_score} in split {split}")
            values.append(value)
    if not values:
        raise Rejected(REJECT_MISSING_SCORE, f"{task}: no {info.main_score} in split {', '.join(chosen)}")
    return TaskScore(task, info.type, math.fsum(values) / len(values), chosen, len(values),
                     _version_tuple(data.get("mteb_version")))


def _subset_scores(name: str, scores: dict[str, Any], chosen: tuple[str, ...]) -> list[float]:
    """Every subset's main score in the chosen splits, counted as mteb's ``TaskResult.get_score`` counts them:
    a subset whose ``languages`` list is empty is left out of the mean."""
    values: list[float] = []
    for split in chosen:
        subsets = scores[split]
        if not isinstance(subsets, list) or not subsets:
            raise Rejected(REJECT_MISSING_SPLIT, f"{name}: split {split} holds no subsets")
        for subset in subsets:
            if isinstance(subset, dict) and subset.get("languages") == []:
                continue
            value = _number(subset.get("main_score")) if isinstance(subset, dict) else None
            if value is None:
                raise Rejected(REJECT_MISSING_SCORE, f"{name}: a subset of {split} has no numeric main_score")
            values.append(value)
    if not values:
        raise Rejected(REJECT_MISSING_SCORE, f"{name}: no subset of {', '.join(chosen)} names a language")
    return values


def parse_result(raw: bytes, *, file_task: str, tasks: TaskMap) -> TaskScore:
    """One result file's task score; raises ``Rejected`` with a reason for anything else.

    A task the map does not know is still evidence when the file carries its own main scores (mteb 1.11 and
    later): its score has ``task_type`` None. A legacy file of such a task names no main score: rejected.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Rejected(REJECT_MALFORMED, str(exc)) from exc
    if not isinstance(data, dict):
        raise Rejected(REJECT_NOT_A_RESULT)
    name = data.get("task_name") or data.get("mteb_dataset_name") or file_task
    if not isinstance(name, str):
        raise Rejected(REJECT_NOT_A_RESULT)
    found = tasks.find(name)
    info = None
    if found is not None:
        name, info = found
    scores = data.get("scores")
    if scores is None:
        if info is None:
            raise Rejected(REJECT_UNKNOWN_TASK, name)
        return _legacy_score(data, name, info)
    if not isinstance(scores, dict):
        raise Rejected(REJECT_NOT_A_RESULT)
    chosen = choose_splits(scores, info)
    values = _subset_scores(name, scores, chosen)
    return TaskScore(name, info.type if info else None, math.fsum(values) / len(values), chosen, len(values),
                     _version_tuple(data.get("mteb_version")))


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


@dataclass
class _Pick:
    key: tuple[Any, ...]
    model: str
    revision: str
    score: TaskScore


@dataclass
class _ModelFolder:
    """Per model folder: the chosen revision per (model name, task)."""

    folder: str
    picks: dict[tuple[str, str], _Pick] = field(default_factory=dict)

    def offer(self, model: str, revision: str, score: TaskScore) -> None:
        key = (score.mteb_version or (-1,), revision_rank(revision), revision)
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


def _record_key(record: EvidenceRecord) -> tuple[Any, ...]:
    """The revision rule of ``_ModelFolder.offer`` for records already built (from their extra)."""
    version = _version_tuple(record.extra.get("mteb_version")) or (-1,)
    revision = record.revision or ""
    return (version, revision_rank(revision), revision)


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


# --- local mirrors -----------------------------------------------------------------------------------


def _results_dir(root: Path) -> Path:
    if (root / "results").is_dir() and inside(root, root / "results"):
        return root / "results"
    return root


def _git_head(root: Path) -> str | None:
    """The clone's HEAD commit, or None when ``root`` is not a readable clone (then its files are fingerprinted)."""
    try:
        return _read_git_head(root)
    except (OSError, UnicodeDecodeError):
        return None


def _read_git_head(root: Path) -> str | None:
    git = root / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            git = (root / text.split(":", 1)[1].strip()).resolve()
    if not git.is_dir():
        return None
    head = (git / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    for base in (git, git.parent if git.parent.name == "worktrees" else git):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
    commondir = git / "commondir"
    common = (git / commondir.read_text(encoding="utf-8").strip()).resolve() if commondir.is_file() else git
    loose = common / ref
    if loose.is_file():
        return loose.read_text(encoding="utf-8").strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    return None


def _walk(directory: Path, rel: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files under ``directory`` in sorted order, with "/"-separated relative paths (streamed)."""
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            if entry.name.startswith("."):
                continue
            yield from _walk(Path(entry.path), path)
        elif entry.is_file() or entry.is_symlink():  # a dangling link is counted as unreadable
            yield path, entry


def mirror_version(root: Path) -> str:
    """A mirror's version: the override file, else git HEAD, else a fingerprint of its file list."""
    override = root / MIRROR_VERSION_FILE
    if override.is_file() and inside(root, override):
        first = read_inside(root, override).decode("utf-8", errors="replace").strip().splitlines()
        if first and first[0].strip():
            return first[0].strip()
    head = _git_head(root)
    if head:
        return head
    digest = hashlib.sha256()
    results = _results_dir(root)
    count = 0
    for rel, entry in _walk(results):
        stat = entry.stat(follow_symlinks=False)
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        count += 1
    return f"files:{count}:{digest.hexdigest()[:16]}"


def _file_reader(path: str, root: Path) -> FileReader:
    def read() -> bytes:
        return read_inside(root, path)  # never a file outside the mirror, never a FIFO

    return read


def _mirror_path(value: str) -> Path:
    if value.startswith("file://"):
        value = value[len("file://"):]
    elif "://" in value:
        raise ConfigError(
            f"mteb: {value!r} is a URL, but an MTEB mirror (--source or RECSYS_MTEB_URL) must be a local folder: "
            "clone https://github.com/embeddings-benchmark/results and pass its path, or set neither to read "
            "the policy's candidates through the GitHub API (--all: every model from the Hugging Face dataset).")
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise ConfigError(f"mteb: {value} {what}; pass a clone or mirror of embeddings-benchmark/results "
                          "(an unpacked folder).")
    return path


def _parquet_batches(parquet: Any, path: str) -> Iterator[dict[str, list[Any]]]:
    """The parquet's rows in column batches; a corrupt page past the footer is a clear error, not a crash."""
    import pyarrow as pa

    batches = parquet.iter_batches(columns=list(PARQUET_COLUMNS), batch_size=65536)
    while True:
        try:
            part = next(batches)
        except StopIteration:
            return
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise SourceSchemaError(f"mteb: {path} is corrupt ({exc}); nothing was written, run again later.",
                                    source="mteb") from exc
        yield part.to_pydict()


def _unreadable_mirror(root: Path, exc: OSError) -> SourceError:
    return SourceError(f"mteb: the mirror {root} cannot be read ({exc.strerror or exc}: {exc.filename}); check "
                       "that it is complete and readable (not being updated right now), then run again.",
                       source="mteb")


def _json_object(http: SourceClient, url: str) -> dict[str, Any]:
    """A JSON object from ``url``; anything else (a list, a string) is a clear error, not a crash."""
    document = http.get_json(url)
    if not isinstance(document, dict):
        raise SourceSchemaError(f"mteb: {url} answered {type(document).__name__} JSON where an object was "
                                "expected; the API changed or the URL is wrong.", source="mteb", url=url)
    return document


def _tree_entries(document: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """(path, sha) of a GitHub tree listing's entries of ``kind`` (``tree`` or ``blob``), malformed ones left out."""
    entries = document.get("tree")
    return [(e["path"], e.get("sha") or "") for e in entries if isinstance(e, dict) and e.get("type") == kind
            and isinstance(e.get("path"), str)] if isinstance(entries, list) else []


# --- the source --------------------------------------------------------------------------------------


ClientFactory = Callable[[str, str | None], SourceClient]


def _default_client(source: str, token: str | None) -> SourceClient:
    return SourceClient(source=source, token=token)


@register_source
class MtebSource(Source):
    """MTEB per-task results: a local mirror, the GitHub API (policy candidates), or the HF parquet (--all)."""

    name: ClassVar[str] = "mteb"
    job: ClassVar[str] = "ingest-mteb"

    client_factory: ClassVar[ClientFactory] = staticmethod(_default_client)

    def __init__(self, *args: Any, tasks: TaskMap | None = None,
                 client: SourceClient | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks = tasks
        self._client = client
        self._store: Store | None = None
        self._state: dict[str, str] = {}

    # -- plumbing --

    @property
    def tasks(self) -> TaskMap:
        """The task map, loaded when first needed (an unchanged run never needs it)."""
        if self._tasks is None:
            self._tasks = load_task_map()
        return self._tasks

    def _http(self, token: str | None) -> SourceClient:
        if self._client is None:
            self._client = type(self).client_factory(self.name, token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _mirror(self, options: IngestOptions) -> str | None:
        return options.mirror or self.settings.mteb_url

    def run(self, store: Store, options: IngestOptions) -> IngestResult:
        self._store = store
        self._state = {}
        try:
            return super().run(store, options)
        finally:
            self._store = None

    def save_state(self, session: Session, *, now: datetime) -> None:
        """Store the per-model tree shas seen by this run, inside the run's own write transaction."""
        if not self._state:
            return
        for key, value in self._state.items():
            row = session.get(SourceState, (self.name, key))
            if row is None:
                session.add(SourceState(source=self.name, key=key, value=value, updated_at=now))
            else:
                row.value = value
                row.updated_at = now

    # -- versions --

    def scope(self, options: IngestOptions) -> str | None:
        """Network mode tracks the policy's embedding candidates: a new candidate (or alias) is fetched at
        once, not at the next upstream commit. A mirror and ``--all`` always cover every model."""
        if self._mirror(options) or options.all_models:
            return None
        lines = [f"{name}={','.join(sorted(self.policy.candidates[name].aliases.get(self.name, ())))}"
                 for name in sorted(self.policy.candidates_of_kind("embedding"))]
        return "candidates:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def resolve_version(self, options: IngestOptions) -> str:
        mirror = self._mirror(options)
        if mirror:
            if options.all_models:
                raise ConfigError("mteb: --all reads the Hugging Face dataset; it cannot be combined with a mirror "
                                  "(--source, or RECSYS_MTEB_URL: unset it for this run).")
            root = _mirror_path(mirror)
            try:
                return mirror_version(root)
            except OSError as exc:
                raise _unreadable_mirror(root, exc) from exc
        token = self.settings.hf_token if options.all_models else self.settings.github_token
        secret = token.get_secret_value() if token is not None and hasattr(token, "get_secret_value") else token
        http = self._http(secret if isinstance(secret, str) else None)
        if options.all_models:
            sha = _json_object(http, HF_API).get("sha")
            if not isinstance(sha, str) or not sha:
                raise SourceSchemaError(f"mteb: {HF_API} answered without a 'sha'; the Hub API changed?",
                                        source=self.name)
            return f"hf:{sha}"
        sha = _json_object(http, f"{GITHUB_API}/commits/{GITHUB_BRANCH}").get("sha")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise SourceSchemaError(f"mteb: {GITHUB_API}/commits/{GITHUB_BRANCH} answered without a commit sha.",
                                    source=self.name)
        return sha

    # -- loading --

    def load(self, version: str, options: IngestOptions) -> Batch:
        mirror = self._mirror(options)
        if mirror:
            root = _mirror_path(mirror)
            try:
                return self._load_mirror(root)
            except OSError as exc:  # a folder that vanished or cannot be listed (one file is only rejected)
                raise _unreadable_mirror(root, exc) from exc
        if options.all_models:
            return self._load_parquet(version.removeprefix("hf:"))
        return self._load_github(version, force=options.force)

    def _load_mirror(self, root: Path) -> Batch:
        batch = Batch()
        results = _results_dir(root)
        folders = []
        for entry in sorted(os.scandir(results), key=lambda e: e.name):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if not inside(root, entry.path):  # a model folder symlinked out of the mirror: never walked
                batch.reject(REJECT_OUTSIDE_MIRROR)
                _note_example(batch, REJECT_OUTSIDE_MIRROR, entry.name)
                continue
            folders.append(entry.name)
        if not folders:
            raise SourceSchemaError(f"mteb: {root} holds no model folders (expected results/<org>__<model>/...).",
                                    source=self.name)
        tick = self.progress("mteb: model folders") if self.progress else None
        owners: dict[str, str] = {}
        for done, folder in enumerate(folders, 1):
            files = ((rel, _file_reader(entry.path, root)) for rel, entry in _walk(results / folder))
            add_records(batch, ingest_model_folder(folder, files, batch, self.tasks), owners, folder)
            if tick:
                tick(done, len(folders))
        batch.details["models"] = len(folders)
        return batch

    def _tracked(self, folders: Iterable[str]) -> list[str]:
        embedding = set(self.policy.candidates_of_kind("embedding"))
        matcher = self.policy.matcher(self.name)
        return [f for f in folders if matcher.candidate_for(folder_model_name(f)) in embedding]

    def _previous_rows(self, folder: str) -> list[EvidenceRecord] | None:
        if self._store is None:
            return None
        current = current_ingest_run(self._store, self.name)
        # Only evidence read at a commit of the repository can stand in for an unchanged tree (not a
        # fingerprinted mirror, the sample or the parquet, whose contents may differ).
        if current is None or not re.fullmatch(r"[0-9a-f]{40}", current.source_version or ""):
            return None
        table = BenchmarkEvidence.__table__  # type: ignore[attr-defined]
        with self._store.session() as session:
            rows = session.execute(sa.select(table).where(table.c.run_id == current.id,
                                                          table.c.source == self.name)).mappings().all()
        out = [EvidenceRecord(model=r["model"], category=r["category"], value=r["value"], metric=r["metric"],
                              task_type=r["task_type"], revision=r["revision"], split=r["split"],
                              subset_count=r["subset_count"], extra=r["extra"] or {})
               for r in rows if (r["extra"] or {}).get("folder") == folder]
        return out or None

    def _load_github(self, commit: str, *, force: bool) -> Batch:
        http = self._http(None)
        batch = Batch()
        root = _json_object(http, f"{GITHUB_API}/git/trees/{commit}")
        results_sha = next((sha for path, sha in _tree_entries(root, "tree") if path == "results"), None)
        if not results_sha:
            raise SourceSchemaError(f"mteb: commit {commit} has no results/ tree; the repository layout changed?",
                                    source=self.name)
        listing = _json_object(http, f"{GITHUB_API}/git/trees/{results_sha}")
        trees = dict(_tree_entries(listing, "tree"))
        tracked = self._tracked(sorted(trees))
        if not tracked:
            raise SourceSchemaError("mteb: no model folder in the results repository matches an embedding candidate "
                                    "of the policy; add 'mteb' aliases to the policy.", source=self.name)
        previous: dict[str, str] = {}
        if self._store is not None and not force:
            table = SourceState.__table__  # type: ignore[attr-defined]
            with self._store.session() as session:
                for key, value in session.execute(sa.select(table.c.key, table.c.value).where(
                        table.c.source == self.name)).all():
                    previous[key] = value
        fetched = reused = 0
        owners: dict[str, str] = {}
        for folder in tracked:
            key = STATE_TREE_PREFIX + folder
            self._state[key] = trees[folder]
            if previous.get(key) == trees[folder]:
                kept = self._previous_rows(folder)
                if kept is not None:
                    add_records(batch, kept, owners, folder)
                    batch.skipped[SKIP_UNCHANGED_TREE] += 1
                    reused += 1
                    continue
            tree = _json_object(http, f"{GITHUB_API}/git/trees/{trees[folder]}?recursive=1")
            if tree.get("truncated"):
                raise SourceSchemaError(f"mteb: the GitHub tree of {folder} was truncated; use --source with a clone.",
                                        source=self.name)
            blobs = [path for path, _ in _tree_entries(tree, "blob")]

            def reader(path: str, folder: str = folder) -> FileReader:
                url = f"{GITHUB_RAW}/{commit}/results/{quote(folder)}/{quote(path)}"
                return lambda: http.get(url).content

            files = [(p, reader(p)) for p in sorted(blobs)]
            add_records(batch, ingest_model_folder(folder, files, batch, self.tasks), owners, folder)
            fetched += 1
        batch.details.update({"models": len(tracked), "models_fetched": fetched, "models_unchanged": reused,
                              "commit": commit})
        return batch

    def _parquet_files(self, http: SourceClient, sha: str) -> list[str]:
        listing = http.get_json(f"{HF_API}/tree/{sha}?recursive=true")
        if not isinstance(listing, list):
            raise SourceSchemaError(f"mteb: {HF_API}/tree did not answer a file list.", source=self.name)
        paths = sorted(e["path"] for e in listing if isinstance(e, dict) and e.get("type") == "file"
                       and str(e.get("path", "")).endswith(".parquet"))
        # The long-format table lives under data/ (push_to_hub); leaderboard/ holds per-benchmark frames.
        chosen = [p for p in paths if p.startswith("data/")] or [p for p in paths if "/" not in p]
        if not chosen:
            raise SourceSchemaError(f"mteb: the dataset {HF_API} at {sha} holds no data/*.parquet file "
                                    f"(files: {', '.join(paths[:5]) or 'none'}).", source=self.name)
        return chosen

    def _load_parquet(self, sha: str) -> Batch:
        import pyarrow.parquet as pq

        http = self._http(None)
        batch = Batch()
        # (model, revision, task) -> split -> [sum, count]
        groups: dict[tuple[str, str, str], dict[str, list[float]]] = {}
        for path in self._parquet_files(http, sha):
            with tempfile.TemporaryFile() as spool:
                with http.stream(f"{HF_RESOLVE}/{sha}/{quote(path)}") as response:
                    for chunk in response.iter_bytes():
                        spool.write(chunk)
                spool.seek(0)
                try:
                    parquet = pq.ParquetFile(spool)
                except Exception as exc:  # pyarrow raises several types for a corrupt file
                    raise SourceSchemaError(f"mteb: {path} is not a readable parquet file: {exc}.",
                                            source=self.name) from exc
                missing = [c for c in PARQUET_COLUMNS if c not in parquet.schema_arrow.names]
                if missing:
                    raise SourceSchemaError(f"mteb: {path} lacks the columns {', '.join(missing)}; "
                                            "the dataset's format changed.", source=self.name)
                for columns in _parquet_batches(parquet, path):
                    for model, revision, task, split, _subset, score in zip(
                            *(columns[c] for c in PARQUET_COLUMNS), strict=True):
                        value = _number(score)
                        if not model or not task:
                            batch.reject(REJECT_NOT_A_RESULT)
                            continue
                        if value is None:
                            batch.reject(REJECT_MISSING_SCORE)
                            continue
                        per_split = groups.setdefault((model, revision or "no_revision_available", task), {})
                        acc = per_split.setdefault(split or "default", [0.0, 0])
                        acc[0] += value
                        acc[1] += 1
        picks: dict[tuple[str, str], _Pick] = {}
        for (model, revision, name), per_split in groups.items():
            found = self.tasks.find(name)
            task, info = found if found is not None else (name, None)
            try:
                chosen = choose_splits(per_split, info)
            except Rejected as exc:
                batch.reject(exc.reason)
                continue
            total = sum(per_split[split][0] for split in chosen)
            count = int(sum(per_split[split][1] for split in chosen))
            score = TaskScore(task, info.type if info else None, total / count, chosen, count, None)
            if info is None:  # the parquet's scores are main scores: a task the map lacks is still evidence
                note_unmapped(batch, task)
            key = (revision_rank(revision), revision)
            if (model, task) not in picks or key > picks[(model, task)].key:
                picks[(model, task)] = _Pick(key, model, revision, score)
        for (model, task), pick in sorted(picks.items()):
            s = pick.score
            batch.records.append(EvidenceRecord(
                model=model, category=task, value=s.value, metric="main_score", task_type=s.task_type,
                revision=pick.revision, split=s.split, subset_count=s.subset_count,
                extra={"dataset": sha, **({"splits": list(s.splits)} if len(s.splits) > 1 else {})}))
        batch.details["models"] = len({m for m, _ in picks})
        return batch


def summarise(result: IngestResult) -> dict[str, Any]:
    """The run summary as a plain document (the CLI prints it)."""
    return {"source": result.source, "status": result.status, "source_version": result.source_version,
            "run_id": result.run_id, "rows": result.rows_accepted, "rejected_rows": result.rows_rejected,
            "rejected": dict(Counter(result.rejected_reasons).most_common()), "skipped": dict(result.skipped),
            **{k: v for k, v in result.details.items() if k != "rejected_examples"},
            "rejected_examples": result.details.get("rejected_examples", {})}
