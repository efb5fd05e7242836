"""The utility table routing reads: loaded once per scoring run, with per-task orders precomputed.

A table comes from the store's current scoring run (``load_current_table``) or from a saved
``recsys snapshot --json`` document (``table_from_snapshot``), so routing needs no database in CI.
"""

from __future__ import annotations

import json
import math
import os
import stat
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..scored import SCORED_COLUMNS, ScoredModel

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "ROUND_DIGITS",
    "OrderIndex",
    "ScoreRow",
    "TaskTable",
    "UtilityTable",
    "load_current_table",
    "load_task_table",
    "order_key",
    "read_snapshot",
    "table_from_scored",
    "table_from_snapshot",
    "total_order_key",
]

ROUND_DIGITS = 9


# A row of a task's table is the one scored-row type; routing only holds rows that are not excluded,
# with every component present (missing ones read as 0.0), so its numbers are never None here.
ScoreRow = ScoredModel


def order_key(utility: float, quality: float, cost_per_1k_tokens: float, model: str) -> tuple[float, float, float, str]:
    """DESIGN.md section 6: utility desc, quality desc, cost asc, name asc, on values rounded to 9 decimals.

    "cost" is the cost per 1k tokens (the money), so cheaper wins a tie. The snapshot ranks with
    this same key, so a saved snapshot reproduces the decisions.
    """
    return (-round(utility, ROUND_DIGITS), -round(quality, ROUND_DIGITS),
            round(cost_per_1k_tokens, ROUND_DIGITS), model)


def total_order_key(row: ScoreRow) -> tuple[float, float, float, str]:
    """``order_key`` of a table row."""
    return order_key(row.utility or 0.0, row.quality or 0.0, row.cost_per_1k_tokens or 0.0, row.model)


def _cost_key(row: ScoreRow) -> tuple[float, tuple[float, float, float, str]]:
    return (round(row.cost_per_1k_tokens or 0.0, ROUND_DIGITS), total_order_key(row))


_BITS = bytes.maketrans(b"01", b"\x00\x01")


