"""`recsys score`, `route`, `route-test` and `export` through the CLI, on both backends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.dom import minidom

import pytest
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.store import Store

from .scoring_data import SMALL_POLICY, add_arena, add_mteb

pytestmark = pytest.mark.routing
runner = CliRunner()
RUN_FLAG = os.environ.get("ENABLE_MODEL_RECOMMENDER_V2", "")
RUN_V2 = RUN_FLAG.strip().lower() in ("1", "true", "yes", "on")

ARENA = [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0),
         ("delta-2025", "overall", 1200.0, 1100.0), ("alpha", "math", 1300.0, 1200.0),
         ("beta", "math", 1350.0, 1340.0)]


@pytest.fixture
def setup(store: Store, database_url: str, tmp_path: Path) -> tuple[str, Path]:
    add_arena(store, ARENA)
    add_mteb(store, [("emb-one", "TaskA", "Retrieval", 0.5), ("emb-two", "TaskA", "Retrieval", 0.6)])
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    return database_url, policy


def cli(url: str, *args: str, v2: bool | None = None) -> object:
    env = {} if v2 is None else {"ENABLE_MODEL_RECOMMENDER_V2": "true" if v2 else "false"}
    return runner.invoke(app, ["--database-url", url, *args], env=env)


def test_score_json_then_route_explains(setup: tuple[str, Path]) -> None:
    url, policy = setup
    scored = cli(url, "score", "--policy", str(policy), "--json")
    assert scored.exit_code == 0, scored.output
    doc = json.loads(scored.stdout)
    assert doc["run_id"] == 1 and doc["tasks"]["chat"]["scored"] == 3
    assert {"model": "gamma-unpriced", "reason": doc["tasks"]["chat"]["excluded"][0]["reason"]} in \
        doc["tasks"]["chat"]["excluded"]
    routed = cli(url, "route", "chat", "--policy", str(policy), "--json", v2=True)
    assert routed.exit_code == 0, routed.output
    decision = json.loads(routed.stdout)
    # docs/json.md (route.schema.json): exactly these keys, candidates and exclusions with exactly theirs
    assert set(decision) == {"task", "strategy", "v2_enabled", "primary", "fallbacks", "candidates", "excluded"}
    assert {frozenset(c) for c in decision["candidates"]} == {
        frozenset({"model", "utility", "quality", "cost", "latency", "reliability"})}
    assert decision["excluded"] and all(set(e) == {"model", "reason"} for e in decision["excluded"])
    assert decision["v2_enabled"] is True and decision["primary"] in {"alpha", "beta", "delta"}
    assert [c["model"] for c in decision["candidates"]] == [decision["primary"], *decision["fallbacks"]]
    off = json.loads(cli(url, "route", "chat", "--policy", str(policy), "--json", v2=False).stdout)
    assert (off["primary"], off["fallbacks"], off["v2_enabled"]) == ("beta", ["alpha"], False)
    text = cli(url, "route", "chat", "--policy", str(policy), v2=True)
    assert text.exit_code == 0 and "Excluded" in text.stdout and "gamma-unpriced" in text.stdout


def test_route_follows_the_flag_of_this_run(setup: tuple[str, Path]) -> None:
    url, policy = setup
    assert cli(url, "score", "--policy", str(policy)).exit_code == 0
    routed = runner.invoke(app, ["--database-url", url, "route", "math", "--policy", str(policy), "--json"],
                           env={"ENABLE_MODEL_RECOMMENDER_V2": RUN_FLAG} if RUN_FLAG else {})
    assert json.loads(routed.stdout)["v2_enabled"] is RUN_V2


def test_score_dry_run_and_activate(setup: tuple[str, Path]) -> None:
    url, policy = setup
    dry = cli(url, "score", "--policy", str(policy), "--dry-run", "--json")
    assert json.loads(dry.stdout)["dry_run"] is True
    assert cli(url, "score", "--policy", str(policy)).exit_code == 0
    assert cli(url, "score", "--policy", str(policy)).exit_code == 0
    back = cli(url, "score", "--activate", "1", "--json")
    assert back.exit_code == 0 and json.loads(back.stdout)["activated"] is True
    bad = cli(url, "score", "--activate", "42")
    assert bad.exit_code == 1 and bad.stderr.startswith("ScoringError: Scoring run 42 does not exist")
    both = cli(url, "score", "--activate", "1", "--dry-run")
    assert both.exit_code == 2


def test_no_candidate_is_three_lines_with_counts_and_a_next_step(setup: tuple[str, Path]) -> None:
    url, policy = setup
    assert cli(url, "score", "--policy", str(policy)).exit_code == 0
    args = ("route", "chat", "--policy", str(policy), "--max-cost-per-1k", "0.0000001")
    result = cli(url, *args, v2=True)
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 3, result.stderr
    assert lines[0] == "NoCandidateError: No candidate qualifies for task 'chat' (scoring run 1): 4 excluded."
    assert lines[1].startswith("Excluded per reason: above max_cost_per_1k: 3, ")
    assert lines[2].startswith("Try: loosen max_cost_per_1k (the cheapest scored candidate costs ")
    # the full list: one line per excluded model under -v, and in the --json error document
    verbose = cli(url, "-v", *args, v2=True)
    assert len(verbose.stderr.splitlines()) == 3 + 4
    as_json = cli(url, *args, "--json", v2=True)
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "NoCandidateError" and error["exit_code"] == 1 and len(error["excluded"]) == 4
    assert as_json.stderr.splitlines() == lines


CASES = """
cases:
  - name: chat goes to the strongest affordable model
    task: chat
    expect:
      primary_in: [alpha, beta, delta]
      excludes: [gamma-unpriced]
  - name: cheap chat
    task: chat
    strategy: cascade
    constraints: {max_cost_per_1k: 0.003}
    expect:
      fallbacks_start_with: [alpha]
      primary: delta
