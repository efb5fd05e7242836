"""Every table at 80 columns, from a store with long model names and long errors.

The rules (cli/_render.py): names fold only after ``/``, ``-`` or a space, never inside a token;
errors are cut to one line ending in ``…`` (whole under ``-v`` and in ``--json``); dates never wrap;
utilities and their components show three decimals in every command.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.store import Store
from recommender_core.store.tables import IngestRun, RunStatus

from .conftest import REPO_ROOT

runner = CliRunner()
LONG_CHAT = "openrouter/anthropic/claude-opus-4-5-20251101-thinking-extended-preview"
LONG_CHEAP = "together_ai/meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8-turbo"
LONG_EMBEDDING = "bedrock/amazon.titan-embed-text-v2:0-with-a-very-long-deployment-name"
LONG_ERROR = ("lmsys: https://huggingface.co/api/datasets/lmarena-ai/leaderboard-dataset could not be "
              "reached (connection failed): [Errno 111] Connection refused while the cluster's egress "
              "proxy was being replaced; the previous evidence stays current. " * 3).strip()
POLICY = f"""
candidates:
  {LONG_CHAT}:
    aliases: {{lmsys: [claude-opus-4-5-20251101]}}
    price: {{input_per_1m: 5, output_per_1m: 25}}
  {LONG_CHEAP}:
    aliases: {{lmsys: [gpt-4o-mini-2024-07-18]}}
    price: {{input_per_1m: 0.2, output_per_1m: 0.6}}
  gpt-4.1: {{aliases: {{lmsys: [gpt-4.1-2025-04-14]}}}}
  {LONG_EMBEDDING}:
    kind: embedding
    aliases: {{mteb: [openai/text-embedding-3-large]}}
    price: {{input_per_1m: 0.13}}
tasks:
  coding:
    evidence: [lmsys:text/coding]
    static_order: [{LONG_CHAT}, gpt-4.1]
  retrieval:
    kind: embedding
    evidence: [mteb:type/Retrieval]
    static_order: [{LONG_EMBEDDING}]
"""
NAMES = (LONG_CHAT, LONG_CHEAP, LONG_EMBEDDING, "claude-opus-4-5-20251101", "gpt-4o-mini-2024-07-18")
DATE = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b")


@pytest.fixture
def filled(database_url: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    for source in ("lmsys", "mteb"):
        result = runner.invoke(app, ["--database-url", database_url, "ingest", source, "--policy", str(policy),
                                     "--source", str(REPO_ROOT / "sample_mirror" / source)])
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["--database-url", database_url, "score", "--policy", str(policy)]).exit_code == 0
    # two failed runs with long errors, the newest last (the snapshot shows its error)
    now = store.clock.now()
    with store.session() as session:
        for i in (1, 2):
            session.add(IngestRun(source="lmsys", status=RunStatus.FAILED, started_at=now + timedelta(seconds=i),
                                  finished_at=now + timedelta(seconds=i), error=LONG_ERROR))
    return database_url, policy


def _render(url: str, policy: Path, *args: str, verbose: bool = False) -> list[str]:
    argv = ["--database-url", url, *(["-v"] if verbose else []), *args]
    if args[0] == "policy":
        argv.append(str(policy))
    elif args[0] != "runs":
        argv += ["--policy", str(policy)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines, args
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, f"recsys {' '.join(args)}: lines over 80 columns: {too_wide[:3]}"
    return lines


def _flat(text: str) -> str:
    return " ".join(text.split())


SEPARATORS = re.compile(r"[\s/\-→│┃,;:()]+")


def _words(lines: list[str]) -> set[str]:
    """Every piece of text between separators, as a person reads it."""
    return {w for line in lines for w in SEPARATORS.split(line) if w}


TABLES = [("evidence",), ("runs",), ("policy", "check"), ("score", "--dry-run"), ("route", "coding"),
          ("route", "retrieval"), ("snapshot",)]


@pytest.mark.parametrize("args", TABLES, ids=[" ".join(a) for a in TABLES])
def test_every_table_fits_80_columns_and_never_splits_a_name_inside_a_token(
        filled: tuple[str, Path], args: tuple[str, ...]) -> None:
    lines = _render(*filled, *args)
    shown = "\n".join(lines)
    words = _words(lines)
    for name in NAMES:
        tokens = [t for t in SEPARATORS.split(name) if t]
        if max(tokens, key=len) in words or name in shown:
            # the name is in this table: each of its tokens whole, on one line
            missing = [t for t in tokens if t not in words]
            assert not missing, f"recsys {' '.join(args)} split {name!r} inside {missing}:\n{shown}"


def test_errors_are_one_line_with_an_ellipsis_and_whole_under_verbose_and_json(filled: tuple[str, Path]) -> None:
    url, policy = filled
    lines = _render(url, policy, "runs")
    failed = [line for line in lines if " failed " in line]
    assert len(failed) == 2 and all(line.rstrip().endswith("…") for line in failed), lines
    assert all(DATE.search(line) for line in failed)  # the date on the run's own line, whole
    assert LONG_ERROR not in "\n".join(lines)
    assert _flat(LONG_ERROR) in _flat(" ".join(_render(url, policy, "runs", verbose=True)))
    as_json = json.loads(runner.invoke(app, ["--database-url", url, "runs", "--json"]).stdout)
    assert [r["error"] for r in as_json if r["status"] == "failed"] == [LONG_ERROR, LONG_ERROR]
    snapshot = _render(url, policy, "snapshot")
    last = [line for line in snapshot if line.startswith("Last error of lmsys: ")]
    assert len(last) == 1 and last[0].endswith("…") and "lmsys: lmsys:" not in last[0]
    assert _flat(LONG_ERROR) in _flat(" ".join(_render(url, policy, "snapshot", verbose=True)))


def test_one_precision_for_utilities_in_route_and_snapshot(filled: tuple[str, Path]) -> None:
    url, policy = filled
    route = _render(url, policy, "route", "coding")
    snapshot = _render(url, policy, "snapshot", "--task", "coding")
    for lines in (route, snapshot):
        rows = [line for line in lines if re.search(r"\b[01]\.\d{3}\b", line)]
        assert len(rows) >= 3
        figures = [f for line in rows for f in re.findall(r"(?<![\d.])[01]\.\d+(?![\d.])", line)]
        assert figures and all(len(f) == 5 for f in figures), rows  # 0.xyz: three decimals
