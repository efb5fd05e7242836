"""The snapshot document of DESIGN.md section 5: can the recommender be trusted right now?

Fields beyond DESIGN.md's example are additive (the schema at ``docs/snapshot.schema.json`` lists
them): ``policy_hash``, per source ``last_run_at``; ``scoring_run.age_seconds``; per ranked model
``evidence_values`` (the stored values behind its ``evidence`` references); ``excluded`` per task
with reasons; ``telemetry.selections`` per task and model; ``next_steps`` when the store cannot answer;
``unmapped_tasks``: MTEB tasks of the current evidence that the task map does not know.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from ..errors import UsageError
from ..evidence import current_run_ids, unmapped_tasks, unmatched_models
from ..policy import EvidenceRef, Policy
from ..routing.table import order_key
from ..scored import SCORED_COLUMNS, ScoredModel
from ..store import Store
from ..store.runs import ABANDONED_ERROR, gone_running_runs, ingest_job_name
from ..store.tables import (
    BenchmarkEvidence,
    IngestRun,
    RunStatus,
    ScoringRun,
    UtilityScore,
)
from ..telemetry.rollups import read_window

__all__ = ["SCHEMA_VERSION", "TELEMETRY_WINDOW_HOURS", "UNTAGGED_TASK", "Snapshot", "build_snapshot",
           "current_scoring_run", "selection_counts", "source_status"]

SCHEMA_VERSION = 1
TELEMETRY_WINDOW_HOURS = 24
# The task label of telemetry events that carry no task tag.
UNTAGGED_TASK = "untagged"


@dataclass(frozen=True)
class Snapshot:
    """A built snapshot; ``document`` is the versioned JSON document (valid against the schema)."""

    document: dict[str, Any]

    @property
    def is_empty(self) -> bool:
        return not self.document["sources"] and self.document["scoring_run"] is None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def source_status(store: Store, now: datetime, stale_after: timedelta) -> list[dict[str, Any]]:
    """Per source: last run, last success (or unchanged check), age, staleness, version, counts, error."""
    with store.session() as session:
        # Bounded: runs are pruned to RECSYS_KEEP_RUNS per source.
        runs = session.exec(select(IngestRun).order_by(col(IngestRun.id).desc())).all()
    by_source: dict[str, list[IngestRun]] = defaultdict(list)
    for run in runs:
        by_source[run.source].append(run)
    # A last run still `running` whose job lock is free belongs to a process that is gone.
    gone = gone_running_runs(store, IngestRun, {
        h[0].id: ingest_job_name(source) for source, h in by_source.items()
        if h[0].status == RunStatus.RUNNING and h[0].id is not None})
    result = []
    for source in sorted(by_source):
        history = by_source[source]
        last = history[0]
        last_status, last_error = (RunStatus.ABANDONED, ABANDONED_ERROR) if last.id in gone else (
            last.status, last.error)
        success = next((r for r in history if r.status == RunStatus.SUCCESS), None)
        # "unchanged" runs prove the source was checked and is still current, so they refresh age.
        checked = next((r for r in history if r.status in (RunStatus.SUCCESS, RunStatus.UNCHANGED)), None)
        checked_at = (checked.finished_at or checked.started_at) if checked else None
        age = max(0.0, (now - checked_at).total_seconds()) if checked_at else None
        result.append({
            "source": source,
            "last_status": last_status,
            "last_run_at": _iso(last.started_at),
            "last_success_at": _iso(checked_at),
            "age_seconds": age,
            "stale": age is None or age > stale_after.total_seconds(),
            "source_version": success.source_version if success else None,
            "rows": success.rows_accepted if success else 0,
            "rejected_rows": last.rows_rejected,
            "last_error": last_error if last_status in (RunStatus.FAILED, RunStatus.ABANDONED) else None,
        })
    return result


# The utility columns the snapshot shows, read as plain tuples (no ORM objects: 500 models x 30 tasks)
# into the one scored-row type.
Score = ScoredModel
_SHOWN = tuple(name for name in SCORED_COLUMNS if name != "details")


def _order_key(s: Score) -> tuple[float, float, float, str]:
    # Routing's own total order (DESIGN.md section 6), so a saved snapshot reproduces its decisions.
    return order_key(s.utility or 0.0, s.quality or 0.0, s.cost_per_1k_tokens or 0.0, s.model)


@dataclass(frozen=True)
class _Scoring:
    run: dict[str, Any] | None
    ranked: dict[str, list[Score]]
    excluded: dict[str, list[dict[str, Any]]]


def _run_info(run: ScoringRun, now: datetime) -> dict[str, Any]:
    computed_at = run.finished_at or run.started_at
    return {"id": str(run.id), "computed_at": _iso(computed_at), "policy_hash": run.policy_hash,
            "age_seconds": max(0.0, (now - computed_at).total_seconds())}


def current_scoring_run(store: Store, now: datetime) -> dict[str, Any] | None:
    """The current scoring run's id, time, policy hash and age, or None before the first ``score``."""
    with store.session() as session:
        run = session.exec(select(ScoringRun).where(col(ScoringRun.is_current)).limit(1)).first()
    return None if run is None else _run_info(run, now)


