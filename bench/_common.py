"""Shared benchmark helpers: results, interleaved timing, reporting."""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


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

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def line(self) -> str:
        bound = ">=" if self.higher_is_better else "<="
        verdict = "ok" if self.passed else "MISSED"
        text = (f"{self.name}: {self.figure:.6g} {self.unit} vs {self.baseline_name} {self.baseline:.6g} {self.unit}"
                f" -> ratio {self.ratio:.3f} (target {bound} {self.target}) {verdict}")
        return f"{text}; {self.notes}" if self.notes else text


def time_command(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def interleaved_medians(a: Callable[[], float], b: Callable[[], float], *, rounds: int) -> tuple[float, float]:
    """Run A B A B ... so drift in machine load hits both sides equally; return both medians."""
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a.append(a())
        times_b.append(b())
    return statistics.median(times_a), statistics.median(times_b)


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
