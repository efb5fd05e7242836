"""Telemetry: hook overhead, writer throughput, bounded memory.

1. Hook overhead: interleaved calls (A B A B ...) of the same ``litellm.completion(mock_response=...)``
   calls with ``TelemetryCallback`` registered (its writer running into a real store) and with no
   callback, compared by medians. Target: at most 1.05x. LiteLLM runs sync success hooks on its own
   thread pool after the call returns, so their work overlaps the following calls (as in real use);
   a hook still pending when the callback is unregistered for the next B call does not fire, which
   is why fewer events than A calls may be written.
2. Writer throughput into Postgres: events/s from the first enqueue to the end of ``flush``, against
   the required 10,000 events/s, and (informational) against one raw ``COPY`` of the same rows into
   the same table. Needs ``RECSYS_BENCH_DATABASE_URL`` or ``RECSYS_TEST_DATABASE_URL`` (a server where
   a scratch database may be created); otherwise reported as not run.
3. Memory: traced memory with the store away after ``queue_size`` events, and after ten times as many.
   Target: at most 1.1x.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from ._common import Result, scratch_postgres

ROUNDS = 600
THROUGHPUT_EVENTS = 50_000
MEMORY_QUEUE = 10_000

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _records(n: int, prefix: str) -> list:  # type: ignore[type-arg]
    from recommender_core.clock import SYSTEM_CLOCK
    from recommender_core.telemetry.events import TelemetryRecord

    t0 = SYSTEM_CLOCK.now()
    return [TelemetryRecord(
        event_id=f"{prefix}-{i}", trace_id=f"t-{i}", model="gpt-4o-mini", model_group="gpt-4o-mini",
        provider="openai", task="coding", status="success", started_at=t0 - timedelta(milliseconds=i),
        ended_at=t0, latency_ms=123.4, prompt_tokens=10, completion_tokens=20, cost=1.35e-05,
        tags=("task:coding",)) for i in range(n)]


def _hook_overhead() -> Result:
    import litellm

    from recommender_core.store import Store
    from recommender_core.telemetry.callback import TelemetryCallback, _unregister

    messages = [{"role": "user", "content": "bench"}]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.upgrade()
        callback = TelemetryCallback(store=store, flush_interval=0.2)
        saved = list(litellm.callbacks)

        def call(with_callback: bool) -> float:
            # Registering and unregistering happen outside the timed region: only the call is timed.
            litellm.callbacks = [callback] if with_callback else []
            start = time.perf_counter()
            litellm.completion(model="gpt-4o-mini", messages=messages, mock_response="ok")
            elapsed = time.perf_counter() - start
            if with_callback:
                _unregister(callback)
            return elapsed

        try:
            for _ in range(20):  # warm both paths
                call(True)
                call(False)
            with_cb: list[float] = []
            without: list[float] = []
            for _ in range(ROUNDS):
                with_cb.append(call(True))
                without.append(call(False))
            callback.flush(timeout=30)
            written = callback.stats().written
        finally:
            litellm.callbacks = saved
            callback.close()
            store.dispose()
    return Result(name="litellm.completion(mock_response) with TelemetryCallback (median per call)",
                  figure=statistics.median(with_cb) * 1000, baseline=statistics.median(without) * 1000,
                  unit="ms", baseline_name="no callback", target=1.05,
                  notes=f"{ROUNDS} interleaved call pairs (A B A B ...); writer running; {written} events written")


def _throughput(admin_url: str) -> list[Result]:
    import json

    import psycopg

    from recommender_core.store import Store
    from recommender_core.telemetry.writer import BatchWriter, write_records

    with scratch_postgres(admin_url) as url:
        store = Store(url)
        store.upgrade()
        try:
            # Baseline: one raw COPY of the same rows into the same table.
            rows = _records(THROUGHPUT_EVENTS, "copy")
            start = time.perf_counter()
            with psycopg.connect(url) as conn, conn.cursor() as cur:
                with cur.copy("COPY telemetry_event (event_id, trace_id, origin, model_group, model, provider, "
                              "task, status, started_at, ended_at, latency_ms, prompt_tokens, completion_tokens, "
                              "cost, cache_hit, tags) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row((r.event_id, r.trace_id, r.origin, r.model_group, r.model, r.provider,
                                        r.task, r.status, r.started_at, r.ended_at, r.latency_ms, r.prompt_tokens,
                                        r.completion_tokens, r.cost, r.cache_hit, json.dumps(list(r.tags))))
            copy_rate = THROUGHPUT_EVENTS / (time.perf_counter() - start)

            records = _records(THROUGHPUT_EVENTS, "writer")
            writer = BatchWriter(sink=lambda b: write_records(store, b), queue_size=THROUGHPUT_EVENTS,
                                 batch_size=5_000, flush_interval=0.05)
            start = time.perf_counter()
            writer.enqueue_many(records)
            ok = writer.flush(timeout=120)
            rate = THROUGHPUT_EVENTS / (time.perf_counter() - start)
            stats = writer.stats()
            writer.close()
        finally:
            store.dispose()
    note = f"{THROUGHPUT_EVENTS} events, flushed={ok}, written={stats.written}, dropped={stats.dropped}"
    return [
        Result(name="writer throughput into Postgres", figure=rate, baseline=10_000, unit="events/s",
               baseline_name="required rate", target=1.0, higher_is_better=True, notes=note),
        Result(name="writer throughput vs raw COPY", figure=rate, baseline=copy_rate, unit="events/s",
               baseline_name="one COPY of the same rows", target=0.25, higher_is_better=True,
               notes="COPY into a staging table + INSERT ... ON CONFLICT DO NOTHING, in batches of 5000"),
    ]


def _memory() -> Result:
    from recommender_core.telemetry.writer import BatchWriter

    gate = threading.Event()

    def away(batch: Sequence[object]) -> int:  # the store is unreachable for the whole run
        gate.wait(60)
        raise ConnectionError("store away")

    writer = BatchWriter(sink=away, queue_size=MEMORY_QUEUE, batch_size=500, flush_interval=0.01,
                         backoff_max=0.05)
    tracemalloc.start()
    try:
        for chunk in range(1):
            writer.enqueue_many(_records(MEMORY_QUEUE, f"m{chunk}"))
        baseline = tracemalloc.get_traced_memory()[0]
        for chunk in range(1, 10):
            writer.enqueue_many(_records(MEMORY_QUEUE, f"m{chunk}"))
        after = tracemalloc.get_traced_memory()[0]
        dropped = writer.dropped
    finally:
        tracemalloc.stop()
        gate.set()
        writer.close(timeout=0.5)
    return Result(name="memory with the store away after 10x queue_size events", figure=after / 1e6,
                  baseline=baseline / 1e6, unit="MB", baseline_name=f"after queue_size={MEMORY_QUEUE}",
                  target=1.1, notes=f"{dropped} oldest events dropped and counted")


def run() -> list[Result]:
    results = [_hook_overhead(), _memory()]
    admin = os.environ.get("RECSYS_BENCH_DATABASE_URL") or os.environ.get("RECSYS_TEST_DATABASE_URL")
    if admin:
        results += _throughput(admin)
    else:
        print("writer throughput: not run (set RECSYS_BENCH_DATABASE_URL=postgresql://USER@HOST/DB)")
    return results
