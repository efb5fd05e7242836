"""``recsys score`` over 500 models and 30 tasks against its telemetry rollup read, at 100k and N events.

Telemetry reaches scoring only through the hourly rollups (``telemetry.rollups``), so the cost of a
run must not grow with the raw events in the window. Two figures, in one run:

1. ``score`` at ``RECSYS_BENCH_EVENTS`` events (default 100,000) vs its rollup read alone
   (``telemetry_by_model``: catch-up check + read of the window's rollups). Target: at most 1.5x.
   Printed beside it, the floor of any complete run: the rollup read + reading the current evidence
   + writing the 15,000 rows alone (COPY/executemany, rolled back), as a multiple of the read.
2. ``score`` on a second store of ``RECSYS_BENCH_LARGE_EVENTS`` events (default 1,000,000;
   ``RECSYS_BENCH_LARGE_EVENTS=10000000`` for the issue's 10M) vs ``score`` at the base size, timed
   in the same interleaved rounds, both after the catch-up of their hours (timed and reported, not
   compared) and, on Postgres, a ``VACUUM ANALYZE`` (the store at rest). Target: at most 1.3x.

Events are generated inside the database (Postgres ``generate_series``, SQLite a recursive CTE),
never through Python, spread over the last 6 days, so every event is in scoring's 7-day window.
Stores: SQLite in a temporary folder, then Postgres when ``RECSYS_BENCH_DATABASE_URL`` (or
``RECSYS_TEST_DATABASE_URL``) names a server (a scratch database is created on it and dropped).
Each side is timed in ``ROUNDS`` interleaved rounds; a ratio is the median of the rounds' own ratios,
each side's median and spread (min-max) are printed with it.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa

from recommender_core.policy import Policy, parse_policy
from recommender_core.scoring.run import load_evidence, run_scoring
from recommender_core.store import Store
from recommender_core.store.bulk import insert_utility_scores
from recommender_core.store.partitions import ensure_event_partitions
from recommender_core.telemetry.rollups import catch_up_rollups, telemetry_by_model

from ._common import Result, bench_backends, bench_store, paired_median

MODELS = 500
TASKS = 30
EVENTS = int(os.environ.get("RECSYS_BENCH_EVENTS", "100000"))
LARGE_EVENTS = int(os.environ.get("RECSYS_BENCH_LARGE_EVENTS", "1000000"))
ROUNDS = 5
SPREAD_SECONDS = 6 * 24 * 3600


def _policy() -> Policy:
    lines = ["version: 1", "candidates:"]
    lines += [f"  model-{i:03d}: {{provider: p, price: {{input_per_1m: {0.1 + i / 100:.2f}, output_per_1m: 1.0}}}}"
              for i in range(MODELS)]
    lines.append("tasks:")
    for t in range(TASKS):
        lines.append(f"  task-{t:02d}:\n    evidence: [lmsys:text/cat{t:02d}]\n    static_order: [model-000]")
    return parse_policy("\n".join(lines), path="bench.yaml")


def _fill_evidence(store: Store) -> None:
    rng = random.Random(5)
    now = store.clock.now()
    with store.connect() as conn:
        run_id = conn.execute(sa.text(
            "INSERT INTO ingest_run (source, status, started_at, finished_at, rows_accepted, rows_rejected, details)"
            " VALUES ('lmsys', 'success', :t, :t, 0, 0, '{}') RETURNING id"),
            {"t": now if store.dialect == "postgresql" else now.replace(tzinfo=None)}).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO benchmark_evidence (run_id, source, model, category, metric, value, lower, upper, samples,"
            " extra) VALUES (:run, 'lmsys', :model, :cat, 'rating', :v, :lo, :hi, 1000, '{}')"),
            [{"run": run_id, "model": f"model-{i:03d}", "cat": f"text/cat{t:02d}", "v": r, "lo": r - 10, "hi": r + 10}
             for t in range(TASKS) for i in range(MODELS) for r in [rng.uniform(1000, 1500)]])


# Model k = (g * 7919) mod 500, 2% failures, latencies 50-4000 ms, 1,200 tokens, a cost; all in SQL.
_POSTGRES_EVENTS = """
INSERT INTO telemetry_event (event_id, origin, model_group, model, status, started_at, latency_ms,
                             prompt_tokens, completion_tokens, cost, cache_hit, tags)
