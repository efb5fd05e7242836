"""``recsys route task-00`` on a 500-model x 30-task store against the floor any CLI over it pays.

The floor, measured in the same run and interleaved with the command (A B A B ...): a bare
``python -c`` that imports the same database driver (``sqlite3``, or ``psycopg`` on Postgres),
connects, and runs one query (the current scoring run's id). Target: at most 1.5x, on each backend.
``recsys --help`` is timed too (reported, no target) to show what the CLI's own start-up costs.

The store holds one current scoring run of 15,000 utility rows (500 candidates x 30 tasks) and the
policy file lists the same 500 candidates, so ``route`` pays for a realistic policy as well. The
command prints its human output (the rendered tables), as a person at a terminal would see it.
Postgres runs when ``RECSYS_BENCH_DATABASE_URL`` (or ``RECSYS_TEST_DATABASE_URL``) names a server.

The first, untimed ``recsys route`` takes the full Typer path (the policy's compiled form is not
cached yet) and writes that form into the benchmark's own cache folder; every timed call after it
is served by the fast path (``recsys_cli.fast_route``). The benchmark checks both: that the timed
command imports none of typer, SQLAlchemy or pydantic, and that its output is byte for byte the
full path's. The full Typer path (``recsys_cli.app``) is timed too, interleaved, and reported with
``recsys --help`` (no target): what the command cost before the fast path.

recsys is timed as installed: its modules byte-compiled, as pip does when it installs the wheel. The
benchmark compiles them first (``compileall``), because an editable install under
``PYTHONDONTWRITEBYTECODE=1`` (set in this project's image and in some shells) would otherwise
compile every module from source on every call, which no installed copy does; the floor's driver is
the standard library's, which is always compiled.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

from ._common import Result, interleaved_runs, median_of, scratch_postgres, time_command

MODELS = 500
TASKS = 30
ROUNDS = int(os.environ.get("RECSYS_BENCH_ROUTE_CLI_ROUNDS", "7"))
TARGET = 1.5


def _policy_text() -> str:
    lines = ["version: 1", "candidates:"]
    lines += [f"  model-{m:03d}: {{provider: p{m % 7}, aliases: {{lmsys: [arena-model-{m:03d}]}}}}"
              for m in range(MODELS)]
    lines.append("tasks:")
    lines += [f"  task-{t:02d}: {{evidence: [lmsys:text/cat-{t:02d}], static_order: [model-000, model-001]}}"
              for t in range(TASKS)]
    return "\n".join(lines) + "\n"


def _fill(url: str) -> None:
    from recommender_core.scoring.run import ScoredModel
    from recommender_core.store import Store
    from recommender_core.store.bulk import insert_utility_scores
    from recommender_core.store.tables import RunStatus, ScoringRun

    rng = random.Random(7)
    store = Store(url)
    try:
        store.upgrade()
        now = store.clock.now()
        scores = [ScoredModel(task=f"task-{t:02d}", model=f"model-{m:03d}", utility=rng.random(),
                              quality=rng.random(), cost=rng.random(), latency=rng.random(),
                              reliability=rng.random(), cost_per_1k_tokens=rng.uniform(0, 0.05),
                              latency_p95_ms=rng.uniform(50, 5000), success_rate=0.99, excluded=False, reason=None,
                              evidence=(f"lmsys:text/cat-{t:02d}",), details={})
                  for t in range(TASKS) for m in range(MODELS)]
        with store.session() as session:
            run = ScoringRun(status=RunStatus.SUCCESS, started_at=now - timedelta(minutes=1), finished_at=now,
                             policy_hash="bench", is_current=True)
            session.add(run)
            session.flush()
            assert run.id is not None
            insert_utility_scores(session, run_id=run.id, scores=scores)
    finally:
        store.dispose()


def _floor_argv(url: str) -> list[str]:
    query = "SELECT id FROM scoring_run WHERE is_current"
    if url.startswith("sqlite"):
        code = f"import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute({query!r}).fetchall()"
        return [sys.executable, "-c", code, url.removeprefix("sqlite:///")]
    code = f"import psycopg, sys; c = psycopg.connect(sys.argv[1]); c.execute({query!r}).fetchall()"
    return [sys.executable, "-c", code, url]


# The full Typer path of the same command, for the before/after note (what `recsys` ran before the fast path).
_FULL = "import sys; sys.argv[0] = 'recsys'; from recsys_cli.app import main; main()"
# The console script's entry, then the top-level modules it loaded (on stderr).
_PROBE = ("import sys, json; sys.argv[0] = 'recsys'; from recsys_cli.entry import main; main(); "
          "sys.stderr.write(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
_HEAVY = {"typer", "click", "rich", "sqlalchemy", "sqlmodel", "pydantic", "yaml"}


def _check_fast_path(backend: str, env: dict[str, str]) -> None:
    """The timed command is served by the fast path, and prints the full path's bytes."""
    args = ["route", "task-00"]
    full = subprocess.run([sys.executable, "-c", _FULL, *args], env=env, capture_output=True, text=True, check=False)
    if full.returncode != 0:  # also writes the compiled policy the fast path reads
        raise RuntimeError(f"recsys route failed on {backend}: {full.stderr.strip()}")
    probe = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True, check=True)
    loaded = _HEAVY & set(json.loads(probe.stderr.strip().splitlines()[-1]))
    if loaded or probe.stdout != full.stdout:
        raise RuntimeError(f"recsys route on {backend} did not take the fast path (loaded {sorted(loaded)}, "
                           f"same output: {probe.stdout == full.stdout})")


