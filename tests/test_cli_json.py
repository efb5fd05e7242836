"""DESIGN.md 3: every command accepts ``--json`` before and after the subcommand, and with it stdout
carries exactly one JSON document (logs and progress go to stderr).

The commands come from the Typer app tree, so a new command fails here until it is given arguments
that make it succeed (``ARGS``) and honours the contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from recsys_cli.app import app
from typer.testing import CliRunner

from .conftest import REPO_ROOT
from .test_cli import COMMANDS

runner = CliRunner()
CASES = """
cases:
  - {name: coding, task: coding, expect: {excludes: [no-such-model]}}
"""


def _routerbench(tmp_path: Path) -> Path:
    path = tmp_path / "routerbench.csv"
    path.write_text("sample_id,eval_name,a,a|total_cost,b,b|total_cost\ns1,t,1,0.01,0,0.001\n")
    return path


def _args(tmp_path: Path, spend_logs: str) -> dict[tuple[str, ...], list[str]]:
    """For each command, in the order run, arguments that make it succeed on the store being filled."""
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    return {
        ("db", "upgrade"): [],
        ("ingest", "lmsys"): ["--source", str(REPO_ROOT / "sample_mirror" / "lmsys")],
        ("ingest", "mteb"): ["--source", str(REPO_ROOT / "sample_mirror" / "mteb")],
        ("ingest", "litellm"): ["--spend-logs-url", spend_logs],
        ("ingest", "outcomes"): ["--source", str(REPO_ROOT / "sample_mirror" / "outcomes" / "evals.csv")],
        ("eval", "import"): ["--format", "routerbench", str(_routerbench(tmp_path)), "-o", str(tmp_path / "rb.csv")],
        ("eval", "replay"): [str(REPO_ROOT / "sample_mirror" / "outcomes" / "evals.csv"), "--repeats", "10"],
        ("eval", "calibrate"): [str(REPO_ROOT / "sample_mirror" / "outcomes" / "evals.csv"), "--min-quality", "0.5"],
        ("telemetry", "prune"): [],
        ("evidence",): ["--limit", "3"],
        ("runs",): [],
        ("policy", "check"): [],
        ("score",): [],
        ("route",): ["coding"],
        ("snapshot",): [],
        ("route-test",): [str(cases)],
        ("export", "litellm-router"): [],
        ("serve",): ["--port", "0"],
    }


def _leaves() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)

    def is_group(path: tuple[str, ...]) -> bool:
        command: Any = root
        for name in path:
            command = command.commands[name]
        return isinstance(getattr(command, "commands", None), dict)

    return [p for p in COMMANDS if not is_group(p)]


class _NoServer:
    """Stands in for the HTTP server: binds nothing, returns at once from serve_forever."""

    server_address = ("127.0.0.1", 0)

    def serve_forever(self) -> None:
        raise KeyboardInterrupt

    def server_close(self) -> None:
        pass


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["before", "after"])
def test_every_command_takes_json_before_and_after_and_prints_one_document(
        where: str, database_url: str, spend_logs_dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender_core.diagnostics.server as server

    make: Callable[..., Any] = lambda *a, **k: _NoServer()  # noqa: E731 - a one-line stand-in
    monkeypatch.setattr(server, "make_server", make)
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    args = _args(tmp_path, spend_logs_dsn)
    assert set(args) == set(_leaves()), "give every command arguments here"
    for path, extra in args.items():
        argv = ["--database-url", database_url, *(["--json", *path, *extra] if where == "before"
                                                   else [*path, *extra, "--json"])]
        result = runner.invoke(app, argv)
        shown = " ".join(argv[2:])
        assert result.exit_code == 0, f"recsys {shown}: {result.output}"
        try:
            doc = json.loads(result.stdout)  # exactly one document: trailing text fails ("Extra data")
        except ValueError as exc:
            pytest.fail(f"recsys {shown}: stdout is not one JSON document ({exc}): {result.stdout[:200]!r}")
        if path == ("serve",):  # where it listens
            assert doc["url"] == "http://127.0.0.1:0/" and doc["port"] == 0
