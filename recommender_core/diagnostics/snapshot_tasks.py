"""The snapshot's ranked tasks: the current scoring run's rows, ranked, with the evidence behind them.

Built from plain tuples, not from one object per row: a store of 500 models x 30 tasks has 15,000
rows, and per-row objects (an ORM row, JSON decoded per row by the column type, a dataclass) cost
several times the query that reads them. Each row's ``evidence`` list is read as JSON text and
decoded once per distinct text (a task's rows share it).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..clock import iso_utc
from ..evidence import current_run_ids
from ..policy import EvidenceRef, Policy
from ..routing.table import order_key
from ..scored import SCORED_COLUMNS
from ..store import Store
from ..store.tables import BenchmarkEvidence, ScoringRun, UtilityScore

__all__ = ["RankedTasks", "current_scoring_run", "ranked_tasks"]

# The utility columns the snapshot shows, in this order (``evidence`` read as JSON text); rows are
# plain tuples, so the positions are checked here once.
_SHOWN = tuple(name for name in SCORED_COLUMNS if name != "details")
if _SHOWN != ("task", "model", "utility", "quality", "cost", "latency", "reliability", "cost_per_1k_tokens",
              "latency_p95_ms", "success_rate", "excluded", "reason", "evidence"):  # pragma: no cover
    raise AssertionError("the snapshot's utility row positions no longer match SCORED_COLUMNS")
_TASK, _MODEL, _UTILITY, _QUALITY, _COST_1K, _EXCLUDED, _REASON, _EVIDENCE = 0, 1, 2, 3, 7, 10, 11, 12

_RUN = ScoringRun.__table__  # type: ignore[attr-defined]
_SCORE = UtilityScore.__table__  # type: ignore[attr-defined]
_EV = BenchmarkEvidence.__table__  # type: ignore[attr-defined]

Row = tuple[Any, ...]  # a utility row in ``_SHOWN`` order, its evidence decoded to a tuple


@dataclass(frozen=True)
class RankedTasks:
    run: dict[str, Any] | None
    tasks: dict[str, list[dict[str, Any]]]  # the document's ``tasks``
    excluded: dict[str, list[dict[str, Any]]]


def _run_info(finished_at: datetime | None, started_at: datetime, run_id: int, policy_hash: str | None,
              now: datetime) -> dict[str, Any]:
    computed_at = finished_at or started_at
    # A string, as schema_version 1 has always had it: changing a field's type would break readers of
    # saved snapshots, and only additions are allowed within a schema version.
    return {"id": str(run_id), "computed_at": iso_utc(computed_at), "policy_hash": policy_hash,
            "age_seconds": max(0.0, (now - computed_at).total_seconds())}


_CURRENT = sa.select(_RUN.c.id, _RUN.c.started_at, _RUN.c.finished_at, _RUN.c.policy_hash).where(
    _RUN.c.is_current.is_(True)).limit(1)


def current_scoring_run(store: Store, now: datetime) -> dict[str, Any] | None:
    """The current scoring run's id, time, policy hash and age, or None before the first ``score``."""
    with store.connect() as conn:
        run = conn.execute(_CURRENT).first()
    return None if run is None else _run_info(run.finished_at, run.started_at, run.id, run.policy_hash, now)


def _order(row: Row) -> tuple[float, float, float, str]:
    # Routing's own total order (routing.table.order_key), so a saved snapshot reproduces its decisions.
    return order_key(row[_UTILITY] or 0.0, row[_QUALITY] or 0.0, row[_COST_1K] or 0.0, row[_MODEL])


