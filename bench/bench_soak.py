"""Soak: the telemetry writer and repeated ingests together on one store, for a bounded time.

A producer thread feeds a ``TelemetryCallback`` at its defaults (the process writer, a queue of
``RECSYS_TELEMETRY_QUEUE_SIZE`` = 10,000 events, batch 500 and up to 10 batches per write when a
backlog builds, flush every 1 s, backoff 0.2 s doubling to 30 s) a steady ``RATE_PER_SECOND``
(2,000) events/s, what the LiteLLM callback does under traffic, while another process runs
``ingest lmsys --force`` from the sample mirror again and again (keeping 3 runs, so pruning runs
too): ingests are CronJob processes of their own. Once, the writer's store goes away for
OUTAGE_SECONDS; events buffer in the bounded queue. Every tenth of the run the process RSS and the
writer's counters are sampled and printed.

Duration: ``RECSYS_SOAK_SECONDS`` (default 30). Store: ``RECSYS_SOAK_DATABASE_URL`` (a migrated or
empty database to use) or a fresh SQLite file.

Results (each against a figure measured in the same run):
1. RSS at the end vs RSS at half time: at most 1.10x (memory stays bounded once warm).
2. Events accounted for (stored + counted drops) vs events produced: exactly 1.0 (no silent loss).
3. Events dropped after the outage ended: zero (the writer catches up while traffic goes on).
4. Successful ingests vs ingests attempted: 1.0.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ._common import Result

RATE_PER_SECOND = 2_000
# The store "goes away" for the writer from 40 % to 40 % + OUTAGE_SECONDS of the run.
OUTAGE_SECONDS = 2.0


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _record(i: int, now: datetime) -> Any:
    from recommender_core.telemetry.events import TelemetryRecord

    return TelemetryRecord(
        event_id=f"soak-{i}", trace_id=f"t-{i}", model="gpt-4o-mini", model_group="gpt-4o-mini",
        provider="openai", task="coding", status="success" if i % 50 else "failure",
        started_at=now - timedelta(milliseconds=120), ended_at=now, latency_ms=120.0, prompt_tokens=10,
        completion_tokens=20, cost=1.35e-05, tags=("task:coding",))


def soak(url: str, seconds: float, *, outage_seconds: float = OUTAGE_SECONDS,
         queue_size: int | None = None) -> dict[str, Any]:
    import sqlalchemy as sa

    from recommender_core.store import Store
    from recommender_core.store.tables import TelemetryEvent
    from recommender_core.telemetry.callback import TelemetryCallback

    from .bench_telemetry import _start_ingests, _stop_ingests

    store = Store(url)
    store.upgrade()
    outage = threading.Event()
    # The callback itself, at its defaults (its constructor's and the settings'): the same queue,
    # batch writer and writer process(es) a LiteLLM caller gets, with the outage switch in front of
    # its sink.
    callback = TelemetryCallback(url, **({"queue_size": queue_size} if queue_size else {}))
    writer = callback._writer
    process = writer._sink

    def sink(batch: Any) -> int:
        if outage.is_set():
            raise ConnectionError("soak: the telemetry database is away")
        return process(batch)

    writer._sink = sink
    stop = threading.Event()
    produced = [0]
    dropped_when_back = [0]

    def produce() -> None:
        tick = 0.01
        per_tick = max(1, int(RATE_PER_SECOND * tick))
        next_tick = time.monotonic()
        while not stop.is_set():
            now = store.clock.now()
            for _ in range(per_tick):
                writer.enqueue(_record(produced[0], now))
                produced[0] += 1
            next_tick += tick
            time.sleep(max(0.0, next_tick - time.monotonic()))

    samples: list[tuple[float, int, int, int]] = []
    producer = threading.Thread(target=produce, daemon=True)
    ingests = _start_ingests(url)
    started = time.monotonic()
    producer.start()
    try:
        for step in range(1, 11):
            time.sleep(max(0.0, started + seconds * step / 10 - time.monotonic()))
            if step == 4:
                outage.set()
                time.sleep(outage_seconds)
                outage.clear()
                dropped_when_back[0] = writer.stats().dropped
            stats = writer.stats()
            samples.append((time.monotonic() - started, _rss_kib(), stats.written, stats.dropped))
            print(f"  soak t={samples[-1][0]:5.1f}s rss={samples[-1][1] / 1024:7.1f} MiB "
                  f"produced={produced[0]} written={stats.written} queued={stats.queued} "
                  f"dropped={stats.dropped}", flush=True)
    finally:
        stop.set()
        producer.join(60)
        counts = _stop_ingests(ingests)
        flushed = writer.flush(timeout=120)
        callback.close(timeout=10)
    final = writer.stats()
    with store.session() as session:
        stored = session.execute(sa.select(sa.func.count()).select_from(TelemetryEvent)).scalar_one()
    store.dispose()
    return {"produced": produced[0], "stored": stored, "written": final.written, "dropped": final.dropped,
            "dropped_after_outage": final.dropped - dropped_when_back[0], "flushed": flushed,
            "samples": samples, "ingests": {"attempted": counts["ok"] + counts["failed"], "succeeded": counts["ok"]},
            "errors": []}


def run() -> list[Result]:
    seconds = float(os.environ.get("RECSYS_SOAK_SECONDS", "30"))
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("RECSYS_SOAK_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'soak.db'}"
        out = soak(url, seconds)
    samples = out["samples"]
    half = samples[len(samples) // 2 - 1][1]
    end = samples[-1][1]
    series = " ".join(f"{t:.0f}s:{rss / 1024:.0f}MiB" for t, rss, _, _ in samples)
    errors = f"; first error: {out['errors'][0]}" if out["errors"] else ""
    return [
        Result("soak RSS at the end", end / 1024, half / 1024, "MiB", "RSS at half time", 1.10,
               notes=f"{seconds:.0f} s; RSS over time {series}"),
        Result("soak events stored + counted drops", out["stored"] + out["dropped"], out["produced"], "events",
               "events produced", 1.0, higher_is_better=True,
               notes=f"stored {out['stored']}, written {out['written']}, dropped {out['dropped']}, "
                     f"flushed {out['flushed']}"),
        Result("soak events dropped after the outage ended", out["dropped_after_outage"], out["produced"], "events",
               "events produced", 0.0, notes=f"{out['dropped']} dropped in all, during a {OUTAGE_SECONDS:g} s outage "
                                            f"at {RATE_PER_SECOND} events/s"),
        Result("soak successful ingests", out["ingests"]["succeeded"], max(1, out["ingests"]["attempted"]),
               "runs", "ingests attempted", 1.0, higher_is_better=True, notes=f"{out['ingests']}{errors}"),
    ]