"""


def _snapshot(url: str, tmp_path: Path, policy: Path) -> Path:
    assert cli(url, "score", "--policy", str(policy)).exit_code == 0
    snap = cli(url, "snapshot", "--policy", str(policy), "--json")
    assert snap.exit_code == 0, snap.output
    path = tmp_path / "snapshot.json"
    path.write_text(snap.stdout)
    return path


def test_route_test_passes_from_a_snapshot_without_a_database(setup: tuple[str, Path], tmp_path: Path) -> None:
    url, policy = setup
    snapshot = _snapshot(url, tmp_path, policy)
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    junit = tmp_path / "junit.xml"
    # A database URL that cannot be reached proves no database is opened.
    result = runner.invoke(app, ["--database-url", "postgresql://nobody@127.0.0.1:1/none", "route-test",
                                 str(cases), "--scores", str(snapshot), "--policy", str(policy),
                                 "--junit-xml", str(junit), "--json"], env={"ENABLE_MODEL_RECOMMENDER_V2": "1"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["failed"] == 0
    suite = minidom.parse(str(junit)).getElementsByTagName("testsuite")[0]  # noqa: S318 - our own output
    assert suite.getAttribute("tests") == "2" and suite.getAttribute("failures") == "0"


def test_route_test_failure_exits_3_with_diff_and_junit(setup: tuple[str, Path], tmp_path: Path) -> None:
    url, policy = setup
    snapshot = _snapshot(url, tmp_path, policy)
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES.replace("primary: delta", "primary: beta"))
    junit = tmp_path / "junit.xml"
    result = runner.invoke(app, ["route-test", str(cases), "--scores", str(snapshot), "--policy", str(policy),
                                 "--junit-xml", str(junit)], env={"ENABLE_MODEL_RECOMMENDER_V2": "1"})
    assert result.exit_code == 3
    assert "FAIL  cheap chat  [chat]" in result.stdout
    assert "primary: expected 'beta', got 'delta'" in result.stdout
    assert result.stderr == f"RouteTestFailed: 1 of 2 route-test cases failed in {cases}.\n"
    failures = minidom.parse(str(junit)).getElementsByTagName("failure")  # noqa: S318 - our own output
    assert len(failures) == 1 and "expected 'beta'" in failures[0].getAttribute("message")


def test_route_test_invalid_file_names_file_line_and_field(tmp_path: Path) -> None:
    cases = tmp_path / "bad.yaml"
    cases.write_text("cases:\n  - name: x\n    task: chat\n    expect:\n      primary: a\n      primery: b\n")
    result = runner.invoke(app, ["route-test", str(cases), "--scores", str(tmp_path / "missing.json")])
    assert result.exit_code == 1
    assert result.stderr == (f"PolicyError: Invalid route-test file {cases}, line 6, field "
                             "'cases.0.expect.primery': extra inputs are not permitted.\n")


def test_route_test_golden_files(setup: tuple[str, Path], tmp_path: Path) -> None:
    url, policy = setup
    snapshot = _snapshot(url, tmp_path, policy)
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: golden chat\n    task: chat\n    expect: {golden: chat.golden.json}\n")
    args = ["route-test", str(cases), "--scores", str(snapshot), "--policy", str(policy)]
    env = {"ENABLE_MODEL_RECOMMENDER_V2": "1"}
    assert runner.invoke(app, args, env=env).exit_code == 3  # no golden file yet
    assert runner.invoke(app, [*args, "--update-golden"], env=env).exit_code == 0
    assert json.loads((tmp_path / "chat.golden.json").read_text())["task"] == "chat"
    assert runner.invoke(app, args, env=env).exit_code == 0
    # The flag off changes the decision: the golden comparison fails with a diff.
    off = runner.invoke(app, args, env={"ENABLE_MODEL_RECOMMENDER_V2": "0"})
    assert off.exit_code == 3 and "golden: decision differs" in off.stdout and '-  "v2_enabled": true' in off.stdout


def test_goldens_written_from_the_store_hold_from_a_saved_snapshot(setup: tuple[str, Path], tmp_path: Path) -> None:
    """A saved snapshot reproduces the store's decisions, explanations (excluded reasons) included."""
    url, policy = setup
    snapshot = _snapshot(url, tmp_path, policy)  # scores the store, then saves its snapshot
    cases = tmp_path / "cases.yaml"
    lines = ["cases:"]
    for task in ("chat", "math", "retrieval"):
        for strategy in ("utility", "cascade"):
            lines += [f"  - name: {task} {strategy}", f"    task: {task}", f"    strategy: {strategy}",
                      f"    expect: {{golden: {task}.{strategy}.json}}"]
    cases.write_text("\n".join(lines) + "\n")
    env = {"ENABLE_MODEL_RECOMMENDER_V2": "1"}
    written = runner.invoke(app, ["--database-url", url, "route-test", str(cases), "--policy", str(policy),
                                  "--update-golden"], env=env)
    assert written.exit_code == 0, written.output
    chat = json.loads((tmp_path / "chat.utility.json").read_text())
    assert {e["model"] for e in chat["excluded"]} == {"gamma-unpriced"}
    from_snapshot = runner.invoke(app, ["--database-url", "postgresql://nobody@127.0.0.1:1/none", "route-test",
                                        str(cases), "--scores", str(snapshot), "--policy", str(policy)], env=env)
    assert from_snapshot.exit_code == 0, from_snapshot.output


