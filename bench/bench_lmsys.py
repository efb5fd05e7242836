"""Arena ingest into Postgres: parse + validate + write a 50,000-row parquet, against a bare COPY.

Figure: rows/s of ``LmsysSource.run`` (lock, run bookkeeping, pyarrow parse, validation, COPY, commit)
on a 50,000-row parquet of the dataset's real shape. Baseline: psycopg ``cursor.copy()`` of the same
rows (already built tuples) into the same ``benchmark_evidence`` table, in the same process run,
interleaved (A B A B ...), compared by the median of each round's own ratio. Target: at least half the baseline's rate.

Needs Postgres: it reads ``RECSYS_BENCH_DATABASE_URL``, else ``RECSYS_TEST_DATABASE_URL`` (an admin URL
such as ``postgresql://postgres@127.0.0.1:5432/test``), creates a scratch database there and drops it.
Without either variable it prints why and reports nothing.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ._common import Result, paired_median, scratch_postgres

ROWS = 50_000
ROUNDS = 5


def _board(path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.lmsys_data import board_rows, parquet_bytes

    models = [(f"model-{i:04d}", f"Org {i % 37}", "Proprietary", 1000.0 + (i * 37) % 500) for i in range(1000)]
    categories = {f"category_{c:02d}": ((c % 5 - 2) / 2, 0.2 + (c % 7) / 10) for c in range(ROWS // len(models))}
    path.write_bytes(parquet_bytes(board_rows(models, categories)))


def run() -> list[Result]:
    admin = os.environ.get("RECSYS_BENCH_DATABASE_URL") or os.environ.get("RECSYS_TEST_DATABASE_URL")
    if not admin:
        print("bench_lmsys skipped: set RECSYS_BENCH_DATABASE_URL or RECSYS_TEST_DATABASE_URL to a Postgres admin "
              "URL (e.g. postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return []
    import psycopg

    from recommender_core.config import Settings
    from recommender_core.policy import load_policy
    from recommender_core.sources.base import Batch, IngestOptions
    from recommender_core.sources.lmsys import LmsysSource
    from recommender_core.sources.lmsys.parse import parse_parquet
    from recommender_core.store import Store
    from recommender_core.store.bulk import EVIDENCE_COLUMNS, _rows

    with tempfile.TemporaryDirectory() as tmp, scratch_postgres(admin) as url:
        board = Path(tmp) / "latest-00000-of-00001.parquet"
        _board(board)
        store = Store(url)
        store.upgrade()
        settings, policy = Settings.load(database_url=url, keep_runs=100), load_policy()
        batch = Batch()
        parse_parquet(board.read_bytes(), config="text", origin=str(board), batch=batch)
        assert len(batch.records) == ROWS and batch.rows_rejected == 0
        tuples = list(_rows(0, "lmsys", "bench", batch.records))
        columns = ", ".join(f'"{c}"' for c in EVIDENCE_COLUMNS)
        options = IngestOptions(mirror=str(board), force=True, keep_runs=100)

        def ours() -> float:
            source = LmsysSource(settings=settings, policy=policy)
            start = time.perf_counter()
            result = source.run(store, options)
            elapsed = time.perf_counter() - start
            source.close()
            assert result.rows_accepted == ROWS
            return elapsed

        def baseline() -> float:
            with psycopg.connect(url) as conn:
                run_id = conn.execute(
                    "INSERT INTO ingest_run (source, status, started_at, rows_accepted, rows_rejected, details) "
                    "VALUES ('bench-copy', 'running', %s, 0, 0, '{}') RETURNING id", (store.clock.now(),)).fetchone()
                conn.commit()
                assert run_id is not None
                rows = [(run_id[0], *row[1:]) for row in tuples]
                start = time.perf_counter()
                with conn.cursor() as cursor, cursor.copy(f"COPY benchmark_evidence ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
                return time.perf_counter() - start

        ours()  # warm-up: caches, plans, imports
        baseline()
        ours_times, base_times = [], []
        for _ in range(ROUNDS):
            ours_times.append(ours())
            base_times.append(baseline())
        # Memory of one ingest on its own (untimed: tracing slows Python down).
        import tracemalloc

        tracemalloc.start()
        ours()
        traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        store.dispose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours_rate, base_rate = ROWS / statistics.median(ours_times), ROWS / statistics.median(base_times)
    return [Result(name=f"ingest lmsys {ROWS} rows into Postgres (median of {ROUNDS})", figure=ours_rate,
                   baseline=base_rate, unit="rows/s", baseline_name="bare psycopg cursor.copy()", target=0.5,
                   higher_is_better=True, figure_runs=tuple(ROWS / t for t in ours_times),
                   baseline_runs=tuple(ROWS / t for t in base_times),
                   # A rate's ratio is the times' inverse ratio: baseline time over ours, round by round.
                   paired_ratio=paired_median(base_times, ours_times),
                   notes=f"median of the {ROUNDS} rounds' own ratios; one ingest's peak traced Python memory "
                         f"{traced_peak_mb:.0f} MiB; "
                         f"the bench process's peak RSS {peak_mb:.0f} MiB")]
