"""The suite stands alone: it passes on any date and in a clone without the real upstream samples beside it."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO_ROOT, real_data

TESTS = REPO_ROOT / "tests"

# Tests that read the real upstream samples, one per way they reach them (a test body, a parametrized
# test, a CLI test, a module-scoped fixture): run in a copy of the suite without the samples folder.
REAL_DATA_TESTS = [
    "tests/test_lmsys.py::test_real_2023_csv[sqlite]",
    "tests/test_lmsys.py::test_later_csvs_carry_no_ratings_and_are_refused[sqlite-leaderboard_table_20240109.csv]",
    "tests/test_lmsys.py::test_cli_refused_csv_is_one_line_exit_1",
    "tests/test_mteb.py::test_real_files_parse_to_values_worked_out_by_hand",
    "tests/test_mteb.py::test_real_slice_ingests_with_hand_checked_scores[sqlite]",
]


def test_only_the_guard_names_the_real_samples_folder() -> None:
    """No test module builds a path to the real samples itself (at import, in a parametrization or in a
    body): they all go through ``conftest.real_data``, which skips or fails when the folder is absent."""
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name in ("conftest.py", "test_hermetic.py"):  # the guard, and this check of it
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Name) and node.id == "SHARED_REAL_DATA":
                offenders.append(f"{path.name}:{node.lineno} uses SHARED_REAL_DATA")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value == "shared" or "shared/data" in node.value):
                offenders.append(f"{path.name}:{node.lineno} names the shared folder")
            elif isinstance(node, ast.alias) and node.name == "SHARED_REAL_DATA":
                offenders.append(f"{path.name}:{node.lineno} imports SHARED_REAL_DATA")
    assert offenders == []


def _run_copy(tmp_path: Path, *, require_all: bool) -> subprocess.CompletedProcess[str]:
    """The real-data tests, run by pytest in a copy of the suite whose parent folder has no ``shared``."""
    clone = tmp_path / "clone"
    if not clone.exists():
        shutil.copytree(TESTS, clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(REPO_ROOT / "pyproject.toml", clone / "pyproject.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    if require_all:
        env["RECSYS_REQUIRE_ALL_TESTS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", *REAL_DATA_TESTS],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_clone_without_the_real_samples_skips_them_naming_the_folder(tmp_path: Path) -> None:
    assert not (tmp_path / "shared").exists()
    missing = str(tmp_path / "shared" / "data" / "real")
    result = _run_copy(tmp_path, require_all=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(REAL_DATA_TESTS)} skipped" in result.stdout, result.stdout
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all(f"{missing} does not exist" in line for line in skips), result.stdout

    # CI turns every such skip into a failure, with the same reason
    strict = _run_copy(tmp_path, require_all=True)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (failed|errors?|passed|skipped)", strict.stdout)}
    assert counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0) == len(REAL_DATA_TESTS), (
        strict.stdout)
    assert f"{missing} does not exist" in strict.stdout and "RECSYS_REQUIRE_ALL_TESTS=1" in strict.stdout


def test_the_guard_returns_the_path_where_the_samples_exist() -> None:
    assert real_data("mteb", "results-slice-9-models.tar.gz").is_file()