def test_unknown_strategy_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "route", "coding",
                                 "--strategy", "fastest"], env={"ENABLE_MODEL_RECOMMENDER_V2": "true"})
    assert result.exit_code == 2
    assert result.stderr == "UsageError: Unknown strategy 'fastest'. Available strategies: utility, cascade.\n"


def test_route_test_with_a_broken_snapshot_is_one_line_exit_1(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    snapshot = tmp_path / "snap.json"
    snapshot.write_text('{"schema_version": 1, "tasks": {"chat": [{"model": "alpha", "utility": "high"}]}}')
    result = runner.invoke(app, ["route-test", str(cases), "--scores", str(snapshot)])
    assert result.exit_code == 1
    assert result.stderr == (f"ConfigError: Snapshot {snapshot}: tasks.chat[0].utility must be a number, got "
                             "'high'. Save a fresh one with 'recsys snapshot --json'.\n")


def test_unwritable_output_paths_are_one_line_exit_1(setup: tuple[str, Path], tmp_path: Path) -> None:
    url, policy = setup
    snapshot = _snapshot(url, tmp_path, policy)
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    missing = tmp_path / "no" / "such" / "dir"
    junit = runner.invoke(app, ["route-test", str(cases), "--scores", str(snapshot), "--policy", str(policy),
                                "--junit-xml", str(missing / "junit.xml")], env={"ENABLE_MODEL_RECOMMENDER_V2": "1"})
    assert junit.exit_code == 1, junit.output
    assert junit.stderr.startswith(f"RecsysError: Cannot write --junit-xml {missing / 'junit.xml'}: ")
    assert junit.stderr.count("\n") == 1
    export = cli(url, "export", "litellm-router", "--policy", str(policy), "-o", str(missing / "router.yaml"),
                 v2=True)
    assert export.exit_code == 1, export.output
    assert export.stderr.startswith(f"RecsysError: Cannot write --output {missing / 'router.yaml'}: ")
    assert export.stderr.count("\n") == 1


def test_route_test_with_malformed_snapshot_exclusions_is_one_line_exit_1(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    snapshot = tmp_path / "snap.json"
    snapshot.write_text('{"schema_version": 1, "tasks": {}, "excluded": {"chat": [{"model": "alpha"}]}}')
    result = runner.invoke(app, ["route-test", str(cases), "--scores", str(snapshot)])
    assert result.exit_code == 1
    assert result.stderr == f"ConfigError: Snapshot {snapshot}: excluded.chat[0] needs a 'model' and a 'reason'.\n"
