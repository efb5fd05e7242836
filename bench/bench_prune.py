"""``telemetry prune`` on Postgres: dropping day partitions against deleting the same events in batches.

Each round fills ``PRUNE_DAYS`` whole old days with ``PRUNE_EVENTS`` events in all (generated inside
the database, ``generate_series``), then times ``prune_events`` with a retention that covers them all:
  A = the days have their partitions (``ensure_event_partitions`` before the fill): prune drops them;
  B = the same events without partitions (an insert path that made none: the DEFAULT partition takes
      them): prune deletes them in batches of 5,000, what it did before partitioning and still does
      on SQLite.
A and B alternate (A B A B ..., ``PRUNE_ROUNDS`` rounds); medians and spread. Target: A at most 0.5x B.
Needs ``RECSYS_BENCH_DATABASE_URL`` (a Postgres server where a scratch database may be created);
SQLite has no partitions and is not measured here.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from ._common import Result, interleaved_runs, median_of, scratch_postgres

PRUNE_EVENTS = int(os.environ.get("RECSYS_BENCH_PRUNE_EVENTS", "100000"))
PRUNE_DAYS = 5
PRUNE_ROUNDS = int(os.environ.get("RECSYS_BENCH_PRUNE_ROUNDS", "3"))
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RETENTION_DAYS = 3
_FILL = """
INSERT INTO telemetry_event (event_id, origin, model_group, model, task, status, started_at, latency_ms,
                             prompt_tokens, completion_tokens, cost, cache_hit, tags)
SELECT :prefix || g, 'callback', 'm' || (g % 50), 'm' || (g % 50), 't' || (g % 7), 'success',
       CAST(:first AS timestamptz) + (g * CAST(:step AS double precision)) * interval '1 second',
       100 + g % 900, 100, 50, 0.001, false, '[]'
FROM generate_series(0, :n - 1) AS g
"""


def _round(url: str, *, partitioned: bool, counter: list[int]) -> float:
    import sqlalchemy as sa

    from recommender_core.clock import FixedClock
    from recommender_core.store import Store
    from recommender_core.store.partitions import ensure_event_partitions
    from recommender_core.telemetry.retention import prune_events

    store = Store(url, clock=FixedClock(NOW))
    first = (NOW - timedelta(days=RETENTION_DAYS + PRUNE_DAYS + 1)).replace(hour=0, minute=0)
    try:
        if partitioned:
            ensure_event_partitions(store, [first + timedelta(days=d) for d in range(PRUNE_DAYS)])
        counter[0] += 1
        with store.connect() as conn:
            conn.execute(sa.text(_FILL), {
                "prefix": f"r{counter[0]}-", "first": first, "step": PRUNE_DAYS * 86_400 / PRUNE_EVENTS,
                "n": PRUNE_EVENTS})
            conn.exec_driver_sql("ANALYZE telemetry_event")
        start = time.perf_counter()
        result = prune_events(store, older_than_days=RETENTION_DAYS)
        elapsed = time.perf_counter() - start
        assert result.deleted == PRUNE_EVENTS, result
        assert (result.partitions_dropped >= PRUNE_DAYS) == partitioned, result
        return elapsed
    finally:
        store.dispose()


def run() -> list[Result]:
    admin = os.environ.get("RECSYS_BENCH_DATABASE_URL")
    if not admin:
        print("bench_prune: RECSYS_BENCH_DATABASE_URL is not set; the Postgres comparison was not run")
        return []
    with scratch_postgres(admin) as url:
        from recommender_core.store import Store

        setup = Store(url)
        setup.upgrade()
        setup.dispose()
        counter = [0]
        dropped, batched = interleaved_runs(lambda: _round(url, partitioned=True, counter=counter),
                                            lambda: _round(url, partitioned=False, counter=counter),
                                            rounds=PRUNE_ROUNDS)
    return [Result(
        name=f"Postgres prune of {PRUNE_EVENTS:,} events over {PRUNE_DAYS} days, partitions dropped",
        figure=median_of(dropped), baseline=median_of(batched), unit="s",
        baseline_name="the same events deleted in batches", target=0.5,
        figure_runs=dropped, baseline_runs=batched)]
