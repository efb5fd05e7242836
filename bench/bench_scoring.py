"""``recsys score`` over 500 models, 30 tasks and N telemetry events vs the telemetry rollup query alone.

Target (issue 6): a whole scoring run (evidence read, rollup, normalisation, 15,000 utility rows
written and made current) within 2x the rollup query measured in the same run, on SQLite.
N defaults to 200,000 events so the bench stays well under a minute on a shared 2-core machine;
set RECSYS_BENCH_EVENTS=1000000 for the issue's full size (generation then dominates the wall time).
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recommender_core.policy import parse_policy
from recommender_core.scoring.run import run_scoring
from recommender_core.store import Store
from recommender_core.telemetry.rollups import telemetry_by_model

from ._common import Result, interleaved_medians

MODELS = 500
TASKS = 30
EVENTS = int(os.environ.get("RECSYS_BENCH_EVENTS", "200000"))
ROUNDS = 3


def _policy_text() -> str:
    lines = ["version: 1", "candidates:"]
    lines += [f"  model-{i:03d}: {{provider: p, price: {{input_per_1m: {0.1 + i / 100:.2f}, output_per_1m: 1.0}}}}"
              for i in range(MODELS)]
    lines.append("tasks:")
    for t in range(TASKS):
        lines.append(f"  task-{t:02d}:\n    evidence: [lmsys:text/cat{t:02d}]\n    static_order: [model-000]")
    return "\n".join(lines)


def _fill(path: Path, now: datetime) -> None:
    rng = random.Random(5)
    now = now.astimezone(UTC).replace(tzinfo=None)  # SQLite stores UTC, naive
    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO ingest_run (source, status, started_at, finished_at, rows_accepted, rows_rejected,"
                     " details) VALUES ('lmsys', 'success', ?, ?, 0, 0, '{}')", (now, now))
        run_id = conn.execute("SELECT max(id) FROM ingest_run").fetchone()[0]
        conn.executemany(
            "INSERT INTO benchmark_evidence (run_id, source, model, category, metric, value, lower, upper, samples,"
            " extra) VALUES (?, 'lmsys', ?, ?, 'rating', ?, ?, ?, 1000, '{}')",
            [(run_id, f"model-{i:03d}", f"text/cat{t:02d}", r, r - 10, r + 10)
             for t in range(TASKS) for i in range(MODELS) for r in [rng.uniform(1000, 1500)]])
        batch = []
        for k in range(EVENTS):
            model = f"model-{rng.randrange(MODELS):03d}"
            ok = rng.random() > 0.02
            batch.append((uuid.uuid4().hex, model, model, "success" if ok else "failure",
                          now - timedelta(seconds=rng.randrange(6 * 24 * 3600)), rng.uniform(50, 4000) if ok else None,
                          1000, 200, rng.uniform(0.0001, 0.01)))
            if len(batch) == 50_000 or k == EVENTS - 1:
                conn.executemany(
                    "INSERT INTO telemetry_event (event_id, model_group, model, status, started_at, latency_ms,"
                    " prompt_tokens, completion_tokens, cost, origin, cache_hit, tags)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'callback', 0, '[]')", batch)
                batch.clear()
        conn.commit()
    finally:
        conn.close()


def run() -> list[Result]:
    policy = parse_policy(_policy_text(), path="bench.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = Store(f"sqlite:///{path}")
        try:
            store.upgrade()
            _fill(path, store.clock.now())
            since = store.clock.now() - timedelta(days=7)
            import time

            def rollup() -> float:
                start = time.perf_counter()
                telemetry_by_model(store, since=since)
                return time.perf_counter() - start

            def score() -> float:
                start = time.perf_counter()
                run_scoring(store, policy)
                return time.perf_counter() - start

            rollup()  # warm the page cache for both
            ours, baseline = interleaved_medians(score, rollup, rounds=ROUNDS)
        finally:
            store.dispose()
    return [Result(name=f"score ({MODELS} models x {TASKS} tasks, {EVENTS} events)", figure=ours,
                   baseline=baseline, unit="s", baseline_name="telemetry rollup query alone", target=2.0,
                   notes=f"median of {ROUNDS} interleaved rounds on SQLite; RECSYS_BENCH_EVENTS sets the size")]
