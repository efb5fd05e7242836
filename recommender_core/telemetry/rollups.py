"""Rollups per (model, task) over sliding windows, with exact percentiles, and retention pruning.

A rollup groups the raw events whose ``started_at`` lies in ``[now - window, now)``. The model is
the LiteLLM ``model_group`` when there is one, else the model name (as in the snapshot). Every
model gets one row with ``task=None`` over all its calls, plus one row per tagged task.

- ``calls`` counts successes and failures; ``error_rate = errors / calls``.
- Latency and time-to-first-token percentiles are exact (``recommender_core.stats.percentile``,
  linear interpolation, the same as numpy and Postgres ``percentile_cont``) over the window's
  successful calls that were not cache hits and carry the figure.
- ``mean_cost_per_call``: total cost / calls that reported a cost (failures count, at their cost).
- ``cost_per_1k_tokens``: 1000 x total cost / total tokens, over successful calls with tokens and a
  cost (the price actually observed, cache hits included).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from ..config import MAX_RETENTION_DAYS
from ..stats import percentile, percentile_from_ranks
from ..store import Store
from ..store.tables import TelemetryEvent, TelemetryRollup
from .validate import stored_row_rules

__all__ = [
    "DEFAULT_WINDOWS_HOURS",
    "LatencyPercentiles",
    "PruneResult",
    "Rollup",
    "compute_rollups",
    "latency_percentiles",
    "model_rollups",
    "prune_events",
    "refresh_rollups",
]

DEFAULT_WINDOWS_HOURS = (24, 24 * 7)
PRUNE_BATCH = 5_000
PRUNE_JOB = "telemetry-prune"


@dataclass(frozen=True)
class Rollup:
    """Aggregates of one (model, task) over one window ending at ``computed_at``."""

    computed_at: datetime
    window_hours: int
    model: str
    task: str | None
    calls: int
    errors: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    mean_cost_per_call: float | None
    cost_per_1k_tokens: float | None


@dataclass
class _Acc:
    calls: int = 0
    errors: int = 0
    cost_total: float = 0.0
    cost_calls: int = 0
    priced_cost: float = 0.0
    priced_tokens: int = 0

    def __post_init__(self) -> None:
        self.latencies: list[float] = []
        self.ttfts: list[float] = []


def compute_rollups(
    store: Store, *, now: datetime | None = None, windows_hours: Sequence[int] = DEFAULT_WINDOWS_HOURS
) -> list[Rollup]:
    """Rollups of every (model, task) seen in each window ending at ``now`` (default: the store's clock),
    ordered by window, model, task."""
    now = now or store.clock.now()
    widest = max(windows_hours)
    since = now - timedelta(hours=widest)
    with store.session() as session:
        rows = session.execute(
            sa.select(col(TelemetryEvent.started_at), col(TelemetryEvent.model_group), col(TelemetryEvent.model),
                      col(TelemetryEvent.task), col(TelemetryEvent.status), col(TelemetryEvent.latency_ms),
                      col(TelemetryEvent.ttft_ms), col(TelemetryEvent.cache_hit), col(TelemetryEvent.cost),
                      col(TelemetryEvent.prompt_tokens), col(TelemetryEvent.completion_tokens))
            .where(col(TelemetryEvent.started_at) >= since, col(TelemetryEvent.started_at) < now)
        ).all()
    result: list[Rollup] = []
    for hours in sorted(windows_hours):
        start = now - timedelta(hours=hours)
        groups: dict[tuple[str, str | None], _Acc] = defaultdict(_Acc)
        for started, group, model, task, status, latency, ttft, cache_hit, cost, p_tok, c_tok in rows:
            if started < start:
                continue
            name = group or model
            keys = [(name, None)] if task is None else [(name, None), (name, task)]
            tokens = (p_tok or 0) + (c_tok or 0)
            for key in keys:
                acc = groups[key]
                acc.calls += 1
                if status != "success":
                    acc.errors += 1
                elif not cache_hit:
                    if latency is not None:
                        acc.latencies.append(latency)
                    if ttft is not None:
                        acc.ttfts.append(ttft)
                if cost is not None:
                    acc.cost_total += cost
                    acc.cost_calls += 1
                    if tokens > 0 and status == "success":
                        acc.priced_cost += cost
                        acc.priced_tokens += tokens
        for (name, task), acc in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            latencies, ttfts = sorted(acc.latencies), sorted(acc.ttfts)
            result.append(Rollup(
                computed_at=now, window_hours=hours, model=name, task=task, calls=acc.calls,
                errors=acc.errors, error_rate=acc.errors / acc.calls if acc.calls else None,
                latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
                latency_p99_ms=percentile(latencies, 99),
                ttft_p50_ms=percentile(ttfts, 50), ttft_p95_ms=percentile(ttfts, 95),
                mean_cost_per_call=acc.cost_total / acc.cost_calls if acc.cost_calls else None,
                cost_per_1k_tokens=1000 * acc.priced_cost / acc.priced_tokens if acc.priced_tokens else None,
            ))
    return result


def model_rollups(store: Store, *, now: datetime | None = None, window_hours: int = 24) -> list[Rollup]:
    """One rollup per model over one window, every task together (what the snapshot reports)."""
    return [r for r in compute_rollups(store, now=now, windows_hours=(window_hours,)) if r.task is None]


def refresh_rollups(
    store: Store, *, now: datetime | None = None, windows_hours: Sequence[int] = DEFAULT_WINDOWS_HOURS
) -> list[Rollup]:
    """Compute the rollups and replace the stored ones (``telemetry_rollup``) in one transaction."""
    rollups = compute_rollups(store, now=now, windows_hours=windows_hours)
    with store.session() as session:
        session.execute(sa.delete(TelemetryRollup))
        session.add_all(TelemetryRollup(**r.__dict__) for r in rollups)
    return rollups


@dataclass(frozen=True)
class PruneResult:
    """What ``prune_events`` deleted."""

    cutoff: datetime
    deleted: int
    batches: int


def prune_events(
    store: Store, *, older_than_days: int, now: datetime | None = None, batch_size: int = PRUNE_BATCH
) -> PruneResult:
    """Delete raw events that started before ``now - older_than_days``, ``batch_size`` rows per
    transaction, so a large backlog never holds one long lock. Takes the ``telemetry-prune`` lock
    and refreshes the stored rollups afterwards."""
    if not 1 <= older_than_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"older_than_days must be from 1 to {MAX_RETENTION_DAYS}")
    now = now or store.clock.now()
    cutoff = now - timedelta(days=older_than_days)
    deleted = batches = 0
    with store.job_lock(PRUNE_JOB) as lock:
        while True:
            with store.session() as session:
                lock.check(session.connection())  # a prune that lost its lock deletes nothing more
                ids = session.execute(
                    sa.select(col(TelemetryEvent.id)).where(col(TelemetryEvent.started_at) < cutoff)
                    .order_by(col(TelemetryEvent.id)).limit(batch_size)
                ).scalars().all()
                if not ids:
                    break
                session.execute(sa.delete(TelemetryEvent).where(col(TelemetryEvent.id).in_(ids)))
            deleted += len(ids)
            batches += 1
            if len(ids) < batch_size:
                break
    refresh_rollups(store, now=now)
    return PruneResult(cutoff=cutoff, deleted=deleted, batches=batches)


@dataclass(frozen=True)
class LatencyPercentiles:
    """Latency percentiles of one model's timed calls (successes, not cache hits, with a latency)."""

    samples: int
    values: dict[int, float | None]  # percentile -> milliseconds


def latency_percentiles(conn: sa.Connection, *, since: datetime,
                        percentiles: Sequence[int]) -> dict[str, LatencyPercentiles]:
    """Per model (``model_group``, else the model name), exact latency percentiles of the calls
    started at or after ``since``, without fetching every latency: the database ranks the latencies
    with window functions and returns only the two ranks each percentile reads; Python interpolates
    (``stats.percentile_from_ranks``, the same figures as ``stats.percentile`` on both backends).
    """
    name = sa.func.coalesce(col(TelemetryEvent.model_group), col(TelemetryEvent.model))
    latency = col(TelemetryEvent.latency_ms)
    ranked = sa.select(
        name.label("name"), latency.label("latency"),
        (sa.func.row_number().over(partition_by=name, order_by=latency) - 1).label("rn"),
        sa.func.count().over(partition_by=name).label("n"),
    ).where(col(TelemetryEvent.started_at) >= since, col(TelemetryEvent.status) == "success",
            col(TelemetryEvent.cache_hit).is_(False), latency.is_not(None), stored_row_rules()).subquery()
    wanted_ranks = []
    for pct in percentiles:
        # Integer arithmetic, the same in SQL and in percentile_from_ranks, so both pick the same ranks.
        low = (ranked.c.n - 1) * pct // 100
        wanted_ranks += [ranked.c.rn == low, ranked.c.rn == low + 1]
    picked = conn.execute(
        sa.select(ranked.c.name, ranked.c.n, ranked.c.rn, ranked.c.latency).where(sa.or_(*wanted_ranks))
    ).all()
    at_rank: dict[str, dict[int, float]] = defaultdict(dict)
    sizes: dict[str, int] = {}
    for model, n, rn, value in picked:
        at_rank[model][int(rn)] = float(value)
        sizes[model] = int(n)
    return {model: LatencyPercentiles(samples=n, values={
        pct: percentile_from_ranks(at_rank[model], n, pct) for pct in percentiles}) for model, n in sizes.items()}
