"""Security: nothing from the network is unpickled or evaluated, credentials never leave in any output,
SQL binds every value, and every security-lint suppression says why."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from recommender_core.store import Store

from ._pushgateway import PASSWORD, USER, Gateway
from .conftest import REPO_ROOT
from .lmsys_data import board_rows, parquet_bytes

RECSYS = str(Path(sys.executable).with_name("recsys"))
SAMPLE = REPO_ROOT / "sample_mirror" / "lmsys"
MTEB_SAMPLE = REPO_ROOT / "sample_mirror" / "mteb"


# --- nothing unpickled or evaluated ---------------------------------------------------------------

_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "joblib", "cloudpickle"}
_FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
_FORBIDDEN_ATTRS = {"read_pickle", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Every construct that could turn bytes into code: pickle-like modules, eval/exec, unsafe YAML."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in _FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _FORBIDDEN_MODULES:
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in _FORBIDDEN_CALLS:
                found.append(f"{where} {func.id}()")
            elif isinstance(func, ast.Attribute):
                if func.attr in _FORBIDDEN_ATTRS:
                    found.append(f"{where} .{func.attr}()")
                elif func.attr == "load" and isinstance(func.value, ast.Name) and func.value.id == "yaml":
                    loader = next((k.value for k in node.keywords if k.arg == "Loader"),
                                  node.args[1] if len(node.args) > 1 else None)
                    if not (isinstance(loader, ast.Attribute | ast.Name) and
                            (getattr(loader, "attr", None) or getattr(loader, "id", "")).endswith(
                                ("SafeLoader", "CSafeLoader"))):
                        found.append(f"{where} yaml.load without SafeLoader")
                elif func.attr == "load" and any(k.arg == "allow_pickle" and not (
                        isinstance(k.value, ast.Constant) and k.value.value is False) for k in node.keywords):
                    found.append(f"{where} .load(allow_pickle=...)")
    return found


def test_the_scanner_finds_what_it_looks_for() -> None:
    bad = ("import pickle\nfrom marshal import loads\nimport yaml, numpy\n"
           "eval('1')\nexec('x=1')\nyaml.load(s)\nyaml.load(s, Loader=yaml.Loader)\nyaml.unsafe_load(s)\n"
           "numpy.load(f, allow_pickle=True)\nimport pandas\npandas.read_pickle(p)\n")
    assert len(unsafe_calls(bad)) == 9
    good = "import yaml, json\nyaml.safe_load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\njson.loads(s)\n"
    assert unsafe_calls(good) == []


def test_nothing_from_the_network_is_unpickled_or_evaluated() -> None:
    found: list[str] = []
    files = sorted((REPO_ROOT / "recommender_core").rglob("*.py")) + sorted((REPO_ROOT / "cli").rglob("*.py"))
    assert len(files) > 40
    for path in files:
        found += unsafe_calls(path.read_text(), str(path.relative_to(REPO_ROOT)))
    assert found == []


# --- every security suppression explained --------------------------------------------------------

_NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)(?P<rest>.*)$")


def unexplained_suppressions(text: str, filename: str = "<source>") -> list[str]:
    """``# noqa: S...`` lines without a reason after them (``# noqa: S101 - why``)."""
    bad = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _NOQA.search(line)
        if match is None:
            continue
        codes = [c.strip() for c in match.group("codes").split(",")]
        if any(c.startswith("S") for c in codes) and not re.match(r"\s*[-–—:]\s*\w.{4,}", match.group("rest")):
            bad.append(f"{filename}:{number}: {line.strip()}")
    return bad


def test_the_suppression_check_can_fail() -> None:
    noqa = "# no" + "qa:"  # split, so this file does not hold the very suppressions it checks
    text = f"x = 1  {noqa} S101\ny = 2  {noqa} S608 - constants only\nz = 3  {noqa} E402\nw = 4  {noqa} B027,S110\n"
    assert unexplained_suppressions(text) == [f"<source>:1: x = 1  {noqa} S101", f"<source>:4: w = 4  {noqa} B027,S110"]