SELECT 'ev-' || g, 'callback', m, m, CASE WHEN g % 50 = 0 THEN 'failure' ELSE 'success' END,
       :now - make_interval(secs => floor(random() * :spread)),
       CASE WHEN g % 50 = 0 THEN NULL ELSE 50 + random() * 3950 END, 1000, 200,
       0.0001 + random() * 0.0099, false, '[]'
FROM (SELECT g, 'model-' || lpad(((g * 7919) % 500)::text, 3, '0') AS m
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g) AS s
"""
_SQLITE_EVENTS = """
WITH RECURSIVE s(g) AS (SELECT :first UNION ALL SELECT g + 1 FROM s WHERE g < :last)
INSERT INTO telemetry_event (event_id, origin, model_group, model, status, started_at, latency_ms,
                             prompt_tokens, completion_tokens, cost, cache_hit, tags)
SELECT 'ev-' || g, 'callback', m, m, CASE WHEN g % 50 = 0 THEN 'failure' ELSE 'success' END,
       strftime('%Y-%m-%d %H:%M:%S', :now_epoch - abs(random() % :spread), 'unixepoch') || '.000000',
       CASE WHEN g % 50 = 0 THEN NULL ELSE 50 + abs(random() % 3950000) / 1000.0 END, 1000, 200,
       0.0001 + abs(random() % 9900) / 1000000.0, 0, '[]'
