"""Telemetry: hook overhead, writer throughput, bounded memory.

1. Hook overhead, over whole blocks of ``HOOK_CALLS`` (1,000) ``litellm.completion(mock_response=...)``
   calls, in mirrored rounds A B B A (``HOOK_ROUNDS`` rounds; the ratio is the median of the rounds'
   ratios, each side's median and spread are printed beside it):
   A = ``TelemetryCallback`` registered, at its defaults, its writer running into a real store; a
   block ends when the last of its events has reached the callback (LiteLLM runs sync success
   hooks on its own thread pool after the call returns, so the hooks' work is inside the block);
   B = no callback, verified off: nothing is registered and the callback sees no event during the
   block. Target: A at most 1.05x B, on SQLite and (when a server is configured) Postgres.
   With ``RECSYS_BENCH_TELEMETRY_PARTS=hook-thread``, the thread writer (``writer="thread"``, the
   database work in the caller's interpreter) runs as a third side C in the middle of each round
   (A B C C B A): reported, to show why the writer moved to a process.
2. Writer throughput at the callback's defaults (queue from the settings, batch 500, flush interval
   1 s, the process writer), fed through ``record_many`` (the hooks' validation and queue) as fast as
   the queue takes events without dropping (the records are built before the clock starts, up to
   ``POOL_EVENTS_PER_SECOND``), while ``ingest lmsys --force`` runs in a loop on the same
   store. Target: at least 2,000 events/s on SQLite and 20,000 on Postgres, with zero drops.
3. Memory: traced memory with the store away after ``queue_size`` events, and after ten times as many.
   Target: at most 1.1x.

Postgres parts need ``RECSYS_BENCH_DATABASE_URL`` or ``RECSYS_TEST_DATABASE_URL`` (a server where a
scratch database may be created); otherwise they are reported as not run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._common import Result, median_of, paired_median, scratch_postgres

HOOK_CALLS = int(os.environ.get("RECSYS_BENCH_HOOK_CALLS", "1000"))
HOOK_ROUNDS = int(os.environ.get("RECSYS_BENCH_HOOK_ROUNDS", "4"))
THROUGHPUT_SECONDS = float(os.environ.get("RECSYS_BENCH_WRITER_SECONDS", "8"))
THROUGHPUT_REPEATS = 3
# Events built before each throughput run's clock starts, per second of the run.
POOL_EVENTS_PER_SECOND = 30_000
MEMORY_QUEUE = 10_000
REQUIRED = {"SQLite": 2_000, "Postgres": 20_000}

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _records(n: int, prefix: str) -> list[Any]:
    from recommender_core.clock import SYSTEM_CLOCK
    from recommender_core.telemetry.events import TelemetryRecord

    t0 = SYSTEM_CLOCK.now()
    return [TelemetryRecord(
        event_id=f"{prefix}-{i}", trace_id=f"t-{i}", model="gpt-4o-mini", model_group="gpt-4o-mini",
        provider="openai", task="coding", status="success", started_at=t0 - timedelta(milliseconds=i % 60_000),
        ended_at=t0, latency_ms=123.4, prompt_tokens=10, completion_tokens=20, cost=1.35e-05,
        tags=("task:coding",)) for i in range(n)]


@contextmanager
def _stores() -> Iterator[Iterator[tuple[str, str]]]:
    """Each backend's (name, migrated database URL): SQLite in a temporary folder, Postgres when configured."""
    from recommender_core.store import Store

    admin = os.environ.get("RECSYS_BENCH_DATABASE_URL") or os.environ.get("RECSYS_TEST_DATABASE_URL")

    def each(tmp: Path) -> Iterator[tuple[str, str]]:
        for name in ("SQLite", "Postgres"):
            if name == "Postgres" and not admin:
                print("telemetry on Postgres: not run (set RECSYS_BENCH_DATABASE_URL=postgresql://USER@HOST/DB)")
                continue
            sqlite = f"sqlite:///{tmp / 'bench.db'}"
            place = scratch_postgres(admin) if admin and name == "Postgres" else _nothing(sqlite)
            with place as url:
                store = Store(url)
                store.upgrade()
                store.dispose()
                yield name, url

    with tempfile.TemporaryDirectory() as tmp:
        yield each(Path(tmp))


@contextmanager
def _nothing(value: str) -> Iterator[str]:
    yield value


def _seen(callback: Any) -> int:
    return int(callback.hooks)