def test_every_security_suppression_is_explained() -> None:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    files = [REPO_ROOT / f for f in listed.stdout.split()] if listed.returncode == 0 else [
        p for p in REPO_ROOT.rglob("*.py") if ".venv" not in p.parts]
    assert len(files) > 60
    bad: list[str] = []
    for path in files:
        if path.exists():
            bad += unexplained_suppressions(path.read_text(), str(path.relative_to(REPO_ROOT)))
    assert bad == [], "explain each suppression after it, e.g. `S101 - why`"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert re.search(r'select = \[[^\]]*"S"', pyproject), "ruff's security rules (S) must stay selected"


# --- credentials never leave ---------------------------------------------------------------------

DB_SECRET = f"db-S3cret-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def secret_db_url(postgres_url: str) -> Iterator[str]:
    """The test database owned by a role that logs in with a password (DB_SECRET)."""
    import psycopg

    role = f"recsys_pw_{uuid.uuid4().hex[:8]}"
    dbname = postgres_url.rsplit("/", 1)[1]
    admin_url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                         sql.Literal(DB_SECRET)))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
    host = postgres_url.split("@", 1)[1]
    try:
        yield f"postgresql://{role}:{DB_SECRET}@{host}"
    finally:
        with psycopg.connect(admin_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RECSYS, "-vv", *args], capture_output=True, text=True, env=env, timeout=180,
                          check=False)