FROM (SELECT g, 'model-' || substr('00' || ((g * 7919) % 500), -3) AS m FROM s)
"""


def _add_events(store: Store, first: int, last: int) -> None:
    """Events ``first``..``last`` (inclusive), generated by the database itself."""
    now = store.clock.now()
    # Postgres: the day partitions of the spread, as every insert path makes them (store/partitions.py).
    ensure_event_partitions(store, [now - timedelta(days=d) for d in range(SPREAD_SECONDS // 86_400 + 2)])
    with store.connect() as conn:
        if store.dialect == "postgresql":
            conn.execute(sa.text(_POSTGRES_EVENTS), {"now": now, "spread": SPREAD_SECONDS, "first": first,
                                                     "last": last})
        else:
            conn.execute(sa.text(_SQLITE_EVENTS), {"now_epoch": int(now.timestamp()), "spread": SPREAD_SECONDS,
                                                   "first": first, "last": last})



class _Rollback(Exception):
    pass


def _floor(store: Store, policy: Policy) -> tuple[float, float]:
    """What any scoring run pays besides its rollup read: reading the current evidence (``load_evidence``)
    and writing the run's rows alone (``insert_utility_scores``, COPY/executemany, of rows computed
    beforehand, in a transaction rolled back afterwards)."""
    started = time.perf_counter()
    load_evidence(store, policy)
    evidence = time.perf_counter() - started
    scores = run_scoring(store, policy, dry_run=True).scores
    with store.connect() as conn:
        run_id = conn.execute(sa.text("SELECT max(id) FROM scoring_run")).scalar_one()
    write = 0.0
    try:
        with store.session() as session:
            started = time.perf_counter()
            insert_utility_scores(session, run_id=run_id, scores=[replace(s, task=f"{s.task}~floor") for s in scores])
            session.flush()
            write = time.perf_counter() - started
            raise _Rollback
    except _Rollback:
        pass
    return evidence, write


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started
    return run


def _spread(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s [{min(times):.3f}-{max(times):.3f}]"


def _filled(store: Store, events: int) -> tuple[float, float, int]:
    """Evidence and ``events`` telemetry events, caught up: (generation s, catch-up s, hours caught up)."""
    _fill_evidence(store)
    started = time.perf_counter()
    _add_events(store, 1, events)
    fill = time.perf_counter() - started
    started = time.perf_counter()
    caught = catch_up_rollups(store)
    catch_up = time.perf_counter() - started
    _settled(store)
    return fill, catch_up, caught.hours


def _settled(store: Store) -> None:
    """The store at rest, as a nightly ``score`` finds it hours after the day's events arrived: on
    Postgres, ``VACUUM ANALYZE`` now, instead of autovacuum working through a million fresh rows on
    this machine's other core in the middle of the timed rounds (which slowed the large store's
    rounds only, and by up to a half); SQLite has no background maintenance."""
    if store.dialect != "postgresql":
        return
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


def run() -> list[Result]:
    return [result for admin in bench_backends() for result in _run_on(admin)]


def _run_on(admin: str | None) -> list[Result]:
    policy = _policy()
    # Two stores, one per size, so the two sizes are timed interleaved in the same rounds (a store that
    # grew between the two figures would compare times taken minutes apart, under other load).
    with bench_store(admin) as store, bench_store(admin) as large:
        backend = store.dialect
        fill_base, catch_up_base, _ = _filled(store, EVENTS)
        fill_large, catch_up_large, hours = _filled(large, LARGE_EVENTS)
        since = store.clock.now() - timedelta(days=7)
        score = _timed(lambda: run_scoring(store, policy))
        score_on_large = _timed(lambda: run_scoring(large, policy))
        read = _timed(lambda: telemetry_by_model(store, since=since))
        read()  # warm the caches of every side
        telemetry_by_model(large, since=since)
        score_base, read_base, score_large = [], [], []
        for _ in range(ROUNDS):  # interleaved, so drift in machine load hits every side alike
            score_base.append(score())
            read_base.append(read())
            score_large.append(score_on_large())
        floors = [_floor(store, policy) for _ in range(ROUNDS)]
    read_median = statistics.median(read_base)
    floor_ratio = (read_median + statistics.median(f[0] + f[1] for f in floors)) / read_median
    base_note = (f"{backend}; {EVENTS} events generated in {fill_base:.1f} s, caught up in {catch_up_base:.1f} s "
                 f"(excluded); score {_spread(score_base)}, rollup read {_spread(read_base)}; floor besides the "
                 f"read: evidence read {_spread([f[0] for f in floors])}, writing the {MODELS * TASKS} rows alone "
                 f"{_spread([f[1] for f in floors])}: read + evidence + write = {floor_ratio:.2f}x the read, "
                 f"the floor of any complete run")
    large_note = (f"{backend}; a second store of {LARGE_EVENTS} events (generated in SQL in {fill_large:.1f} s; "
                  f"the catch-up of {hours} hours took {catch_up_large:.1f} s, excluded), timed in the same "
                  f"interleaved rounds as the {EVENTS} store; score at {LARGE_EVENTS}: {_spread(score_large)}; "
                  "RECSYS_BENCH_LARGE_EVENTS=10000000 for the issue's 10M")
    return [
        Result(name=f"{backend}: score ({MODELS} models x {TASKS} tasks, {EVENTS} events)",
               figure=statistics.median(score_base), baseline=statistics.median(read_base), unit="s",
               baseline_name="its telemetry rollup read alone", target=1.5, figure_runs=tuple(score_base),
               baseline_runs=tuple(read_base), notes=f"median of {ROUNDS} interleaved rounds; {base_note}",
               paired_ratio=paired_median(score_base, read_base)),
        Result(name=f"{backend}: score with {LARGE_EVENTS} raw events in the window",
               figure=statistics.median(score_large), baseline=statistics.median(score_base), unit="s",
               baseline_name=f"score with {EVENTS}", target=1.3, figure_runs=tuple(score_large),
               baseline_runs=tuple(score_base), notes=large_note, paired_ratio=paired_median(score_large, score_base)),
    ]
