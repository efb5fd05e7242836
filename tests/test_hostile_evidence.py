"""Hostile data never poisons the store, part two: evidence rows, stored telemetry, the policy, mirrors
and terminal output.

Evidence rows come from the real upstream formats (the sample mirror's MTEB result files and Arena
parquet, the real MTEB slice and Arena CSVs in ../shared via ``conftest.real_data()``) with one
value spoiled; every ingest runs through the real `recsys` CLI on both store backends. Property tests
(hypothesis) check that the row validator and the policy loader give a value or a ``RecsysError``
and nothing else, whatever they are given.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recsys_cli._base import AppState
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.errors import PolicyError, RecsysError, RejectedRow
from recommender_core.policy import default_policy_text, parse_policy
from recommender_core.sources.base import Batch, EvidenceRecord
from recommender_core.sources.lmsys import parse_legacy_csv
from recommender_core.sources.mteb import load_task_map, parse_result
from recommender_core.sources.validate import check_record, mteb_metric_bounds, screen
from recommender_core.store import Store
from recommender_core.store.tables import BenchmarkEvidence, IngestRun, ScoringRun, TelemetryEvent, UtilityScore

from .conftest import REPO_ROOT, real_data
from .scoring_data import SMALL_POLICY, add_arena, add_calls

runner = CliRunner()
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SAMPLE_MTEB = REPO_ROOT / "sample_mirror" / "mteb"
SAMPLE_LMSYS = REPO_ROOT / "sample_mirror" / "lmsys"


def _cli(url: str, *args: str) -> Any:
    return runner.invoke(app, ["--database-url", url, *args], obj=AppState(clock=FixedClock(NOW)))


def _one_line(result: Any) -> str:
    """The single stderr line of a failed command (and proof there is only one)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _current(store: Store, source: str) -> tuple[int | None, dict[tuple[str, str], float]]:
    """The current (latest successful) run of ``source`` and its evidence values."""
    with store.session() as session:
        run_id = session.execute(sa.select(sa.func.max(IngestRun.id)).where(
            IngestRun.source == source, IngestRun.status == "success")).scalar()  # type: ignore[arg-type]
        rows = session.execute(sa.select(BenchmarkEvidence).where(
            BenchmarkEvidence.run_id == run_id)).scalars().all()  # type: ignore[arg-type]
    return run_id, {(r.model, r.category): r.value for r in rows}


def _scoring(store: Store) -> tuple[int | None, dict[tuple[str, str], float | None]]:
    with store.session() as session:
        run = session.execute(sa.select(ScoringRun).where(ScoringRun.is_current.is_(True))).scalars().one_or_none()  # type: ignore[attr-defined]
        if run is None:
            return None, {}
        scores = session.execute(sa.select(UtilityScore).where(UtilityScore.run_id == run.id)).scalars().all()  # type: ignore[arg-type]
    return run.id, {(s.task, s.model): s.utility for s in scores}


# --- stored telemetry: rows an older version or another writer left behind ---------------------------

def _hostile_event(**fields: Any) -> TelemetryEvent:
    base: dict[str, Any] = {"event_id": uuid.uuid4().hex, "model": "alpha", "model_group": "alpha",
                            "status": "success", "started_at": NOW - timedelta(hours=2), "latency_ms": 500.0,
                            "prompt_tokens": 800, "completion_tokens": 200, "cost": 0.002}
    return TelemetryEvent(**{**base, **fields})


HOSTILE_STORED_EVENTS: dict[str, dict[str, Any]] = {
    "nan_cost": {"cost": float("nan")},
    "inf_cost": {"cost": float("inf")},
    "negative_cost": {"cost": -1e6},
    "absurd_cost": {"cost": 1e300},
    "int_min_prompt_tokens": {"prompt_tokens": -(2**31)},
    "int_max_tokens_both": {"prompt_tokens": 2**31 - 1, "completion_tokens": 2**31 - 1},
    "nan_latency": {"latency_ms": float("nan")},
    "negative_latency": {"latency_ms": -1e9},
    "inf_latency": {"latency_ms": float("inf")},
}


def test_stored_bad_telemetry_rows_never_break_or_skew_score(store: Store, database_url: str, tmp_path: Path) -> None:
    """Case 2: telemetry rows stored before validation existed (NaN, Infinity or negative spend, token
    counts at the integer limits, NaN or negative latency) made every `recsys score` fail on Postgres
    (`invalid input syntax for type json`, `integer out of range`) or skewed it. Scoring now reads only
    rows within the telemetry rules: it succeeds and its utilities equal the run before."""
    store = Store(store.url, engine=store.engine, clock=FixedClock(NOW))
    add_arena(store, [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0),
                      ("delta-2025", "overall", 1200.0, 1100.0)])
    add_calls(store, "alpha", latencies=[400.0 + i for i in range(60)], cost=0.002, tokens=1000)
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    first = _cli(database_url, "score", "--policy", str(policy))
    assert first.exit_code == 0, first.output
    run_before, utilities_before = _scoring(store)
    scored = [u for u in utilities_before.values() if u is not None]
    assert scored and all(math.isfinite(u) for u in scored)

    with store.session() as session:
        for fields in HOSTILE_STORED_EVENTS.values():
            session.add(_hostile_event(**fields))
    again = _cli(database_url, "score", "--policy", str(policy))
    assert again.exit_code == 0, again.output
    run_after, utilities_after = _scoring(store)
    assert run_after != run_before
    assert utilities_after == utilities_before
