"""MTEB mirror ingest: rate vs a bare read + json.loads loop, flat memory, and an unchanged re-run.

The mirror replicates the real 9-model slice (``mteb/results-slice-9-models.tar.gz`` among the real
upstream samples that ``tests.conftest`` locates)
under new model names in a temporary folder, up to ``RECSYS_BENCH_MTEB_FILES`` result files (default 30,000
so ``make bench`` stays short; ``RECSYS_BENCH_MTEB_FILES=105000`` is the whole real repository's size),
and a tenth of that for the memory baseline. Ingest goes into a fresh SQLite database, then into a
fresh Postgres database (dropped afterwards) when ``RECSYS_BENCH_DATABASE_URL`` or
``RECSYS_TEST_DATABASE_URL`` names a server.

Each measured step runs in a child process of its own, which reports its own wall time and its own
peak RSS: ``VmHWM`` from ``/proc/self/status``, the high-water mark of the child's address space
alone (exec gives the child a fresh one). ``ru_maxrss`` is not used: across fork and exec it keeps
the parent's peak, so every child read the parent's figure and the ratio was always 1.000.
Each side runs ``REPEATS`` times (3): medians and spreads are printed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import SHARED_REAL_DATA

from ._common import Result, bench_backends, scratch_postgres

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent
SLICE = SHARED_REAL_DATA / "mteb" / "results-slice-9-models.tar.gz"
DEFAULT_FILES = 30_000
REPEATS = 3


def _build_mirror(target: Path, files: int, template: Path) -> int:
    """Copy the slice's model folders under new names until ``files`` result files exist (hard links)."""
    models = sorted(p for p in (template / "results").iterdir() if p.is_dir())
    out = target / "results"
    out.mkdir(parents=True)
    made = copy = 0
    while made < files:
        for model in models:
            if made >= files:
                break
            folder = out / f"bench{copy:04d}__{model.name}"
            for path in sorted(model.rglob("*")):
                if made >= files:
                    break
                if not path.is_file():
                    continue
                dest = folder / path.relative_to(model)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if path.name == "model_meta.json":
                    meta = json.loads(path.read_bytes())
                    if isinstance(meta, dict) and meta.get("name"):
                        meta["name"] = f"bench{copy:04d}/{meta['name']}"
                    dest.write_text(json.dumps(meta))
                else:
                    os.link(path, dest)
                made += 1
        copy += 1
    return made


def _child(argv: list[str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_mteb", *argv], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _child_main(argv: list[str]) -> None:
    mode, mirror = argv[0], Path(argv[1])
    start = time.perf_counter()
    status = "loop"
    files = 0
    if mode == "loop":
        for dirpath, _dirs, names in os.walk(mirror):
            for name in names:
                if name.endswith(".json"):
                    with open(os.path.join(dirpath, name), "rb") as handle:
                        json.loads(handle.read())
                    files += 1
    else:
        from recommender_core.config import Settings
        from recommender_core.policy import load_policy
        from recommender_core.sources.base import IngestOptions
        from recommender_core.sources.mteb import MtebSource
        from recommender_core.store import Store

        start = time.perf_counter()  # imports are interpreter start-up, the same for every run
        settings = Settings.load(database_url=argv[2])
        store = Store(argv[2])
        try:
            result = MtebSource(settings=settings, policy=load_policy(None)).run(
                store, IngestOptions(mirror=str(mirror)))
        finally:
            store.dispose()
        status = result.status
        files = result.rows_accepted
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "maxrss_mb": _own_peak_rss_mb(), "status": status, "count": files}))


def _own_peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``), in MB; not the ``ru_maxrss`` inherited across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: the peak RSS of a child needs Linux")


@contextmanager
def _database(tmp: Path, admin: str | None) -> Iterator[str]:
    """A fresh database: SQLite in ``tmp``, or a scratch database on the Postgres server of ``admin``."""
    if admin is None:
        path = tmp / "bench.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            path.unlink(missing_ok=True)
        return
    with scratch_postgres(admin) as url:
        yield url


def _ingest(mirror: Path, tmp: Path, admin: str | None) -> tuple[list[dict[str, float]], list[dict[str, float]],
                                                             dict[str, float]]:
    """(loops, first ingests, an unchanged re-run): REPEATS of each, each ingest into a fresh database."""
    loops, firsts = [], []
    again: dict[str, float] = {}
    for repeat in range(REPEATS):
        with _database(tmp, admin) as url:
            from recommender_core.store import Store

            store = Store(url)
            store.upgrade()
            store.dispose()
            loops.append(_child(["loop", str(mirror)]))
            firsts.append(_child(["ingest", str(mirror), url]))
            if repeat == REPEATS - 1:
                again = _child(["ingest", str(mirror), url])
    return loops, firsts, again


def _runs(results: list[dict[str, float]], key: str, scale: float = 1.0) -> tuple[float, ...]:
    return tuple(scale / r[key] if scale != 1.0 else r[key] for r in results)


def _results(name: str, files: int, small: int, measured: dict[str, tuple[list[dict[str, float]], ...]],
             again: dict[str, float]) -> list[Result]:
    (loops_s, firsts_s), (loops, firsts) = measured["small"], measured["big"]
    rates, base_rates = _runs(firsts, "seconds", files), _runs(loops, "seconds", files)
    peaks, peaks_s = _runs(firsts, "maxrss_mb"), _runs(firsts_s, "maxrss_mb")
    loop_peak = statistics.median(_runs(loops, "maxrss_mb"))
    loop_peak_s = statistics.median(_runs(loops_s, "maxrss_mb"))
    first_seconds = statistics.median(_runs(firsts, "seconds"))
    return [
        Result(name=f"ingest {files} result files into {name} (rate)", figure=statistics.median(rates),
               baseline=statistics.median(base_rates), unit="files/s", baseline_name="bare read + json.loads loop",
               target=0.6, higher_is_better=True, figure_runs=rates, baseline_runs=base_rates,
               notes=f"{firsts[-1]['count']:.0f} evidence rows in {first_seconds:.2f} s (median)"),
        Result(name=f"{name}: peak RSS (VmHWM of the child) at {files} files", figure=statistics.median(peaks),
               baseline=statistics.median(peaks_s), unit="MB", baseline_name=f"peak RSS at {small} files",
               target=1.3, figure_runs=peaks, baseline_runs=peaks_s,
               notes=f"bare loop {loop_peak:.0f} MB / {loop_peak_s:.0f} MB"),
        Result(name=f"{name}: re-run with nothing changed (wall time)", figure=again["seconds"],
               baseline=first_seconds, unit="s", baseline_name="first run (median)", target=0.1,
               notes=f"status {again['status']}"),
    ]


def run() -> list[Result]:
    files = int(os.environ.get("RECSYS_BENCH_MTEB_FILES", DEFAULT_FILES))
    small = max(1000, files // 10)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-mteb-") as tmpdir:
        tmp = Path(tmpdir)
        template = tmp / "slice"
        with tarfile.open(SLICE) as archive:
            archive.extractall(template, filter="data")
        _build_mirror(tmp / "small", small, template)
        _build_mirror(tmp / "big", files, template)
        for admin in bench_backends():
            name = "SQLite" if admin is None else "Postgres"
            loops_s, firsts_s, _ = _ingest(tmp / "small", tmp, admin)
            loops, firsts, again = _ingest(tmp / "big", tmp, admin)
            results += _results(name, files, small, {"small": (loops_s, firsts_s), "big": (loops, firsts)}, again)
    return results


if __name__ == "__main__":
    _child_main(sys.argv[1:])
