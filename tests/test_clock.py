"""Time comes from one clock: every time a command writes or measures is the clock's, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from recsys_cli._base import AppState
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import SYSTEM_CLOCK, FixedClock
from recommender_core.store import Store

from .conftest import REPO_ROOT

runner = CliRunner()
SAMPLE = REPO_ROOT / "sample_mirror"
# Far from any real date the suite runs on, so a time read anywhere else (Python's clock or the
# database server's now()) cannot match by chance.
T = datetime(2031, 5, 5, 12, 0, tzinfo=UTC)


def test_fixed_clock_stands_still_until_moved() -> None:
    clock = FixedClock(T)
    assert clock.now() == clock.now() == T
    assert clock.advance(timedelta(hours=2)) == clock.now() == T + timedelta(hours=2)
    two_hours_east = timezone(timedelta(hours=2))
    assert clock.set(datetime(2030, 1, 1, 1, tzinfo=two_hours_east)) == datetime(2029, 12, 31, 23, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    with pytest.raises(TypeError, match="naive"):
        FixedClock(datetime(2031, 5, 5))
    assert SYSTEM_CLOCK.now().tzinfo is UTC
    assert abs(SYSTEM_CLOCK.now() - datetime.now(UTC)) < timedelta(seconds=5)


def _json(database_url: str, clock: FixedClock, *args: str) -> object:
    result = runner.invoke(app, ["--database-url", database_url, *args, "--json"], obj=AppState(clock=clock))
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.stdout)


def test_every_time_a_command_writes_or_measures_is_its_clocks(database_url: str, store: Store,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    clock = FixedClock(T)
    _json(database_url, clock, "ingest", "lmsys", "--source", str(SAMPLE / "lmsys"))
    clock.advance(timedelta(minutes=1))
    _json(database_url, clock, "ingest", "mteb", "--source", str(SAMPLE / "mteb"))
    clock.advance(timedelta(minutes=1))
    _json(database_url, clock, "score")
    runs = _json(database_url, clock, "runs")
    assert isinstance(runs, list)
    times = {(r["source"], r["started_at"], r["finished_at"]) for r in runs}
    assert times == {("lmsys", "2031-05-05T12:00:00Z", "2031-05-05T12:00:00Z"),
                     ("mteb", "2031-05-05T12:01:00Z", "2031-05-05T12:01:00Z"),
                     ("score", "2031-05-05T12:02:00Z", "2031-05-05T12:02:00Z")}

    clock.advance(timedelta(hours=1))  # an hour after the score run
    doc = _json(database_url, clock, "snapshot")
    assert isinstance(doc, dict)
    assert doc["generated_at"] == "2031-05-05T13:02:00Z"
    ages = {s["source"]: (s["age_seconds"], s["stale"]) for s in doc["sources"]}
    assert ages == {"lmsys": (3720.0, False), "mteb": (3660.0, False)}
    assert doc["scoring_run"]["age_seconds"] == 3600.0

    clock.advance(timedelta(hours=25))  # past RECSYS_STALE_AFTER_HOURS (26 h) for both sources
    doc = _json(database_url, clock, "snapshot")
    assert isinstance(doc, dict)
    assert {s["source"]: s["stale"] for s in doc["sources"]} == {"lmsys": True, "mteb": True}

    pruned = _json(database_url, clock, "telemetry", "prune", "--older-than", "7")
    assert isinstance(pruned, dict)
    assert pruned["cutoff"] == (clock.now() - timedelta(days=7)).isoformat().replace("+00:00", "Z")
