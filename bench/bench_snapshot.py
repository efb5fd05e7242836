"""Snapshot and ``GET /snapshot`` speed (issue 7).

1. ``recsys snapshot --json`` (``build_snapshot`` + JSON serialisation, in process, so the CLI's
   constant start-up does not blur the figure) on a store with 500 models, 30 tasks and
   ``RECSYS_BENCH_EVENTS`` telemetry events (default 100,000; above 1,000,000 Postgres generates
   them itself with ``generate_series``, e.g. ``RECSYS_BENCH_EVENTS=10000000``), all inside the 24 h
   window. The snapshot reads telemetry from the hourly rollups only; the first snapshot catches
   them up (timed and reported, excluded from the figure).
   Baseline: the snapshot's single slowest query,
   replayed alone on a raw DBAPI cursor (execute + fetchall); every query the snapshot runs is
   captured with SQLAlchemy's cursor events and replayed, and the slowest one is the baseline.
   Target: at most 1.5x.
2. ``GET /snapshot?top=5`` requests/s from a loopback load generator (threads with keep-alive
   connections, in a child process) against ``recsys serve``'s server, with the short cache (target
   >= 2,000 req/s, median of 3 runs) and uncached (``cache_seconds=0``, every request rebuilds the
   document; reported, no target).
3. The p99 latency of the same requests while the cache keeps expiring (a 0.2 s cache, shorter than
   one rebuild, so a background rebuild runs nearly all the time): target under 50 ms, since no
   request waits for a rebuild.

Stores: SQLite in a temporary folder, then Postgres when ``RECSYS_BENCH_DATABASE_URL`` (or
``RECSYS_TEST_DATABASE_URL``) names a server (a scratch database is created on it and dropped).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from recommender_core.diagnostics.server import DiagnosticsApp, make_server
from recommender_core.diagnostics.snapshot import build_snapshot
from recommender_core.policy import Policy, parse_policy
from recommender_core.store import Store
from recommender_core.store.partitions import ensure_event_partitions
from recommender_core.store.tables import (
    BenchmarkEvidence,
    IngestRun,
    RunStatus,
    ScoringRun,
    TelemetryEvent,
    UtilityScore,
)

from ._common import Result, bench_backends, bench_store

MODELS = 500
TASKS = 30
EVENTS = int(os.environ.get("RECSYS_BENCH_EVENTS", "100000"))
# Above this many events, Postgres generates them itself (generate_series) instead of a COPY from Python.
SQL_FILL_ABOVE = 1_000_000
ROUNDS = 3
LOAD_SECONDS = 3.0
LOAD_THREADS = 4
# For the refresh run: expires well within one rebuild, so a background rebuild is nearly always running.
REFRESH_CACHE_SECONDS = 0.2


def _policy() -> Policy:
    lines = ["version: 1", "candidates:"]
    lines += [f"  model-{m:03d}: {{provider: p{m % 7}, aliases: {{lmsys: [arena-model-{m:03d}]}}}}"
              for m in range(MODELS)]
    lines.append("tasks:")
    lines += [f"  task-{t:02d}: {{evidence: [lmsys:text/cat-{t:02d}], static_order: [model-000]}}"
              for t in range(TASKS)]
    return parse_policy("\n".join(lines) + "\n", path="<bench>")


def _fill(store: Store, rng: random.Random) -> None:
    now = store.clock.now()
    with store.session() as s:
        runs = []
        for source in ("lmsys", "mteb"):
            for i in range(30):  # RECSYS_KEEP_RUNS runs of history per source
                run = IngestRun(source=source, status=RunStatus.SUCCESS if i % 5 else RunStatus.FAILED,
                                started_at=now - timedelta(hours=24 * (30 - i)),
                                finished_at=now - timedelta(hours=24 * (30 - i)), source_version=f"v{i}",
                                rows_accepted=MODELS * TASKS, error=None if i % 5 else "SourceHTTPError: 503")
                s.add(run)
                runs.append(run)
        s.flush()
        lmsys_run = max((r for r in runs if r.source == "lmsys" and r.status == RunStatus.SUCCESS),
                        key=lambda r: r.id or 0)
        scoring = ScoringRun(status=RunStatus.SUCCESS, started_at=now, finished_at=now, policy_hash="0" * 64,
                             is_current=True)
        s.add(scoring)
        s.flush()
        lmsys_id, scoring_id = lmsys_run.id, scoring.id
    evidence = [{"run_id": lmsys_id, "source": "lmsys", "model": f"arena-model-{m:03d}",
                 "category": f"text/cat-{t:02d}", "metric": "rating", "value": rng.uniform(900, 1400),
                 "lower": None, "upper": None,
                 "samples": rng.randint(100, 50000), "source_version": "v29", "extra": {}}
                for m in range(MODELS) for t in range(TASKS)]
    scores = []
    for t in range(TASKS):
        for m in range(MODELS):
            q, c, lat, rel = (rng.random() for _ in range(4))
            scores.append({"run_id": scoring_id, "task": f"task-{t:02d}", "model": f"model-{m:03d}",
                           "utility": 0.55 * q + 0.2 * c + 0.15 * lat + 0.1 * rel, "quality": q, "cost": c,
                           "latency": lat, "reliability": rel, "cost_per_1k_tokens": rng.uniform(0, 0.05),
                           "latency_p95_ms": rng.uniform(200, 5000), "success_rate": rng.uniform(0.9, 1),
                           "excluded": m % 50 == 0, "reason": "no evidence" if m % 50 == 0 else None,
                           "evidence": [f"lmsys:text/cat-{t:02d}"], "details": {}})
    with store.connect() as conn:
        conn.execute(sa.insert(BenchmarkEvidence.__table__), evidence)  # type: ignore[attr-defined]
        conn.execute(sa.insert(UtilityScore.__table__), scores)  # type: ignore[attr-defined]
    _fill_events(store, rng, now)


def _events(rng: random.Random, now: Any) -> Iterator[tuple[Any, ...]]:
    # Traffic is skewed, as real traffic is: a few models and tasks get most calls.
    weights = [1 / (m + 1) for m in range(MODELS)]
    models = rng.choices(range(MODELS), weights=weights, k=EVENTS)
    for i, m in enumerate(models):
        failed = rng.random() < 0.02
        yield (f"ev-{i}", "callback", f"model-{m:03d}", f"model-{m:03d}-2025", f"task-{i % TASKS:02d}",
               "failure" if failed else "success", now - timedelta(seconds=rng.uniform(0, 86000)),
               None if failed else rng.lognormvariate(6.5, 0.6), (i % 20 == 0), "[]")


# The same traffic shape as ``_events``, generated by Postgres: model k with weight ~ 1/(k+1)
# (floor(MODELS ** random()) - 1), tasks in turn, 2% failures, 5% cache hits, lognormal-ish latencies.
_POSTGRES_EVENTS = """
INSERT INTO telemetry_event (event_id, origin, model_group, model, task, status, started_at, latency_ms,
                             cache_hit, tags)