def ranked_tasks(store: Store, policy: Policy, now: datetime, task: str | None, top: int | None) -> RankedTasks:
    """The current run's info, its ranked (non-excluded) rows per task with their evidence values, and
    its exclusions per task, for one task or every task, the first ``top`` of each task when given."""
    columns = [_SCORE.c[name] for name in _SHOWN[:-1]] + [sa.cast(_SCORE.c.evidence, sa.Text)]
    with store.connect() as conn:
        run = conn.execute(_CURRENT).first()
        if run is None:
            return RankedTasks(None, {}, {})
        query = sa.select(*columns).where(_SCORE.c.run_id == run.id)
        if task is not None:
            query = query.where(_SCORE.c.task == task)
        rows = conn.execute(query).all()
    decoded: dict[str | None, tuple[str, ...]] = {}
    by_task: dict[str, list[Row]] = defaultdict(list)
    excluded: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row[_EXCLUDED]:
            excluded[row[_TASK]].append({"model": row[_MODEL], "reason": row[_REASON] or "no reason recorded"})
            continue
        text = row[_EVIDENCE]
        evidence = decoded.get(text)
        if evidence is None:
            evidence = decoded[text] = tuple(json.loads(text) or ()) if text is not None else ()
        by_task[row[_TASK]].append((*row[:_EVIDENCE], evidence))
    ranked: dict[str, list[Row]] = {}
    for name in sorted(by_task):
        ordered = sorted(by_task[name], key=_order)
        ranked[name] = ordered[:top] if top is not None else ordered
    values = _evidence_values(store, policy, ranked)
    tasks = {name: [{"rank": i, "model": r[1], "utility": r[2], "quality": r[3], "cost": r[4], "latency": r[5],
                     "reliability": r[6], "cost_per_1k_tokens": r[7], "latency_p95_ms": r[8], "success_rate": r[9],
                     "evidence": list(r[12]),
                     "evidence_values": [v for ref in r[12] for v in values.get((r[1], ref), ())]}
                    for i, r in enumerate(entries, start=1)]
             for name, entries in ranked.items()}
    excluded_sorted = {t: sorted(v, key=lambda e: e["model"]) for t, v in sorted(excluded.items())}
    return RankedTasks(_run_info(run.finished_at, run.started_at, run.id, run.policy_hash, now), tasks,
                       excluded_sorted)


def _evidence_values(store: Store, policy: Policy,
                     ranked: Mapping[str, Sequence[Row]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(candidate, evidence ref) -> the current stored values behind it, for the ranked models only."""
    wanted: dict[str, set[str]] = defaultdict(set)  # source -> candidates
    refs: set[str] = set()
    for rows in ranked.values():
        for row in rows:
            for text in row[_EVIDENCE]:
                wanted[text.partition(":")[0]].add(row[_MODEL])
                refs.add(text)
    if not wanted:
        return {}
    run_ids = current_run_ids(store, sorted(wanted))
    if not run_ids:
        return {}
    parsed: dict[str, EvidenceRef] = {}
    for text in refs:
        try:
            parsed[text] = EvidenceRef.parse(text)
        except ValueError:
            continue  # a reference written by a newer scorer: shown without values
    categories = {r.selector.removeprefix("task/") for r in parsed.values() if not r.selector.startswith("type/")}
    task_types = {r.selector.removeprefix("type/") for r in parsed.values() if r.selector.startswith("type/")}
    conditions = []
    if categories:
        conditions.append(_EV.c.category.in_(sorted(categories)))
    if task_types:
        conditions.append(_EV.c.task_type.in_(sorted(task_types)))
    if not conditions:
        return {}
    # (source, candidate, category) and (source, candidate, task type) -> rows
    by_category: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    by_type: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    e = _EV.c
    with store.connect() as conn:
        result = conn.execute(
            sa.select(e.source, e.model, e.category, e.task_type, e.value, e.lower, e.upper, e.samples,
                      e.source_version)
            .where(e.run_id.in_(sorted(run_ids.values())), sa.or_(*conditions))
            .order_by(e.source, e.model, e.category)
        ).all()
    matchers = {source: policy.matcher(source) for source in run_ids}
    names: dict[tuple[str, str], str | None] = {}  # each upstream name is matched once
    for row in result:
        key = (row[0], row[1])
        if key not in names:
            matched_name = matchers[row[0]].candidate_for(row[1])
            names[key] = matched_name if matched_name in wanted.get(row[0], ()) else None
        candidate = names[key]
        if candidate is not None:
            by_category[(row[0], candidate, row[2])].append(row)
            if row[3] is not None:
                by_type[(row[0], candidate, row[3])].append(row)
    values: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rows in ranked.values():
        for score in rows:
            model = score[_MODEL]
            for text in score[_EVIDENCE]:
                ref = parsed.get(text)
                if ref is None or (model, text) in values:
                    continue
                if ref.selector.startswith("type/"):
                    matched = by_type.get((ref.source, model, ref.selector.removeprefix("type/")), [])
                    found = [{"ref": text, "model": upstream, "value": sum(r[4] for r in group) / len(group),
                              "lower": None, "upper": None, "samples": None, "tasks": len(group),
                              "source_version": group[0][8]}
                             for upstream, group in ((m, list(g)) for m, g in itertools.groupby(matched,
                                                                                                 key=lambda r: r[1]))]
                else:
                    found = [{"ref": text, "model": r[1], "value": r[4], "lower": r[5], "upper": r[6],
                              "samples": r[7], "tasks": None, "source_version": r[8]}
                             for r in by_category.get((ref.source, model, ref.selector.removeprefix("task/")), [])]
                values[(model, text)] = found
    return values
