"""The utility table routing reads: loaded once per scoring run, with per-task orders precomputed.

A table comes from the store's current scoring run (``load_current_table``) or from a saved
``recsys snapshot --json`` document (``snapshot_file.table_from_snapshot``), so routing needs no
database in CI.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

from ..errors import ConfigError
from ..scored import SCORED_COLUMNS, ScoredModel
from .rank import ROUND_DIGITS, cost_key, order_key

__all__ = [
    "ROUND_DIGITS",
    "OrderIndex",
    "ScoreRow",
    "TaskTable",
    "UtilityTable",
    "load_current_table",
    "load_task_table",
    "order_key",
    "table_from_scored",
    "total_order_key",
]

# A row of a task's table is the one scored-row type; routing only holds rows that are not excluded,
# with every component present (missing ones read as 0.0), so its numbers are never None here.
ScoreRow = ScoredModel


def total_order_key(row: ScoreRow) -> tuple[float, float, float, str]:
    """``order_key`` of a table row."""
    return order_key(row.utility or 0.0, row.quality or 0.0, row.cost_per_1k_tokens or 0.0, row.model)


def _cost_key(row: ScoreRow) -> tuple[float, tuple[float, float, float, str]]:
    return cost_key(row.cost_per_1k_tokens or 0.0, total_order_key(row))


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