def _prefix_masks(values: Sequence[float], n: int) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Values sorted ascending, and for each k the bitmask of the positions holding the k smallest."""
    order = sorted(range(n), key=lambda i: values[i])
    masks = [0]
    mask = 0
    for i in order:
        mask |= 1 << (n - 1 - i)
        masks.append(mask)
    return tuple(values[i] for i in order), tuple(masks)


@dataclass(frozen=True)
class OrderIndex:
    """One order of a task's models, with prefix bitmasks per constraint.

    Bit ``n - 1 - i`` stands for position ``i``. A constraint is one ``bisect`` into the sorted values
    plus one AND, and the qualifying names come out, in order, through ``compress`` over a byte
    string: a route costs microseconds even with hundreds of candidates.
    """

    names: tuple[str, ...]
    full: int
    cost_sorted: tuple[float, ...]
    cost_masks: tuple[int, ...]
    latency_sorted: tuple[float, ...]
    latency_masks: tuple[int, ...]
    neg_quality_sorted: tuple[float, ...]
    neg_quality_masks: tuple[int, ...]
    quality_rank: tuple[int, ...]  # positions, best quality first (ties: the total order)

    @classmethod
    def build(cls, rows: Sequence[ScoreRow]) -> OrderIndex:
        n = len(rows)
        cost_sorted, cost_masks = _prefix_masks([r.cost_per_1k_tokens or 0.0 for r in rows], n)
        latency_sorted, latency_masks = _prefix_masks([r.latency_p95_ms or 0.0 for r in rows], n)
        neg_sorted, neg_masks = _prefix_masks([-(r.quality or 0.0) for r in rows], n)
        rank = sorted(range(n), key=lambda i: (-round(rows[i].quality or 0.0, ROUND_DIGITS), total_order_key(rows[i])))
        return cls(names=tuple(r.model for r in rows), full=(1 << n) - 1, cost_sorted=cost_sorted,
                   cost_masks=cost_masks, latency_sorted=latency_sorted, latency_masks=latency_masks,
                   neg_quality_sorted=neg_sorted, neg_quality_masks=neg_masks, quality_rank=tuple(rank))

    def mask(self, max_cost_per_1k: float | None, max_latency_ms: float | None, min_quality: float | None) -> int:
        mask = self.full
        if max_cost_per_1k is not None:
            mask &= self.cost_masks[bisect_right(self.cost_sorted, max_cost_per_1k)]
        if max_latency_ms is not None:
            mask &= self.latency_masks[bisect_right(self.latency_sorted, max_latency_ms)]
        if min_quality is not None:
            mask &= self.neg_quality_masks[bisect_right(self.neg_quality_sorted, -min_quality)]
        return mask

    def names_of(self, mask: int) -> tuple[str, ...]:
        if mask == self.full:
            return self.names
        if not mask:
            return ()
        bits = bin(mask)[2:].zfill(len(self.names)).encode().translate(_BITS)
        return tuple(compress(self.names, bits))

    def best_quality(self, mask: int) -> str | None:
        top = len(self.names) - 1
        for i in self.quality_rank:
            if mask >> (top - i) & 1:
                return self.names[i]
        return None


@dataclass(frozen=True)
class TaskTable:
    """The scored and excluded models of one task, with the orders the strategies walk.

    ``by_utility`` is the total order; ``by_cost`` is cost ascending (ties: the total order).
    """

    task: str
    by_utility: tuple[ScoreRow, ...]
    by_cost: tuple[ScoreRow, ...]
    excluded: tuple[tuple[str, str], ...]
    utility_index: OrderIndex
    cost_index: OrderIndex
    rows: Mapping[str, ScoreRow]

    @classmethod
    def build(cls, task: str, rows: Iterable[ScoreRow], excluded: Iterable[tuple[str, str]] = ()) -> TaskTable:
        unique: dict[str, ScoreRow] = {}
        for row in rows:
            if row.model in unique:
                raise ConfigError(f"The utility table lists model '{row.model}' twice for task '{task}'.")
            unique[row.model] = row
        ordered = tuple(sorted(unique.values(), key=total_order_key))
        by_cost = tuple(sorted(ordered, key=_cost_key))
        return cls(task=task, by_utility=ordered, by_cost=by_cost, excluded=tuple(sorted(set(excluded))),
                   utility_index=OrderIndex.build(ordered), cost_index=OrderIndex.build(by_cost), rows=dict(unique))


@dataclass(frozen=True)
class UtilityTable:
    """Every task's precomputed table, and where it came from (a run id or a snapshot file)."""

    tasks: Mapping[str, TaskTable]
    origin: str = "memory"

    @classmethod
    def build(cls, rows: Mapping[str, Iterable[ScoreRow]], *, excluded: Mapping[str, Iterable[tuple[str, str]]]
              | None = None, origin: str = "memory") -> UtilityTable:
        excluded = excluded or {}
        names = set(rows) | set(excluded)
        return cls(tasks={t: TaskTable.build(t, rows.get(t, ()), excluded.get(t, ())) for t in sorted(names)},
                   origin=origin)


def load_current_table(store: Any) -> UtilityTable | None:
    """The current scoring run of ``store`` as a table (None when no run is current)."""
    from sqlmodel import col, select

    from ..store.tables import ScoringRun, UtilityScore

    with store.session() as session:
        run = session.exec(select(ScoringRun).where(col(ScoringRun.is_current).is_(True)).limit(1)).first()
        if run is None:
            return None
        scores = session.exec(select(UtilityScore).where(col(UtilityScore.run_id) == run.id)).all()
    return table_from_scored(scores, origin=f"scoring run {run.id}")


_TASK_COLUMNS = tuple(name for name in SCORED_COLUMNS if name not in ("task", "details"))