SELECT 'ev-' || g, 'callback', 'model-' || lpad(m::text, 3, '0'), 'model-' || lpad(m::text, 3, '0') || '-2025',
       'task-' || lpad((g % :tasks)::text, 2, '0'), CASE WHEN g % 50 = 0 THEN 'failure' ELSE 'success' END,
       :now - make_interval(secs => random() * 86000),
       CASE WHEN g % 50 = 0 THEN NULL ELSE exp(6.5 + 0.6 * (random() + random() + random() - 1.5) * 2) END,
       g % 20 = 0, '[]'
FROM (SELECT g, LEAST(floor(power(:models, random()))::int - 1, :models - 1) AS m
      FROM generate_series(1, CAST(:n AS bigint)) AS g) AS s
"""


def _fill_events(store: Store, rng: random.Random, now: Any) -> None:
    columns = ("event_id", "origin", "model_group", "model", "task", "status", "started_at", "latency_ms",
               "cache_hit", "tags")
    # Postgres: the day partitions of the last 24 h, as every insert path makes them (store/partitions.py).
    ensure_event_partitions(store, [now - timedelta(hours=24), now])
    if store.dialect == "postgresql" and EVENTS > SQL_FILL_ABOVE:
        with store.connect() as conn:
            conn.execute(sa.text(_POSTGRES_EVENTS), {"now": now, "n": EVENTS, "models": MODELS, "tasks": TASKS})
        return
    if store.dialect == "postgresql":
        with store.connect() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY telemetry_event ({', '.join(columns)}) FROM STDIN") as copy:
                for row in _events(rng, now):
                    copy.write_row(row)
        return
    batch: list[dict[str, Any]] = []
    with store.connect() as conn:
        for row in _events(rng, now):
            batch.append(dict(zip(columns, row, strict=True)))
            if len(batch) == 50_000:
                conn.execute(sa.insert(TelemetryEvent.__table__), _typed(batch))  # type: ignore[attr-defined]
                batch = []
        if batch:
            conn.execute(sa.insert(TelemetryEvent.__table__), _typed(batch))  # type: ignore[attr-defined]


def _typed(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in batch:
        row["tags"] = []
    return batch



def _snapshot_json(store: Store, policy: Policy) -> bytes:
    return json.dumps(build_snapshot(store, policy, v2_enabled=True).document, default=str).encode()


def _slowest_query(store: Store, policy: Policy) -> tuple[float, str, float, int]:
    """The slowest query of one snapshot (median of ``ROUNDS`` replays on a raw cursor) and its text,
    with the sum of every query's median (the floor no Python work can go under) and their count."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        captured.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        _snapshot_json(store, policy)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    slowest, text, total = 0.0, "", 0.0
    raw = store.engine.raw_connection()
    try:
        for statement, parameters in captured:
            times = []
            for _ in range(ROUNDS):
                cursor = raw.cursor()
                started = time.perf_counter()
                cursor.execute(statement, parameters)
                cursor.fetchall()
                times.append(time.perf_counter() - started)
                cursor.close()
            raw.rollback()
            total += statistics.median(times)
            if statistics.median(times) > slowest:
                slowest, text = statistics.median(times), " ".join(statement.split())[:70]
    finally:
        raw.close()
    return slowest, text, total, len(captured)


