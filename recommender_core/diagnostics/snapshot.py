"""The snapshot document (docs/snapshot.schema.json): can the recommender be trusted right now?

Fields are only ever added within a schema version (the schema at ``docs/snapshot.schema.json`` lists
them): ``policy_hash``, per source ``last_run_at``; ``scoring_run.age_seconds``; per ranked model
``evidence_values`` (the stored values behind its ``evidence`` references); ``excluded`` per task
with reasons; ``telemetry.selections`` per task and model; ``next_steps`` when the store cannot answer;
``unmapped_tasks``: MTEB tasks of the current evidence that the task map does not know.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from ..clock import iso_utc
from ..errors import UnknownTaskError, UsageError
from ..evidence import unmapped_tasks, unmatched_models
from ..policy import Policy
from ..store import Store
from ..store.runs import ABANDONED_ERROR, gone_running_runs, ingest_job_name
from ..store.tables import IngestRun, RunStatus, TelemetryRollup
from ..telemetry.rollups import read_window
from .snapshot_tasks import current_scoring_run, ranked_tasks

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
    return iso_utc(value) if value is not None else None


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


def _telemetry(store: Store, now: datetime) -> dict[str, Any]:
    """Calls, errors and latency percentiles per model over the window, from the hourly rollups
    (``telemetry.rollups``: whole hours, percentiles within 1% of the exact ones)."""
    since = now - timedelta(hours=TELEMETRY_WINDOW_HOURS)
    window = read_window(store, since=since)  # catches the rollups up first
    models = []
    for model, agg in sorted(window.by_model.items()):
        models.append({"model": model, "calls": agg.calls, "errors": agg.errors, "error_rate": agg.error_rate,
                       "latency_p50_ms": agg.latency_percentile(50), "latency_p95_ms": agg.latency_percentile(95)})
    return {
        "window_hours": TELEMETRY_WINDOW_HOURS,
        "models": models,
        "selections": [{"task": task, "model": model, "calls": calls}
                       for task, model, calls in _selections(store, window.first_hour)],
    }


_ROLLUP = TelemetryRollup.__table__.c  # type: ignore[attr-defined]


def _selections(store: Store, first_hour: datetime) -> list[tuple[str, str, int]]:
    """(task, model, calls) from ``first_hour`` on, by task then model: the per-(model, task) hour rows
    of the rollups (what ``read_window(tasks=True)`` sums), but only their calls, summed in SQL, as
    tuples: 500 models x 30 tasks are 15,000 entries, and a full aggregate per entry cost more than
    the query."""
    r = _ROLLUP
    with store.connect() as conn:
        rows = conn.execute(sa.select(r.task, r.model, sa.func.sum(r.calls))
                            .where(r.hour_start >= first_hour, r.span_hours == 1, r.all_tasks.is_(False))
                            .group_by(r.model, r.task)).all()
    return sorted(((task or UNTAGGED_TASK, model, int(calls)) for task, model, calls in rows),
                  key=operator.itemgetter(0, 1))


def selection_counts(store: Store, *, since: datetime) -> dict[tuple[str, str], int]:
    """Calls per (task, model) of the telemetry from the hour holding ``since`` on (the snapshot's
    ``telemetry.selections``): ``recsys serve``'s ``recsys_model_selected_calls``."""
    window = read_window(store, since=since, tasks=True)
    return {(task or UNTAGGED_TASK, model): agg.calls for (model, task), agg in window.by_model_task.items()}


def _next_steps(sources: list[dict[str, Any]], scoring_run: dict[str, Any] | None) -> list[str]:
    steps: list[str] = []
    if not sources:
        from ..sources import load_sources

        # the deployed sources; one a team feeds by hand (its own evals) is not a first step
        steps.extend(f"recsys ingest {name}" for name, plugin in load_sources().items() if plugin.cronjob)
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
    scoring = ranked_tasks(store, policy, now, task, top)
    if task is not None and task not in policy.tasks and task not in scoring.tasks \
            and task not in scoring.excluded:
        raise UnknownTaskError(f"Unknown task '{task}'. Tasks: {', '.join(sorted(policy.tasks))}.", task=task)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(now),
        "v2_enabled": v2_enabled,
        "policy_hash": policy.hash,
        "sources": sources,
        "scoring_run": scoring.run,
        "tasks": scoring.tasks,
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
