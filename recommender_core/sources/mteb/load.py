"""Reading MTEB results (embeddings-benchmark/results) for the ``mteb`` plugin, one row per (model, task).

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

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ...errors import ConfigError, SourceSchemaError
from ..base import Batch, EvidenceRecord, IngestOptions, PreviousRun
from ..http import SourceClient
from ..mirror import inside
from .constants import (
    GITHUB_API,
    GITHUB_BRANCH,
    GITHUB_RAW,
    HF_API,
    HF_RESOLVE,
    PARQUET_COLUMNS,
    REJECT_MISSING_SCORE,
    REJECT_NOT_A_RESULT,
    REJECT_OUTSIDE_MIRROR,
    SKIP_UNCHANGED_TREE,
    STATE_TREE_PREFIX,
)
from .folder import (
    FileReader,
    _note_example,
    _Pick,
    add_records,
    folder_model_name,
    ingest_model_folder,
    note_unmapped,
    revision_key,
)
from .mirror import _file_reader, _mirror_path, _results_dir, _unreadable_mirror, _walk, mirror_version
from .parse import Rejected, TaskInfo, TaskMap, TaskScore, _number, choose_splits, load_task_map, parse_result

__all__ = [
    "MtebReader",
    "Rejected",
    "TaskInfo",
    "TaskMap",
    "choose_splits",
    "load_task_map",
    "mirror_version",
    "parse_result",
]

if TYPE_CHECKING:
    from . import MtebSource

log = logging.getLogger("recsys.sources.mteb")


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


class MtebReader:
    """One run's reading of a mirror, the GitHub API or the Hugging Face parquet for an ``MtebSource``."""

    def __init__(self, source: MtebSource) -> None:
        self.source = source
        self.name = source.name
        self.settings, self.policy, self.progress = source.settings, source.policy, source.progress
        self.all_models = source.all_models

    @property
    def tasks(self) -> TaskMap:
        return self.source.tasks

    def _http(self, token: str | None) -> SourceClient:
        return self.source.http(token)

    def _mirror(self, options: IngestOptions) -> str | None:
        return self.source.mirror(options)

    # -- versions --

    def resolve_version(self, options: IngestOptions) -> str:
        mirror = self._mirror(options)
        if mirror:
            if self.all_models:
                raise ConfigError("mteb: reading every model from the Hugging Face dataset cannot be combined with "
                                  "a mirror (or RECSYS_MTEB_URL: unset it for this run).", option="all_models")
            root = _mirror_path(mirror)
            try:
                return mirror_version(root)
            except OSError as exc:
                raise _unreadable_mirror(root, exc) from exc
        token = self.settings.hf_token if self.all_models else self.settings.github_token
        secret = token.get_secret_value() if token is not None and hasattr(token, "get_secret_value") else token
        http = self._http(secret if isinstance(secret, str) else None)
        if self.all_models:
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

    def load(self, version: str, options: IngestOptions, previous: PreviousRun | None) -> Batch:
        mirror = self._mirror(options)
        if mirror:
            root = _mirror_path(mirror)
            try:
                return self._load_mirror(root)
            except OSError as exc:  # a folder that vanished or cannot be listed (one file is only rejected)
                raise _unreadable_mirror(root, exc) from exc
        if self.all_models:
            return self._load_parquet(version.removeprefix("hf:"))
        return self._load_github(version, previous=None if options.force else previous)

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
            files = ((rel, _file_reader(entry.path, root, entry)) for rel, entry in _walk(results / folder))
            add_records(batch, ingest_model_folder(folder, files, batch, self.tasks), owners, folder)
            if tick:
                tick(done, len(folders))
        batch.details["models"] = len(folders)
        return batch

    def _tracked(self, folders: Iterable[str]) -> list[str]:
        embedding = set(self.policy.candidates_of_kind("embedding"))
        matcher = self.policy.matcher(self.name)
        return [f for f in folders if matcher.candidate_for(folder_model_name(f)) in embedding]

    @staticmethod
    def _previous_rows(previous: PreviousRun, folder: str) -> list[EvidenceRecord] | None:
        # Only evidence read at a commit of the repository can stand in for an unchanged tree (not a
        # fingerprinted mirror, the sample or the parquet, whose contents may differ).
        if not re.fullmatch(r"[0-9a-f]{40}", previous.source_version or ""):
            return None
        out = [r for r in previous.evidence() if (r.extra or {}).get("folder") == folder]
        return out or None

    def _load_github(self, commit: str, *, previous: PreviousRun | None) -> Batch:
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
        state = previous.state if previous is not None else {}
        fetched = reused = 0
        owners: dict[str, str] = {}
        for folder in tracked:
            key = STATE_TREE_PREFIX + folder
            batch.state[key] = trees[folder]
            if previous is not None and state.get(key) == trees[folder]:
                kept = self._previous_rows(previous, folder)
                if kept is not None:
                    add_records(batch, kept, owners, folder)
                    batch.skipped[SKIP_UNCHANGED_TREE] += 1
                    reused += 1
                    continue
            tree = _json_object(http, f"{GITHUB_API}/git/trees/{trees[folder]}?recursive=1")
            if tree.get("truncated"):
                raise SourceSchemaError(f"mteb: the GitHub tree of {folder} was truncated; read a clone as a mirror "
                                        "instead.", source=self.name, option="mirror")
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
            key = revision_key(None, revision)  # the parquet carries no mteb version
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