def _load(address: tuple[str, int], path: str, seconds: float, clients: int = LOAD_THREADS) -> dict[str, Any]:
    """Requests/s and latency percentiles over ``seconds`` from ``clients`` keep-alive clients, run in
    a child process so the load generator does not compete with the server for the interpreter lock."""
    root = Path(__file__).resolve().parent.parent
    code = "import sys; from bench.bench_snapshot import _load_main; _load_main(sys.argv[1:])"
    done = subprocess.run([sys.executable, "-c", code, address[0], str(address[1]), path, str(seconds),
                           str(clients)], cwd=root, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"GET {path} failed: {result['errors'][0]}")
    return result


def _load_main(argv: list[str]) -> None:
    host, port, path, seconds, clients = argv[0], int(argv[1]), argv[2], float(argv[3]), int(argv[4])
    stop = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            while True:  # at least one request per client
                started = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                latencies[i].append(time.perf_counter() - started)
                if response.status != 200:
                    errors.append(str(response.status))
                    return
                if time.perf_counter() >= stop:
                    break
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    every = sorted(x for per in latencies for x in per)
    p99 = every[min(len(every) - 1, int(0.99 * len(every)))] if every else 0.0
    print(json.dumps({"rate": len(every) / elapsed, "p99_ms": p99 * 1000, "count": len(every),
                      "max_ms": (every[-1] if every else 0.0) * 1000, "errors": errors}))


@contextmanager
def _serving(store: Store, policy: Policy, cache_seconds: float) -> Iterator[tuple[tuple[str, int], Any]]:
    from recommender_core import __version__

    app = DiagnosticsApp(store=store, policy=policy, v2_enabled=True, version=__version__,
                         cache_seconds=cache_seconds)
    server = make_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (str(server.server_address[0]), int(server.server_address[1])), app
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        getattr(app, "wait_for_refreshes", lambda timeout: True)(timeout=120)


def _requests_per_second(store: Store, policy: Policy, *, cache_seconds: float, seconds: float,
                         clients: int) -> dict[str, Any]:
    with _serving(store, policy, cache_seconds) as (address, _app):
        _load(address, "/snapshot?top=5", 0.0, clients)  # fills the cache when there is one
        return _load(address, "/snapshot?top=5", seconds, clients)