def _hook_overhead(backend: str, url: str, *, with_thread: bool) -> list[Result]:
    import litellm

    from recommender_core.telemetry.callback import TelemetryCallback, _unregister

    class Counted(TelemetryCallback):
        """Counts its hook calls: how a block knows its last hook ran, and the baseline that it saw none."""

        hooks = 0

        def _record(self, kwargs: Any) -> None:
            self.hooks += 1
            super()._record(kwargs)

    messages = [{"role": "user", "content": "bench"}]
    process = Counted(url)  # the defaults: the process writer, batch 500, flush every 1 s
    thread = Counted(url, writer="thread") if with_thread else None
    callbacks = [c for c in (process, thread) if c is not None]
    saved = list(litellm.callbacks)

    def block(callback: Any | None) -> float:
        litellm.callbacks = [callback] if callback is not None else []
        watched = [c for c in callbacks if c is not callback]
        before = {id(c): _seen(c) for c in watched}
        seen = _seen(callback) if callback is not None else 0
        start = time.perf_counter()
        for _ in range(HOOK_CALLS):
            litellm.completion(model="gpt-4o-mini", messages=messages, mock_response="ok")
        if callback is not None:  # the block ends when its last hook has run
            deadline = time.monotonic() + 60
            while _seen(callback) < seen + HOOK_CALLS and time.monotonic() < deadline:
                time.sleep(0.0005)
        elapsed = time.perf_counter() - start
        if callback is not None:
            # LiteLLM copies litellm.callbacks into its own success/failure lists: setting the list
            # back does not switch a callback off, unregistering does (outside the timed block).
            _unregister(callback)
        if any(_seen(c) != before[id(c)] for c in watched):
            raise RuntimeError("a callback that was off recorded events during another side's block")
        return elapsed

    # Each round runs A B [C C] B A: mirrored, so a drift of the machine's speed within the round
    # (this VM's CPU runs the same loop anywhere from 1.0 to 2.3 s from one second to the next)
    # weighs on every side alike; a round's ratio is (A1 + A2) / (B1 + B2), and the figure is the
    # median of the rounds' ratios.
    order = [process, None, *([thread, thread] if thread is not None else []), None, process]
    rounds = max(HOOK_ROUNDS, 3)
    try:
        for side in (*callbacks, None):  # warm every path (and start the writer process)
            block(side)
        process.flush(timeout=60)
        per_round = [[block(side) for side in order] for _ in range(rounds)]
        flushed = all(c.flush(timeout=60) for c in callbacks)
        written = process.stats().written
    finally:
        litellm.callbacks = saved
        for callback in callbacks:
            callback.close()
    a = [(r[0] + r[-1]) / 2 for r in per_round]
    b = [(r[1] + r[-2]) / 2 for r in per_round]
    to_ms = 1000 / HOOK_CALLS
    note = (f"{rounds} mirrored rounds (A B {'C C ' if thread else ''}B A) of {HOOK_CALLS}-call blocks, "
            f"the ratio the median of the rounds' ratios; {written} events written, flushed={flushed}; "
            "baseline verified off (no event seen during its blocks)")
    results = [
        Result(name=f"completion(mock_response) with TelemetryCallback, {backend} (ms per call over a block)",
               figure=median_of(a) * to_ms, baseline=median_of(b) * to_ms, unit="ms",
               baseline_name="no callback", target=1.05, figure_runs=tuple(x * to_ms for x in a),
               baseline_runs=tuple(x * to_ms for x in b), notes=note,
               paired_ratio=paired_median(a, b)),
    ]
    if thread is not None:
        in_thread = [(r[2] + r[3]) / 2 for r in per_round]
        results.append(Result(
            name=f"the same with writer='thread' (database work in the caller), {backend}",
            figure=median_of(in_thread) * to_ms, baseline=median_of(b) * to_ms, unit="ms",
            baseline_name="no callback", target=float("inf"), figure_runs=tuple(x * to_ms for x in in_thread),
            baseline_runs=tuple(x * to_ms for x in b),
            notes="reported: the option the process writer replaced",
            paired_ratio=paired_median(in_thread, b)))
    return results


def _ingest_loop(url: str) -> None:
    """``ingest lmsys --force`` from the sample mirror, again and again (a child process: ingests are
    CronJob processes of their own, not threads of the caller)."""
    from recommender_core.config import Settings
    from recommender_core.policy import load_policy
    from recommender_core.sources.base import IngestOptions
    from recommender_core.sources.lmsys import LmsysSource
    from recommender_core.store import Store

    mirror = Path(__file__).resolve().parent.parent / "sample_mirror" / "lmsys"
    store = Store(url)
    policy, settings = load_policy(), Settings.load()
    ok = failed = 0
    try:
        while True:
            source = LmsysSource(settings=settings, policy=policy)
            try:
                result = source.run(store, IngestOptions(mirror=str(mirror), force=True, keep_runs=3))
                ok += result.status == "success"
            except Exception:
                failed += 1
            finally:
                source.close()
            print(f"{ok} {failed}", flush=True)
    finally:
        store.dispose()


