"""The snapshot document of DESIGN.md section 5: can the recommender be trusted right now?"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from ..evidence import unmatched_models
from ..policy import Policy
from ..stats import percentile
from ..store import Store
from ..store.tables import IngestRun, RunStatus, ScoringRun, TelemetryEvent, UtilityScore, utcnow

__all__ = ["SCHEMA_VERSION", "Snapshot", "build_snapshot"]

SCHEMA_VERSION = 1
TELEMETRY_WINDOW_HOURS = 24
_ROUND = 9


@dataclass(frozen=True)
class Snapshot:
    """A built snapshot; ``document`` is the versioned JSON document (valid against the schema)."""

    document: dict[str, Any]

    @property
    def is_empty(self) -> bool:
        return not self.document["sources"] and self.document["scoring_run"] is None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _sources(store: Store, now: datetime, stale_after: timedelta) -> list[dict[str, Any]]:
    with store.session() as session:
        runs = session.exec(select(IngestRun).order_by(col(IngestRun.id).desc())).all()
    by_source: dict[str, list[IngestRun]] = defaultdict(list)
    for run in runs:
        by_source[run.source].append(run)
    result = []
    for source in sorted(by_source):
        history = by_source[source]
        last = history[0]
        success = next((r for r in history if r.status == RunStatus.SUCCESS), None)
        # "unchanged" runs prove the source was checked and is still current, so they refresh age.
        checked = next((r for r in history if r.status in (RunStatus.SUCCESS, RunStatus.UNCHANGED)), None)
        checked_at = (checked.finished_at or checked.started_at) if checked else None
        age = (now - checked_at).total_seconds() if checked_at else None
        result.append({
            "source": source,
            "last_status": last.status,
            "last_run_at": _iso(last.started_at),
            "last_success_at": _iso(checked_at),
            "age_seconds": age,
            "stale": age is None or age > stale_after.total_seconds(),
            "source_version": success.source_version if success else None,
            "rows": success.rows_accepted if success else 0,
            "rejected_rows": last.rows_rejected,
            "last_error": last.error if last.status in (RunStatus.FAILED, RunStatus.ABANDONED) else None,
        })
    return result


def _scoring(store: Store, task: str | None, top: int | None) -> tuple[dict[str, Any] | None,
                                                                        dict[str, list[dict[str, Any]]]]:
    with store.session() as session:
        run = session.exec(select(ScoringRun).where(col(ScoringRun.is_current)).limit(1)).first()
        if run is None:
            return None, {}
        query = select(UtilityScore).where(col(UtilityScore.run_id) == run.id,
                                           col(UtilityScore.excluded).is_(False))
        if task is not None:
            query = query.where(col(UtilityScore.task) == task)
        scores = session.exec(query).all()
    by_task: dict[str, list[UtilityScore]] = defaultdict(list)
    for score in scores:
        by_task[score.task].append(score)
    tasks: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(by_task):
        # DESIGN.md section 6 order: utility desc, quality desc, cost asc, name asc (9 decimals).
        ordered = sorted(by_task[name], key=lambda s: (
            -round(s.utility or 0.0, _ROUND), -round(s.quality or 0.0, _ROUND),
            round(s.cost_per_1k_tokens or 0.0, _ROUND), s.model))
        if top is not None:
            ordered = ordered[:top]
        tasks[name] = [{
            "rank": i + 1, "model": s.model, "utility": s.utility, "quality": s.quality, "cost": s.cost,
            "latency": s.latency, "reliability": s.reliability, "cost_per_1k_tokens": s.cost_per_1k_tokens,
            "latency_p95_ms": s.latency_p95_ms, "success_rate": s.success_rate, "evidence": list(s.evidence),
        } for i, s in enumerate(ordered)]
    info = {"id": str(run.id), "computed_at": _iso(run.finished_at or run.started_at),
            "policy_hash": run.policy_hash}
    return info, tasks


def _telemetry(store: Store, now: datetime) -> dict[str, Any]:
    since = now - timedelta(hours=TELEMETRY_WINDOW_HOURS)
    with store.session() as session:
        # sqlmodel's select() is typed for at most four columns; SQLAlchemy's takes any number.
        rows = session.execute(
            sa.select(col(TelemetryEvent.model_group), col(TelemetryEvent.model), col(TelemetryEvent.status),
                      col(TelemetryEvent.latency_ms), col(TelemetryEvent.cache_hit))
            .where(col(TelemetryEvent.started_at) >= since)
        ).all()
    calls: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    for group, model, status, latency, cache_hit in rows:
        name = group or model
        calls[name] += 1
        if status != "success":
            errors[name] += 1
        elif latency is not None and not cache_hit:
            latencies[name].append(latency)
    models = []
    for name in sorted(calls):
        values = sorted(latencies[name])
        models.append({
            "model": name, "calls": calls[name], "errors": errors[name],
            "error_rate": errors[name] / calls[name],
            "latency_p50_ms": percentile(values, 50), "latency_p95_ms": percentile(values, 95),
        })
    return {"window_hours": TELEMETRY_WINDOW_HOURS, "models": models}


def _next_steps(sources: list[dict[str, Any]], scoring_run: dict[str, Any] | None) -> list[str]:
    steps = []
    if not sources:
        steps.append("recsys ingest lmsys")
        steps.append("recsys ingest mteb")
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
    """Build the snapshot document from what the store holds now."""
    now = now or utcnow()
    sources = _sources(store, now, timedelta(hours=stale_after_hours))
    scoring_run, tasks = _scoring(store, task, top)
    unmatched = unmatched_models(store, policy)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(now),
        "v2_enabled": v2_enabled,
        "policy_hash": policy.hash,
        "sources": sources,
        "scoring_run": scoring_run,
        "tasks": tasks,
        "telemetry": _telemetry(store, now),
        "unmatched_models": sorted({name for names in unmatched.values() for name in names}),
        "next_steps": _next_steps(sources, scoring_run),
    }
    return Snapshot(document=document)
