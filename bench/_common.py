"""Shared benchmark helpers: results, interleaved timing, reporting."""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recommender_core.store import Store


@dataclass(frozen=True)
class Result:
    """One benchmark figure against its same-run baseline.

    ``ratio`` is figure/baseline for times (lower is better) and rate/baseline-rate for rates
    (higher is better); ``target`` is the bound the ratio must meet and ``higher_is_better`` says which way.
    """

    name: str
    figure: float
    baseline: float
    unit: str
    baseline_name: str
    target: float
    higher_is_better: bool = False
    notes: str = ""
    # The repeats behind ``figure`` and ``baseline`` (medians of them), printed as their spread.
    figure_runs: tuple[float, ...] = ()
    baseline_runs: tuple[float, ...] = ()
    # When the repeats are paired rounds (both sides measured side by side in each round), the median
    # of the rounds' own ratios: the ratio then, since a round's drift cancels within the round.
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.figure / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def line(self) -> str:
        bound = ">=" if self.higher_is_better else "<="
        verdict = "ok" if self.passed else "MISSED"
        text = (f"{self.name}: {self.figure:.6g} {self.unit}{spread(self.figure_runs)} vs {self.baseline_name} "
                f"{self.baseline:.6g} {self.unit}{spread(self.baseline_runs)}"
                f" -> {'paired ' if self.paired_ratio is not None else ''}ratio {self.ratio:.3f}"
                f" (target {bound} {self.target}) {verdict}")
        return f"{text}; {self.notes}" if self.notes else text


def spread(runs: Sequence[float]) -> str:
    """`` (median of n, spread lo-hi)`` for the repeats behind a figure; empty when there are none."""
    if not runs:
        return ""
    return f" (median of {len(runs)}, spread {min(runs):.4g}-{max(runs):.4g})"


def median_of(runs: Sequence[float]) -> float:
    return statistics.median(runs)


def paired_median(figures: Sequence[float], baselines: Sequence[float]) -> float:
    """The median of each round's own ratio ``figure / baseline`` (``Result.paired_ratio``): the
    machine's speed drifts between rounds (it moved by 2x within seconds here), and sides timed back
    to back in one round share its speed."""
    return statistics.median(f / b for f, b in zip(figures, baselines, strict=True))


def time_command(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def interleaved_medians(a: Callable[[], float], b: Callable[[], float], *, rounds: int) -> tuple[float, float]:
    """Run A B A B ... so drift in machine load hits both sides equally; return both medians."""
    times_a, times_b = interleaved_runs(a, b, rounds=rounds)
    return statistics.median(times_a), statistics.median(times_b)


def interleaved_runs(a: Callable[[], float], b: Callable[[], float], *,
                     rounds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Run A B A B ... (at least 3 rounds); return every figure of each side, for a median and spread."""
    times_a, times_b = [], []
    for _ in range(max(rounds, 3)):
        times_a.append(a())
        times_b.append(b())
    return tuple(times_a), tuple(times_b)


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh, empty database on the server of ``admin_url``, dropped afterwards; yields its URL."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    admin = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"recsys_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench_backends() -> list[str | None]:
    """Where the store benchmarks run: SQLite (``None``) always, then the Postgres server that
    ``RECSYS_BENCH_DATABASE_URL`` (else ``RECSYS_TEST_DATABASE_URL``) names, so that one ``make bench``
    reports every target on both backends."""
    import os

    admin = os.environ.get("RECSYS_BENCH_DATABASE_URL") or os.environ.get("RECSYS_TEST_DATABASE_URL")
    return [None, *([admin] if admin else [])]


@contextmanager
def bench_store(admin: str | None) -> Iterator[Store]:
    """An upgraded, empty store: a scratch database on the Postgres server of ``admin``, else SQLite in a
    temporary folder; disposed (and the scratch database dropped) afterwards."""
    import tempfile

    from recommender_core.store import Store

    if admin:
        with scratch_postgres(admin) as url:
            store = Store(url)
            try:
                store.upgrade()
                yield store
            finally:
                store.dispose()
        return
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/bench.db")
        try:
            store.upgrade()
            yield store
        finally:
            store.dispose()
