"""The CLI shell: every command has help, global options, the one error handler and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.store import Store

runner = CliRunner()


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    # Typer may vendor click, so recognise groups by shape rather than by class.
    if isinstance(getattr(command, "commands", None), dict):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


COMMANDS = [p for p in _walk(typer.main.get_command(app)) if p]
# The CLI contract's command list (README, "Commands").
CONTRACT = {
    ("db", "upgrade"), ("ingest", "lmsys"), ("ingest", "mteb"), ("ingest", "litellm"), ("telemetry", "prune"),
    ("evidence",), ("runs",), ("policy", "check"), ("score",), ("route",), ("snapshot",), ("route-test",),
    ("export", "litellm-router"), ("serve",),
}


def test_every_contract_command_exists() -> None:
    assert CONTRACT <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert len(result.output.strip().splitlines()) > 2


def test_version() -> None:
    from recommender_core import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"recsys {__version__}"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_db_upgrade_is_idempotent_and_json_goes_before_or_after(database_url: str) -> None:
    first = runner.invoke(app, ["--database-url", database_url, "db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert "from empty to" in first.stdout
    before = runner.invoke(app, ["--database-url", database_url, "--json", "db", "upgrade"])
    after = runner.invoke(app, ["--database-url", database_url, "db", "upgrade", "--json"])
    for result in (before, after):
        assert result.exit_code == 0
        doc = json.loads(result.stdout)
        assert doc["changed"] is False and doc["to_revision"] == doc["from_revision"]


def test_bad_option_is_a_usage_error_exit_2() -> None:
    result = runner.invoke(app, ["--bogus"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == "Error: No such option: --bogus (Possible options: --verbose)"


def test_bad_database_url_scheme() -> None:
    result = runner.invoke(app, ["--database-url", "mysql://root@db/recsys", "runs"])
    assert result.exit_code == 1
    assert result.stderr == (
        "ConfigError: Unsupported database URL scheme 'mysql' in 'mysql://root@db/recsys'. "
        "Supported: sqlite:///PATH, postgresql://USER@HOST/DB (psycopg 3).\n"
    )


def test_unreachable_postgres_is_one_redacted_line() -> None:
    result = runner.invoke(app, ["--database-url", "postgresql://app:s3cr3t@127.0.0.1:1/recsys", "runs"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "StoreUnavailableError: Cannot reach the database at postgresql://app:***@127.0.0.1:1/recsys: ")
    assert result.stderr.rstrip().endswith("Check that it is running and the URL is right.")
    assert "s3cr3t" not in result.output


def test_database_url_from_environment_and_database_url_fallback(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fallback = tmp_path / "fallback.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{fallback}")
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert fallback.exists()
    primary = tmp_path / "primary.db"
    monkeypatch.setenv("RECSYS_DATABASE_URL", f"sqlite:///{primary}")
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert primary.exists()


def test_default_store_is_created_in_the_user_data_dir_on_first_use(tmp_path: Path) -> None:
    import platformdirs

    result = runner.invoke(app, ["--json", "runs"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert (Path(platformdirs.user_data_dir("recsys", appauthor=False)) / "recsys.db").exists()


def test_explicit_postgres_without_schema_asks_for_db_upgrade(postgres_url: str) -> None:
    result = runner.invoke(app, ["--database-url", postgres_url, "runs"])
    assert result.exit_code == 1
    assert result.stderr.startswith("StoreSchemaError: The database at postgresql://")
    assert result.stderr.rstrip().endswith("has no recsys schema. Run 'recsys db upgrade'.")


def test_concurrent_upgrade_gets_exit_75(database_url: str) -> None:
    store = Store(database_url)
    store.upgrade()
    with store.job_lock("db-upgrade"):
        result = runner.invoke(app, ["--database-url", database_url, "db", "upgrade", "--wait", "0"])
    assert result.exit_code == 75
    assert result.stderr == (
        "LockHeldError: Another 'db-upgrade' run holds its lock; this run did nothing. Wait for it to finish.\n")
    store.dispose()


def test_lock_held_by_another_process_gets_exit_75(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    holder = subprocess.Popen(  # a real second process holding the job lock
        [sys.executable, "-c",
         "import sys, time\n"
         "from recommender_core.store import Store\n"
         f"s = Store({url!r}); s.upgrade()\n"
         "with s.job_lock('db-upgrade'):\n"
         "    print('held', flush=True); time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = runner.invoke(app, ["--database-url", url, "db", "upgrade", "--wait", "0"])
        assert result.exit_code == 75
    finally:
        holder.kill()
        holder.communicate()


def test_policy_error_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\ncandidates:\n  gpt-4o: {kind: chat}\ntasks:\n  chat:\n"
                   "    evidence: [lmsys:text/overall]\n    static_order: [gpt-4o, gpt-5]\n")
    result = runner.invoke(app, ["--database-url", _sqlite(tmp_path), "policy", "check", str(bad)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"PolicyError: Invalid policy {bad}, line 7, field 'tasks.chat.static_order.1': "
        "'gpt-5' is not a candidate; candidates are gpt-4o.\n")


def test_policy_check_default_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--database-url", _sqlite(tmp_path), "policy", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["candidates"]) >= 12 and report["unmatched"] == []


def test_json_logs_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender_core.logs import configure_logging

    monkeypatch.setenv("RECSYS_LOG_FORMAT", "json")
    result = runner.invoke(app, ["-v", "--database-url", _sqlite(tmp_path), "runs", "--json"])
    assert result.exit_code == 0
    json.loads(result.stdout)
    configure_logging()  # restore the default handler for later tests


def test_cronjob_outcome_is_unchanged_when_the_pushgateway_is_down(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", "http://user:pw@127.0.0.1:1")
    result = runner.invoke(app, ["--database-url", _sqlite(tmp_path), "snapshot", "--json"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "could not push metrics to the Pushgateway at http://user:***@127.0.0.1:1" in result.stderr
    assert "pw@" not in result.stderr


# --- one meaning for each mistake, in every command ----------------------------------------------

UNKNOWN_TASK = [["route", "nope"], ["snapshot", "--task", "nope"]]
UNKNOWN_SOURCE = [["runs", "--source", "bogus"], ["evidence", "--source", "bogus"], ["ingest", "bogus"]]


@pytest.mark.parametrize("argv", UNKNOWN_TASK + UNKNOWN_SOURCE, ids=lambda a: " ".join(a))
@pytest.mark.parametrize("v2", ["true", "false"])
def test_an_unknown_task_or_source_is_a_usage_error_everywhere(argv: list[str], v2: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", v2)
    result = runner.invoke(app, ["--database-url", _sqlite(tmp_path), *argv])
    assert result.exit_code == 2, result.output
    assert "nope" in result.stderr or "bogus" in result.stderr


def test_a_route_test_case_naming_an_unknown_task_is_an_invalid_file(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - {name: x, task: coding}\n  - {name: y, task: nope}\n")
    result = runner.invoke(app, ["--database-url", _sqlite(tmp_path), "route-test", str(cases)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"PolicyError: Invalid route-test file {cases}, line 3, field 'cases.1.task': "
                                    "unknown task 'nope'; tasks in the policy: chat, ")


@pytest.mark.parametrize("argv", [["snapshot"], ["runs"], ["db", "upgrade"]])
def test_an_explicit_sqlite_path_in_a_missing_folder_is_refused_and_nothing_is_created(
        argv: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "no" / "such" / "dir"
    result = runner.invoke(app, ["--database-url", f"sqlite:///{folder / 'x.db'}", *argv])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr == (f"StoreError: The folder {folder} of the database at sqlite:///{folder / 'x.db'} does "
                             "not exist. Create it first, or choose another database URL (only the default "
                             "location is created).\n")
    assert not (tmp_path / "no").exists()


@pytest.mark.postgres
def test_a_missing_postgres_database_says_create_it_then_upgrade(postgres_server: str) -> None:
    base, _, _ = postgres_server.rpartition("/")
    url = f"{base}/recsys_never_created_{uuid.uuid4().hex[:8]}"
    result = runner.invoke(app, ["--database-url", url, "runs"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("StoreUnavailableError: The database at ")
    assert result.stderr.rstrip().endswith("does not exist). Create it, then run `recsys db upgrade`.")


def test_a_network_failure_names_source_and_the_mirror_variables(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # a closed loopback port stands in for a machine without network access
    monkeypatch.setenv("RECSYS_LMSYS_URL", "http://127.0.0.1:1")
    result = runner.invoke(app, ["--database-url", _sqlite(tmp_path), "ingest", "lmsys"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "could not be reached" in result.stderr
    assert result.stderr.rstrip().endswith("Without network access, read a local mirror: pass --source PATH|URL "
                                           "or set the mirror variables (RECSYS_LMSYS_URL).")
