"""The one MTEB result parser: the task map, split choice and a task's score from one result file.

mteb's own aggregation: a task's score is the mean ``main_score`` over every subset of every evaluated
split, as ``TaskResult.get_score(splits=...)`` computes it; the evaluated splits come from the task's
evaluation splits in mteb's metadata (``choose_splits``). Legacy (pre-1.11) files take the task's main
metric from the task map.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ...errors import RejectedRow
from ..validate import check_version
from .constants import (
    REJECT_AMBIGUOUS_SPLIT,
    REJECT_MALFORMED,
    REJECT_MISSING_SCORE,
    REJECT_MISSING_SPLIT,
    REJECT_NOT_A_RESULT,
    REJECT_UNKNOWN_TASK,
    TASKS_DATA_FILE,
)

__all__ = [
    "Rejected",
    "TaskInfo",
    "TaskMap",
    "TaskScore",
    "choose_splits",
    "load_task_map",
    "parse_result",
]


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
