"""`recsys snapshot` on the command line: 80-column tables, highlights, --task/--top, --json."""

from __future__ import annotations

import json
import re

import pytest
from recsys_cli._base import AppState
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.store import Store

from .test_snapshot import NOW, fill, validate

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_empty_store_says_what_to_run_first(database_url: str, store: Store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["--database-url", database_url, "snapshot"])
    assert result.exit_code == 0, result.output
    assert "Sources: no ingest has run yet" in result.stdout
    assert "Scoring run: none yet" in result.stdout
    assert result.stdout.rstrip().endswith(
        "Next: run recsys ingest lmsys, then recsys ingest mteb, then recsys score")
    as_json = runner.invoke(app, ["--database-url", database_url, "snapshot", "--json"])
    doc = json.loads(as_json.stdout)
    validate(doc)
    assert doc["sources"] == [] and doc["next_steps"][0] == "recsys ingest lmsys"


def test_tables_fit_80_columns_and_highlight_problems(database_url: str, store: Store,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then styles even though the runner is not a terminal
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    # The store was filled at NOW, so the command reads the same clock, whatever the date today.
    result = runner.invoke(app, ["--database-url", database_url, "-v", "snapshot"],
                           obj=AppState(clock=FixedClock(NOW)))
    assert result.exit_code == 0, result.output
    styled = result.stdout
    plain = ANSI.sub("", styled)
    assert max(len(line) for line in plain.splitlines()) <= 80, plain
    assert "ENABLE_MODEL_RECOMMENDER_V2: on (scores route)" in plain
    # the stale source and the failed run are red (bold red: ESC[1;31m)
    assert re.search(r"\x1b\[1;31mfailed", styled)
    assert re.search(r"\x1b\[1;31m30\.0 h STALE", styled)  # lmsys last succeeded 30 h before NOW
    assert re.search(r"\x1b\[32m2\.0 h *\x1b", styled)  # mteb, 2 h old, is green, no STALE
    assert f"recsys snapshot at {NOW.isoformat().replace('+00:00', 'Z')}" in plain
    assert "Last error of lmsys: SourceHTTPError: 500" in plain
    # rankings with their components and the evidence behind them
    assert re.search(r"│ ?1 *│ gpt-5 *│ 0\.700 *│ 0\.900 *│", plain)
    assert re.search(r"│ ?2 *│ gpt-4\.1 *│ 0\.700 *│ 0\.800 *│ 0\.500 *│ 0\.500 *│ 0\.900 *│ 1300 ", plain)
    assert "  gpt-4.1: 1300 gpt-4.1-2025-04-14" in plain  # under -v, the upstream name behind the value
    assert "excluded: gpt-4o-mini (no evidence)" in plain
    assert re.search(r"│ ?gpt-4\.1 *│ 20 *│ 1 \(5\.0%\) *│", plain)
    assert "Evidence names matching no candidate (1): mystery-model" in plain
    assert "Next:" not in plain


def test_task_and_top_narrow_the_json_document(database_url: str, store: Store) -> None:
    fill(store)
    result = runner.invoke(app, ["--database-url", database_url, "snapshot", "--task", "coding", "--top", "1",
                                 "--json"], obj=AppState(clock=FixedClock(NOW)))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    validate(doc)
    assert doc["generated_at"] == "2026-11-26T03:00:00Z"  # the clock the command was given
    assert list(doc["tasks"]) == ["coding"] and [m["model"] for m in doc["tasks"]["coding"]] == ["gpt-5"]


def test_unknown_task_is_a_usage_error(memory_store: Store, tmp_path: object) -> None:
    result = runner.invoke(app, ["--database-url", "sqlite://", "snapshot", "--task", "nope"])
    assert result.exit_code == 2
    assert result.stderr.startswith("UnknownTaskError: Unknown task 'nope'. Tasks: chat, classification, ")
    assert runner.invoke(app, ["--database-url", "sqlite://", "snapshot", "--top", "0"]).exit_code == 2