def _scoring(store: Store, now: datetime, task: str | None, top: int | None) -> _Scoring:
    with store.session() as session:
        run = session.exec(select(ScoringRun).where(col(ScoringRun.is_current)).limit(1)).first()
        if run is None:
            return _Scoring(None, {}, {})
        table = UtilityScore.__table__  # type: ignore[attr-defined]
        query = sa.select(*(table.c[name] for name in _SHOWN)).where(table.c.run_id == run.id)
        if task is not None:
            query = query.where(table.c.task == task)
        scores = [Score(**dict(zip(_SHOWN, row, strict=True)) | {"evidence": tuple(row.evidence or ())})
                  for row in session.execute(query)]
    by_task: dict[str, list[Score]] = defaultdict(list)
    excluded: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for score in scores:
        if score.excluded:
            excluded[score.task].append({"model": score.model, "reason": score.reason or "no reason recorded"})
        else:
            by_task[score.task].append(score)
    ranked: dict[str, list[Score]] = {}
    for name in sorted(by_task):
        ordered = sorted(by_task[name], key=_order_key)
        ranked[name] = ordered[:top] if top is not None else ordered
    excluded_sorted = {t: sorted(v, key=lambda e: e["model"]) for t, v in sorted(excluded.items())}
    return _Scoring(_run_info(run, now), ranked, excluded_sorted)