def _during_refresh(store: Store, policy: Policy, *, seconds: float, clients: int) -> dict[str, Any]:
    """Load while the cache keeps expiring: a cache shorter than one rebuild, so a background rebuild
    runs for most of the window (and the requests' latencies show whether any waited for one)."""
    with _serving(store, policy, REFRESH_CACHE_SECONDS) as (address, app):
        _load(address, "/snapshot?top=5", 0.0, clients)  # the first build (the only one a request waits for)
        time.sleep(REFRESH_CACHE_SECONDS)
        result = _load(address, "/snapshot?top=5", seconds, clients)
        result["refreshing"] = bool(getattr(app, "_refreshing", ()))
        return result


def run() -> list[Result]:
    return [result for admin in bench_backends() for result in _run_on(admin)]


def _run_on(admin: str | None) -> list[Result]:
    rng = random.Random(42)
    policy = _policy()
    with bench_store(admin) as store:
        started = time.perf_counter()
        _fill(store, rng)
        fill_seconds = time.perf_counter() - started
        started = time.perf_counter()
        _snapshot_json(store, policy)  # catches the telemetry rollups up (excluded), warms caches on both sides
        catch_up_seconds = time.perf_counter() - started
        slowest, statement, all_queries, count = _slowest_query(store, policy)
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            _snapshot_json(store, policy)
            times.append(time.perf_counter() - started)
        snapshot = statistics.median(times)
        cached_runs = [_requests_per_second(store, policy, cache_seconds=5.0, seconds=LOAD_SECONDS,
                                            clients=LOAD_THREADS) for _ in range(ROUNDS)]
        refresh_runs = [_during_refresh(store, policy, seconds=LOAD_SECONDS, clients=LOAD_THREADS)
                        for _ in range(ROUNDS)]
        # One client: every request rebuilds the document, so concurrent clients would only queue.
        uncached = _requests_per_second(store, policy, cache_seconds=0.0, seconds=1.0, clients=1)["rate"]
        backend = store.dialect
    rates = [r["rate"] for r in cached_runs]
    p99s = [r["p99_ms"] for r in refresh_runs]
    setup = (f"{backend}, {MODELS} models, {TASKS} tasks, {EVENTS} events in the 24 h window "
             f"(generated in {fill_seconds:.0f} s; first snapshot with the rollup catch-up {catch_up_seconds:.1f} s, "
             f"excluded); spread of {ROUNDS}: {min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms; all {count} "
             f"queries replayed alone: {all_queries * 1000:.0f} ms ({all_queries / slowest:.2f}x the slowest, "
             f"the floor without any Python work)")
    return [
        Result(name=f"{backend}: snapshot --json (median, in process)", figure=snapshot * 1000, baseline=slowest * 1000,
               unit="ms", baseline_name=f"its slowest query alone [{statement}...]", target=1.5,
               figure_runs=tuple(t * 1000 for t in times), notes=setup),
        Result(name=f"{backend}: GET /snapshot?top=5 cached (5 s cache)", figure=statistics.median(rates),
               baseline=2000.0,
               unit="req/s", baseline_name="the 2,000 req/s target", target=1.0, higher_is_better=True,
               figure_runs=tuple(rates),
               notes=f"{LOAD_THREADS} keep-alive loopback clients (another process) for {LOAD_SECONDS:g} s, "
                     f"x {ROUNDS}; uncached: {uncached:.3g} req/s ({uncached / statistics.median(rates):.3%} "
                     f"of cached)"),
        Result(name=f"{backend}: GET /snapshot?top=5 p99 latency while the cache refreshes",
               figure=statistics.median(p99s),
               baseline=50.0, unit="ms", baseline_name="the 50 ms target", target=1.0, figure_runs=tuple(p99s),
               notes=f"cache {REFRESH_CACHE_SECONDS:g} s (shorter than a rebuild), {ROUNDS} runs of "
                     f"{LOAD_SECONDS:g} s; {statistics.median(r['rate'] for r in refresh_runs):.0f} req/s; "
                     f"slowest request {max(r['max_ms'] for r in refresh_runs):.0f} ms"),
    ]