@pytest.mark.postgres
@pytest.mark.pushgateway
def test_credentials_never_appear_in_outputs_logs_snapshots_or_metrics(
        secret_db_url: str, auth_gateway: Gateway, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    host = auth_gateway.url.removeprefix("http://")
    env.update(RECSYS_DATABASE_URL=secret_db_url, RECSYS_LOG_FORMAT="json",
               # credentials in the URL: recsys must send them as basic auth and never print them
               RECSYS_PUSHGATEWAY_URL=f"http://{USER}:{PASSWORD}@{host}")
    outputs: list[str] = []
    commands = [("db", "upgrade"), ("ingest", "lmsys", "--source", str(SAMPLE), "--json"),
                ("ingest", "mteb", "--source", str(MTEB_SAMPLE), "--json"), ("score", "--json"),
                ("snapshot", "--json"), ("runs", "--json"),
                ("ingest", "lmsys", "--source", str(tmp_path / "missing.parquet"))]
    results = [_run(env, *command) for command in commands]
    for result in results:
        outputs += [result.stdout, result.stderr]
    assert [r.returncode for r in results] == [0, 0, 0, 0, 0, 0, 1], [r.stderr[-300:] for r in results]
    failed = results[-1]
    assert failed.stderr.strip().splitlines()[-1].startswith("SourceError: lmsys: the mirror ")
    # the database and the Pushgateway down, each with a password in its URL (a warning is logged)
    down = {**env, "RECSYS_DATABASE_URL": secret_db_url.replace(secret_db_url.split("@", 1)[1].split("/")[0],
                                                                "127.0.0.1:1"),
            "RECSYS_PUSHGATEWAY_URL": f"http://{USER}:{PASSWORD}@127.0.0.1:1"}
    unreachable = _run(down, "snapshot", "--json")
    assert unreachable.returncode == 1 and "postgresql://" in unreachable.stderr and ":***@" in unreachable.stderr
    outputs += [unreachable.stdout, unreachable.stderr]
    # JSON logs were really written (and parse), so the grep below covered them
    log_lines = [json.loads(line) for out in outputs for line in out.splitlines() if line.startswith('{"')]
    assert any(line.get("level") == "warning" and "could not push metrics" in line["message"]
               for line in log_lines), unreachable.stderr
    snapshot = json.loads(results[4].stdout)
    assert snapshot["unmatched_models"] is not None
    outputs.append(json.dumps(snapshot))
    # the pushed metrics: pushed at all (URL credentials became basic auth), and free of secrets
    samples = auth_gateway.scrape()
    pushed = {labels["command"] for labels, value in samples["recsys_job_success"]}
    assert {"ingest-lmsys", "ingest-mteb", "score", "snapshot"} <= pushed
    outputs.append(json.dumps(samples))
    # what the store recorded (run errors) is an output too
    store = Store(secret_db_url)
    try:
        with store.connect() as conn:
            import sqlalchemy as sa

            recorded = [str(r) for r in conn.execute(sa.text("SELECT error, details FROM ingest_run"))]
    finally:
        store.dispose()
    outputs += recorded
    everything = "\n".join(outputs)
    assert DB_SECRET not in everything
    assert PASSWORD not in everything
    assert secret_db_url.split("@", 1)[0].split("//", 1)[1].split(":")[0] + ":***@" in everything


# --- SQL binds values: hostile and unicode names are data ---------------------------------------

HOSTILE = ["'; DROP TABLE benchmark_evidence; --", 'Robert"); DROP TABLE ingest_run;--', "o'brien \"quoted\" \\n",
           "模型-ü-😀-ñ", "model%s%%s{0}:name", "-- comment", "name\u00a0with\u2003unicode spaces"]
# (A tab is a control character: the evidence-row rules reject it, see test_hostile_evidence.py.)


def test_hostile_and_unicode_names_round_trip_as_data(database_url: str, tmp_path: Path) -> None:
    from recsys_cli.app import app
    from typer.testing import CliRunner

    runner = CliRunner()
    models = [(name, "Org'; --", "MIT", 1300.0 + i) for i, name in enumerate(HOSTILE)]
    board = tmp_path / "board.parquet"
    board.write_bytes(parquet_bytes(board_rows(models, {"overall": (0.0, 1.0)})))
    base = ["--database-url", database_url]
    assert runner.invoke(app, [*base, "db", "upgrade"]).exit_code == 0
    ingested = runner.invoke(app, [*base, "ingest", "lmsys", "--source", str(board), "--json"])
    assert ingested.exit_code == 0, ingested.output
    assert json.loads(ingested.stdout)["rows"] == len(HOSTILE)
    shown = runner.invoke(app, [*base, "evidence", "--source", "lmsys", "--json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.stdout)
    assert sorted(r["model"] for r in rows) == sorted(HOSTILE)
    assert {r["organization"] for r in rows} == {"Org'; --"}
    for name in HOSTILE:  # filtering by a hostile name is a bound parameter too
        one = runner.invoke(app, [*base, "evidence", "--source", "lmsys", "--model", name, "--json"])
        assert one.exit_code == 0, one.output
        assert [r["model"] for r in json.loads(one.stdout)] == [name]
    snapshot = runner.invoke(app, [*base, "snapshot", "--json"])
    assert snapshot.exit_code == 0, snapshot.output
    document: dict[str, Any] = json.loads(snapshot.stdout)
    assert set(HOSTILE) <= set(document["unmatched_models"])
    # the tables the names tried to drop are all there
    runs = json.loads(runner.invoke(app, [*base, "runs", "--json"]).stdout)
    assert [r["status"] for r in runs] == ["success"]


def test_pushgateway_url_credentials_become_basic_auth_and_explicit_settings_win() -> None:
    from recommender_core.diagnostics.metrics import _split_credentials

    assert _split_credentials("http://gw:9091", None, None) == ("http://gw:9091", None, None)
    assert _split_credentials("https://u%40corp:p%3Ass@gw:9091/base", None, None) == (
        "https://gw:9091/base", "u@corp", "p:ss")
    assert _split_credentials("http://u:p@[::1]:9091", None, None) == ("http://[::1]:9091", "u", "p")
    assert _split_credentials("http://u:p@gw", "set-user", "set-pw") == ("http://gw", "set-user", "set-pw")