def _measure(backend: str, url: str, policy: Path) -> list[Result]:
    _fill(url)
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent)) or "recsys"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")},
           "RECSYS_DATABASE_URL": url, "RECSYS_POLICY": str(policy), "ENABLE_MODEL_RECOMMENDER_V2": "true",
           "RECSYS_CACHE_DIR": str(policy.parent / "cache")}
    route = [recsys, "route", "task-00"]
    _check_fast_path(backend, env)
    floor = _floor_argv(url)
    full = [sys.executable, "-c", _FULL, "route", "task-00"]
    for argv in (route, floor, [recsys, "--help"], full):  # warm the OS file cache for every side
        time_command(argv, env=env)
    ours, base = interleaved_runs(lambda: time_command(route, env=env) * 1000,
                                  lambda: time_command(floor, env=env) * 1000, rounds=ROUNDS)
    helps, typer_path = interleaved_runs(lambda: time_command([recsys, "--help"], env=env) * 1000,
                                         lambda: time_command(full, env=env) * 1000, rounds=3)
    driver = "sqlite3" if backend == "sqlite" else "psycopg"
    return [Result(name=f"recsys route task-00 on {backend} ({MODELS} models x {TASKS} tasks)",
                   figure=median_of(ours), baseline=median_of(base), unit="ms",
                   baseline_name=f"python -c 'import {driver}; connect; one query'", target=TARGET,
                   figure_runs=ours, baseline_runs=base,
                   notes=(f"{len(ours)} interleaved rounds; recsys --help median {median_of(helps):.0f} ms "
                          f"(spread {min(helps):.0f}-{max(helps):.0f}); the full Typer path median "
                          f"{median_of(typer_path):.0f} ms (spread {min(typer_path):.0f}-{max(typer_path):.0f})"))]


def _byte_compile() -> None:
    """Byte-compile recsys's own modules, as installing the wheel does (see the module docstring)."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for folder in ("cli", "recommender_core"):
        compileall.compile_dir(str(root / folder), quiet=1)


def run() -> list[Result]:
    _byte_compile()
    results: list[Result] = []
    admin = os.environ.get("RECSYS_BENCH_DATABASE_URL") or os.environ.get("RECSYS_TEST_DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(_policy_text())
        results += _measure("sqlite", f"sqlite:///{Path(tmp) / 'route.db'}", policy)
        postgres = scratch_postgres(admin) if admin else nullcontext(None)
        with postgres as url:
            if url is None:
                print("recsys route on Postgres: not run (set RECSYS_BENCH_DATABASE_URL=postgresql://USER@HOST/DB)")
            else:
                results += _measure("postgres", url, policy)
    return results
