"""docs/json.md: every command accepts ``--json`` before and after the subcommand, and with it stdout
carries exactly one JSON document (logs and progress go to stderr).

The commands come from the Typer app tree, so a new command fails here until it is given arguments
that make it succeed (``ARGS``) and honours the contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
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
    seen: set[tuple[str, ...]] = set()
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
        # the documented shape (docs/json.md): each command's JSON Schema in docs/
        schema = schema_for(path)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
        assert not errors, f"recsys {shown} breaks {schema['$id']}: {errors[0].message} at {list(errors[0].path)}"
        seen.add(path)
    assert seen == set(args)


def schema_for(path: tuple[str, ...]) -> dict[str, Any]:
    """The JSON Schema of a command's document: docs/<command words joined by ->.schema.json; every
    ``ingest`` subcommand shares docs/ingest.schema.json (one ingest result document)."""
    name = "ingest" if path[0] == "ingest" else "-".join(path)
    file = REPO_ROOT / "docs" / f"{name}.schema.json"
    assert file.is_file(), f"recsys {' '.join(path)} has no documented shape: add {file.name} to docs/"
    schema: dict[str, Any] = json.loads(file.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_every_schema_in_docs_is_listed_in_json_md() -> None:
    text = (REPO_ROOT / "docs" / "json.md").read_text("utf-8")
    for file in sorted((REPO_ROOT / "docs").glob("*.schema.json")):
        assert f"]({file.name})" in text, f"docs/json.md does not link {file.name}"


ERROR_SCHEMA = json.loads((REPO_ROOT / "docs" / "error.schema.json").read_text("utf-8"))


@pytest.mark.parametrize("argv, exit_code, kind", [
    (["route", "nope"], 2, "UnknownTaskError"),
    (["snapshot", "--task", "nope"], 2, "UnknownTaskError"),
    (["runs", "--source", "bogus"], 2, "UnknownSourceError"),
    (["evidence", "--source", "bogus"], 2, "UnknownSourceError"),
    (["runs", "--no-such-option"], 2, "UsageError"),
    (["ingest", "bogus"], 2, "UsageError"),
    (["policy", "check", "/no/such/policy.yaml"], 1, "PolicyError"),
])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_failure_under_json_prints_the_error_document_and_the_line(
        argv: list[str], exit_code: int, kind: str, where: str, tmp_path: Path) -> None:
    full = ["--database-url", f"sqlite:///{tmp_path / 'e.db'}",
            *(["--json", *argv] if where == "before" else [*argv, "--json"])]
    result = runner.invoke(app, full)
    assert result.exit_code == exit_code, result.output
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, ERROR_SCHEMA)
    assert (doc["error"]["type"], doc["error"]["exit_code"]) == (kind, exit_code)
    assert doc["error"]["message"] and doc["error"]["message"] in result.stderr.replace("\n", " ")