def load_task_table(store: Any, task: str) -> UtilityTable | None:
    """The current scoring run's rows of one ``task`` as a table (None when no run is current).

    What ``route`` reads: one indexed query for the current run and its rows of that task, as plain
    tuples (no ORM objects), instead of every task's rows through the ORM.
    """
    import sqlalchemy as sa

    # Lightweight table clauses, not the SQLModel classes: route never imports the ORM. The
    # evidence column holds JSON (a list of references) on both backends.
    runs = sa.table("scoring_run", sa.column("id"), sa.column("is_current"))
    scores = sa.table("utility_score", sa.column("run_id"), sa.column("task"),
                      *(sa.column(name, sa.JSON() if name == "evidence" else None) for name in _TASK_COLUMNS))
    query = (sa.select(runs.c.id, *(scores.c[name] for name in _TASK_COLUMNS))
             .select_from(runs.outerjoin(scores, sa.and_(scores.c.run_id == runs.c.id, scores.c.task == task)))
             .where(runs.c.is_current.is_(True)))
    with store.connect() as conn:
        fetched = conn.execute(query).all()
    if not fetched:
        return None
    run_id = fetched[0][0]
    rows: list[ScoreRow] = []
    excluded: list[tuple[str, str]] = []
    for (_, model, utility, quality, cost, latency, reliability, cost_per_1k, p95, success, is_excluded,
         reason, evidence) in fetched:
        if model is None:  # the current run has no row for this task
            continue
        if is_excluded or utility is None:
            excluded.append((model, reason or "excluded by the scoring run"))
            continue
        rows.append(ScoreRow(task=task, model=model, utility=utility, quality=quality or 0.0, cost=cost or 0.0,
                             latency=latency or 0.0, reliability=reliability or 0.0,
                             cost_per_1k_tokens=cost_per_1k or 0.0, latency_p95_ms=p95 or 0.0,
                             success_rate=success, evidence=tuple(evidence or ())))
    return UtilityTable.build({task: rows} if rows else {}, excluded={task: excluded} if excluded else {},
                              origin=f"scoring run {run_id}")


def table_from_scored(scores: Iterable[Any], *, origin: str = "memory") -> UtilityTable:
    """A table from scored rows (stored ``UtilityScore`` rows or a ``ScoringResult``'s ``ScoredModel``s)."""
    rows: dict[str, list[ScoreRow]] = {}
    excluded: dict[str, list[tuple[str, str]]] = {}
    for s in scores:
        if s.excluded or s.utility is None:
            excluded.setdefault(s.task, []).append((s.model, s.reason or "excluded by the scoring run"))
            continue
        rows.setdefault(s.task, []).append(ScoreRow(
            task=s.task, model=s.model, utility=s.utility, quality=s.quality or 0.0, cost=s.cost or 0.0,
            latency=s.latency or 0.0, reliability=s.reliability or 0.0,
            cost_per_1k_tokens=s.cost_per_1k_tokens or 0.0, latency_p95_ms=s.latency_p95_ms or 0.0,
            success_rate=s.success_rate, evidence=tuple(s.evidence)))
    return UtilityTable.build(rows, excluded=excluded, origin=origin)


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


def _score_row(file: str, task: str, where: str, entry: dict[str, Any]) -> ScoreRow:
    def unit(name: str, *, optional: bool = True) -> float:
        return _number(file, f"{where}.{name}", entry.get(name), optional=optional, upper=1.0)

    def amount(name: str) -> float:
        return _number(file, f"{where}.{name}", entry.get(name), optional=True)

    return ScoreRow(
        task=task, model=entry["model"], utility=unit("utility", optional=False), quality=unit("quality"),
        cost=unit("cost"),
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
    """The ``tasks`` of a saved ``recsys snapshot --json`` document (DESIGN.md section 5), checked
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
            rows.setdefault(task, []).append(_score_row(str(file), task, where, e))
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
