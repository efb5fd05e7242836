"""An SQLite store in a read-only location: read commands work, write commands fail in one line saying so.

The location is made read-only for real, by a bind mount remounted read-only (tests run as root in CI,
and root ignores permission bits, so a chmod would prove nothing): the store's folder in one case, the
database file alone (its folder writable) in the other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from recsys_cli.app import app
from typer.testing import CliRunner, Result

from .conftest import REPO_ROOT, skip_or_fail
from .test_serve import get
from .test_snapshot import validate

runner = CliRunner()
SAMPLE = REPO_ROOT / "sample_mirror"

READ_COMMANDS = [
    ["runs"], ["runs", "--json"], ["evidence", "--source", "lmsys", "--limit", "3"], ["evidence", "--json"],
    ["snapshot"], ["snapshot", "--json"], ["route", "chat"], ["route", "retrieval", "--json"],
]
WRITE_COMMANDS = [
    ["db", "upgrade"],
    ["ingest", "lmsys", "--source", str(SAMPLE / "lmsys"), "--force"],
    ["ingest", "mteb", "--source", str(SAMPLE / "mteb"), "--force"],
    ["score"],
    ["score", "--activate", "1"],
    ["telemetry", "prune"],
]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextmanager
def read_only_mount(target: Path) -> Iterator[None]:
    """Bind-mount ``target`` (a folder or a file) over itself and remount the bind read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        skip_or_fail("read-only store tests mount a read-only bind and need root and mount(8)")
    try:
        _mount("--bind", str(target), str(target))
    except subprocess.CalledProcessError as exc:
        skip_or_fail(f"cannot bind-mount {target} (read-only store tests need it): {exc.stderr.strip()}")
    try:
        _mount("-o", "remount,ro,bind", str(target))
        assert not os.access(target, os.W_OK)
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True, capture_output=True)


def invoke(url: str, args: list[str]) -> Result:
    result = runner.invoke(app, ["--database-url", url, *args])
    # Never an unhandled exception: the CLI either answered or said what is wrong in one line.
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    return result


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A store with sample evidence from both sources and a current scoring run, in a folder of its own."""
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")  # route reads the stored scores
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "recsys.db"
    url = f"sqlite:///{db}"
    for args in (["db", "upgrade"], ["ingest", "lmsys", "--source", str(SAMPLE / "lmsys")],
                 ["ingest", "mteb", "--source", str(SAMPLE / "mteb")], ["score"]):
        assert invoke(url, args).exit_code == 0, args
    return db, url


@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_read_commands_work_and_write_commands_say_the_location_is_read_only(
        filled: tuple[Path, str], read_only: str) -> None:
    db, url = filled
    before = json.loads(invoke(url, ["runs", "--json"]).stdout)
    files_before = sorted(p.name for p in db.parent.iterdir())
    with read_only_mount(db.parent if read_only == "folder" else db):
        for args in READ_COMMANDS:
            result = invoke(url, args)
            assert result.exit_code == 0, (args, result.output)
            assert result.stdout.strip(), args
        assert json.loads(invoke(url, ["runs", "--json"]).stdout) == before
        validate(json.loads(invoke(url, ["snapshot", "--json"]).stdout))
        assert json.loads(invoke(url, ["route", "retrieval", "--json"]).stdout)["primary"]

        place = f"its {read_only} {db if read_only == 'file' else db.parent} is on a read-only file system"
        for args in WRITE_COMMANDS:
            result = invoke(url, args)
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.count("\n") == 1, (args, result.stderr)
            assert result.stderr.startswith(
                f"StoreWriteError: The database at {url} is in a read-only location: {place}."), (args, result.stderr)
            assert "read commands (runs, evidence, snapshot, route, serve) work as they are" in result.stderr
    # nothing was written: no run recorded, no lock file left beside the database
    assert json.loads(invoke(url, ["runs", "--json"]).stdout) == before
    assert sorted(p.name for p in db.parent.iterdir()) == files_before


def test_serve_and_the_installed_entry_point_on_a_read_only_folder(filled: tuple[Path, str]) -> None:
    """The console script itself (where the OSError traceback used to surface), and ``recsys serve``."""
    db, url = filled
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent))
    assert recsys is not None
    env = {**os.environ, "RECSYS_DATABASE_URL": url, "ENABLE_MODEL_RECOMMENDER_V2": "true"}
    with read_only_mount(db.parent):
        snapshot = subprocess.run([recsys, "snapshot", "--json"], env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
        assert snapshot.returncode == 0, snapshot.stderr
        validate(json.loads(snapshot.stdout))
        ingest = subprocess.run([recsys, "ingest", "lmsys", "--source", str(SAMPLE / "lmsys"), "--force"],
                                env=env, capture_output=True, text=True, timeout=120, check=False)
        assert ingest.returncode == 1 and "Traceback" not in ingest.stderr
        assert ingest.stderr.count("\n") == 1 and "is in a read-only location" in ingest.stderr

        proc = subprocess.Popen([recsys, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert line.startswith("recsys serve: http://127.0.0.1:"), line
            address = ("127.0.0.1", int(line.split("http://127.0.0.1:")[1].split("/")[0]))
            assert get(address, "/healthz").status == 200
            doc = get(address, "/snapshot").json()
            validate(doc)
            assert doc["tasks"] and doc["scoring_run"] is not None
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