class _Ingests:
    """The ingest loop in a child process, and the counts it printed after each ingest."""

    def __init__(self, url: str) -> None:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from bench.bench_telemetry import _ingest_loop; "
             "_ingest_loop(sys.argv[1])", url], cwd=root, stdout=subprocess.PIPE, text=True)
        self.last = (0, 0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ok, failed = line.split()
            self.last = (int(ok), int(failed))

    def stop(self) -> dict[str, int]:
        """Kill the loop once at least one ingest has finished (a short run still sees one)."""
        deadline = time.monotonic() + 120
        while sum(self.last) == 0 and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return {"ok": self.last[0], "failed": self.last[1]}


def _start_ingests(url: str) -> _Ingests:
    return _Ingests(url)


def _stop_ingests(ingests: _Ingests) -> dict[str, int]:
    return ingests.stop()


def _throughput(backend: str, url: str) -> Result:
    """Events/s through the callback at its defaults, fed without drops, while ingests run."""
    from recommender_core.telemetry.callback import TelemetryCallback

    rates: list[float] = []
    dropped = exhausted = 0
    ingests = _start_ingests(url)
    try:
        for repeat in range(THROUGHPUT_REPEATS):
            # The bench's own record factory runs before the clock starts: it is not the writer.
            chunk = 500
            pool = [_records(chunk, f"r{repeat}-{i}") for i in range(POOL_EVENTS_PER_SECOND * int(THROUGHPUT_SECONDS)
                                                                     // chunk)]
            callback = TelemetryCallback(url)
            try:
                callback.record_many(_records(10, f"warm{repeat}"))
                callback.flush(timeout=60)  # the writer process is up
                room = callback._writer.queue_size
                start = time.perf_counter()
                while time.perf_counter() - start < THROUGHPUT_SECONDS and pool:
                    if callback.stats().queued > room - chunk:  # feed only what the queue takes
                        time.sleep(0.001)
                        continue
                    callback.record_many(pool.pop())
                exhausted += not pool
                ok = callback.flush(timeout=120)
                elapsed = time.perf_counter() - start
                stats = callback.stats()
                dropped += stats.dropped
                rates.append(stats.written / elapsed if ok else 0.0)
            finally:
                callback.close()
    finally:
        counts = _stop_ingests(ingests)
    return Result(name=f"writer throughput into {backend} at the callback's defaults, while ingests run",
                  figure=median_of(rates), baseline=REQUIRED[backend], unit="events/s",
                  baseline_name="required rate", target=1.0, higher_is_better=True, figure_runs=tuple(rates),
                  notes=f"{THROUGHPUT_REPEATS} runs of {THROUGHPUT_SECONDS:.0f} s; dropped {dropped}; "
                        f"ingests {counts['ok']} ok, {counts['failed']} failed"
                        + (f"; {exhausted} run(s) used all {POOL_EVENTS_PER_SECOND:,} events/s built beforehand "
                           "(the rate is at least the figure)" if exhausted else ""))


def _memory() -> Result:
    from recommender_core.telemetry.writer import BatchWriter

    gate = threading.Event()

    def away(batch: Sequence[object]) -> int:  # the store is unreachable for the whole run
        gate.wait(60)
        raise ConnectionError("store away")

    figures: list[float] = []
    baselines: list[float] = []
    dropped = 0
    for _ in range(3):
        writer = BatchWriter(sink=away, queue_size=MEMORY_QUEUE, batch_size=500, flush_interval=0.01,
                             backoff_max=0.05)
        gate.clear()
        tracemalloc.start()
        try:
            writer.enqueue_many(_records(MEMORY_QUEUE, "m0"))
            baselines.append(tracemalloc.get_traced_memory()[0] / 1e6)
            for chunk in range(1, 10):
                writer.enqueue_many(_records(MEMORY_QUEUE, f"m{chunk}"))
            figures.append(tracemalloc.get_traced_memory()[0] / 1e6)
            dropped = writer.dropped
        finally:
            tracemalloc.stop()
            gate.set()
            writer.close(timeout=0.5)
    return Result(name="memory with the store away after 10x queue_size events", figure=median_of(figures),
                  baseline=median_of(baselines), unit="MB", baseline_name=f"after queue_size={MEMORY_QUEUE}",
                  target=1.1, figure_runs=tuple(figures), baseline_runs=tuple(baselines),
                  notes=f"{dropped} oldest events dropped and counted per run")


def run() -> list[Result]:
    wanted = set(filter(None, os.environ.get("RECSYS_BENCH_TELEMETRY_PARTS", "hook,throughput,memory").split(",")))
    results: list[Result] = []
    if "memory" in wanted:
        results.append(_memory())
    with _stores() as stores:
        for backend, url in stores:
            if "hook" in wanted or "hook-thread" in wanted:
                results += _hook_overhead(backend, url, with_thread="hook-thread" in wanted)
            if "throughput" in wanted:
                results.append(_throughput(backend, url))
    return results