def _evidence_values(store: Store, policy: Policy,
                     ranked: Mapping[str, list[Score]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(candidate, evidence ref) -> the current stored values behind it, for the ranked models only."""
    wanted: dict[str, set[str]] = defaultdict(set)  # source -> candidates
    refs: set[str] = set()
    for scores in ranked.values():
        for score in scores:
            for text in score.evidence:
                wanted[text.partition(":")[0]].add(score.model)
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
        conditions.append(col(BenchmarkEvidence.category).in_(sorted(categories)))
    if task_types:
        conditions.append(col(BenchmarkEvidence.task_type).in_(sorted(task_types)))
    if not conditions:
        return {}
    # (source, candidate, category) and (source, candidate, task type) -> rows
    by_category: dict[tuple[str, str, str], list[tuple[Any, ...]]] = defaultdict(list)
    by_type: dict[tuple[str, str, str], list[tuple[Any, ...]]] = defaultdict(list)
    with store.connect() as conn:
        result = conn.execute(
            sa.select(col(BenchmarkEvidence.source), col(BenchmarkEvidence.model), col(BenchmarkEvidence.category),
                      col(BenchmarkEvidence.task_type), col(BenchmarkEvidence.value), col(BenchmarkEvidence.lower),
                      col(BenchmarkEvidence.upper), col(BenchmarkEvidence.samples),
                      col(BenchmarkEvidence.source_version))
            .where(col(BenchmarkEvidence.run_id).in_(sorted(run_ids.values())), sa.or_(*conditions))
            .order_by(col(BenchmarkEvidence.source), col(BenchmarkEvidence.model), col(BenchmarkEvidence.category))
        )
        matchers = {source: policy.matcher(source) for source in run_ids}
        names: dict[tuple[str, str], str | None] = {}  # each upstream name is matched once
        for row in result:
            key = (row[0], row[1])
            if key not in names:
                candidate = matchers[row[0]].candidate_for(row[1])
                names[key] = candidate if candidate in wanted.get(row[0], ()) else None
            candidate = names[key]
            if candidate is not None:
                by_category[(row[0], candidate, row[2])].append(row)
                if row[3] is not None:
                    by_type[(row[0], candidate, row[3])].append(row)
    values: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for scores in ranked.values():
        for score in scores:
            for text in score.evidence:
                ref = parsed.get(text)
                if ref is None or (score.model, text) in values:
                    continue
                if ref.selector.startswith("type/"):
                    matched = by_type.get((ref.source, score.model, ref.selector.removeprefix("type/")), [])
                    found = [{"ref": text, "model": model, "value": sum(r[4] for r in group) / len(group),
                              "lower": None, "upper": None, "samples": None, "tasks": len(group),
                              "source_version": group[0][8]}
                             for model, group in ((m, list(g)) for m, g in itertools.groupby(matched,
                                                                                              key=lambda r: r[1]))]
                else:
                    found = [{"ref": text, "model": r[1], "value": r[4], "lower": r[5], "upper": r[6],
                              "samples": r[7], "tasks": None, "source_version": r[8]}
                             for r in by_category.get((ref.source, score.model, ref.selector.removeprefix("task/")),
                                                      [])]
                values[(score.model, text)] = found
    return values


def _telemetry(store: Store, now: datetime) -> dict[str, Any]:
    """Calls, errors and latency percentiles per model over the window, from the hourly rollups
    (``telemetry.rollups``: whole hours, percentiles within 1% of the exact ones)."""
    window = read_window(store, since=now - timedelta(hours=TELEMETRY_WINDOW_HOURS), tasks=True)
    models = []
    for model, agg in sorted(window.by_model.items()):
        models.append({"model": model, "calls": agg.calls, "errors": agg.errors, "error_rate": agg.error_rate,
                       "latency_p50_ms": agg.latency_percentile(50), "latency_p95_ms": agg.latency_percentile(95)})
    return {
        "window_hours": TELEMETRY_WINDOW_HOURS,
        "models": models,
        "selections": sorted(({"task": task or UNTAGGED_TASK, "model": model, "calls": agg.calls}
                              for (model, task), agg in window.by_model_task.items()),
                             key=lambda e: (e["task"], e["model"])),
    }


def selection_counts(store: Store, *, since: datetime) -> dict[tuple[str, str], int]:
    """Calls per (task, model) of the telemetry from the hour holding ``since`` on (the snapshot's
    ``telemetry.selections``): ``recsys serve``'s ``recsys_model_selected_calls``."""
    window = read_window(store, since=since, tasks=True)
    return {(task or UNTAGGED_TASK, model): agg.calls for (model, task), agg in window.by_model_task.items()}


def _next_steps(sources: list[dict[str, Any]], scoring_run: dict[str, Any] | None) -> list[str]:
    steps: list[str] = []
    if not sources:
        from ..sources import available_sources

        steps.extend(f"recsys ingest {name}" for name in available_sources())
    if scoring_run is None:
        steps.append("recsys score")
    return steps


def build_snapshot(
    store: Store,
    policy: Policy,
    *,
    v2_enabled: bool,
    stale_after_hours: float = 26.0,
    task: str | None = None,
    top: int | None = None,
    now: datetime | None = None,
) -> Snapshot:
    """Build the snapshot document from what the store holds now.

    ``task`` must be a task of the policy (or of the current scoring run); ``top`` at least 1.
    """
    if top is not None and top < 1:
        raise UsageError(f"top must be at least 1, got {top}.")
    now = now or store.clock.now()
    sources = source_status(store, now, timedelta(hours=stale_after_hours))
    scoring = _scoring(store, now, task, top)
    if task is not None and task not in policy.tasks and task not in scoring.ranked \
            and task not in scoring.excluded:
        raise UsageError(f"Unknown task '{task}'. Tasks: {', '.join(sorted(policy.tasks))}.")
    evidence_values = _evidence_values(store, policy, scoring.ranked)
    tasks = {
        name: [{
            "rank": i + 1, "model": s.model, "utility": s.utility, "quality": s.quality, "cost": s.cost,
            "latency": s.latency, "reliability": s.reliability, "cost_per_1k_tokens": s.cost_per_1k_tokens,
            "latency_p95_ms": s.latency_p95_ms, "success_rate": s.success_rate, "evidence": list(s.evidence),
            "evidence_values": [v for ref in s.evidence for v in evidence_values.get((s.model, ref), [])],
        } for i, s in enumerate(ranked)]
        for name, ranked in scoring.ranked.items()
    }
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(now),
        "v2_enabled": v2_enabled,
        "policy_hash": policy.hash,
        "sources": sources,
        "scoring_run": scoring.run,
        "tasks": tasks,
        "excluded": scoring.excluded,
        "telemetry": _telemetry(store, now),
        "unmatched_models": sorted({n for names in unmatched_models(store, policy).values() for n in names}),
        "unmapped_tasks": unmapped_tasks(store),
        "next_steps": _next_steps(sources, scoring.run),
    }
    if top is not None:
        _apply_top(document, top)
    return Snapshot(document=document)


def _apply_top(document: dict[str, Any], top: int) -> None:
    """``top`` on every list of the document, not only the ranked tasks.

    Per task: the first ``top`` exclusions (by name) and the ``top`` most-called models of
    ``telemetry.selections``; overall: the ``top`` most-called ``telemetry.models`` and the first
    ``top`` ``unmatched_models`` and ``unmapped_tasks``. Kept entries keep the document's order.
    ``sources`` (one entry per source) and ``next_steps`` are not lists of results and stay whole.
    A store of 500 models x 30 tasks otherwise sends 15,000 selection entries (1 MB) for ``top=5``.
    """
    document["excluded"] = {t: entries[:top] for t, entries in document["excluded"].items()}
    telemetry = document["telemetry"]
    busiest = sorted(telemetry["models"], key=lambda m: (-m["calls"], m["model"]))[:top]
    kept = {m["model"] for m in busiest}
    telemetry["models"] = [m for m in telemetry["models"] if m["model"] in kept]
    per_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in telemetry["selections"]:
        per_task[entry["task"]].append(entry)
    chosen = {id(e) for entries in per_task.values()
              for e in sorted(entries, key=lambda e: (-e["calls"], e["model"]))[:top]}
    telemetry["selections"] = [e for e in telemetry["selections"] if id(e) in chosen]
    for name in ("unmatched_models", "unmapped_tasks"):
        if isinstance(document.get(name), list):
            document[name] = document[name][:top]
