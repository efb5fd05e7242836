"""The repository stands alone: no file in it cites a document or a path that is not in it.

A clone is all a user gets, so a comment, docstring, message or guide that sends a reader to a file
outside the repository is a dead end. The one sanctioned way out is ``tests/conftest.py``'s
``real_data()``, which finds the real upstream samples kept beside the repository (and skips, or fails
under ``RECSYS_REQUIRE_ALL_TESTS=1``, when they are absent).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .conftest import REPO_ROOT

# Where the real samples are looked up; nothing else may name a place outside the repository.
GUARD = REPO_ROOT / "tests" / "conftest.py"
# Generated, never tracked: what a run of the tools leaves behind.
SKIPPED_DIRS = {".git", ".venv", ".demo", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                ".hypothesis", "build", "dist"}
MARKDOWN_NAME = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b")
RELATIVE_UP = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-]+(?:/[\w.-]+)*)")
PARENT_FOLDER = re.compile(r"\.parent\s*/\s*[\"']shared[\"']")


def _files() -> Iterator[Path]:
    """The tracked files (``git ls-files``), else every file outside generated folders."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=False)
    if listed.returncode == 0 and listed.stdout:
        yield from (REPO_ROOT / name for name in sorted(listed.stdout.decode().split("\0")) if name
                    if (REPO_ROOT / name).is_file())
        return
    for path in sorted(REPO_ROOT.rglob("*")):
        parts = set(path.relative_to(REPO_ROOT).parts)
        if path.is_file() and not parts & SKIPPED_DIRS and not any(p.endswith(".egg-info") for p in parts):
            yield path


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:4096]:
        return None  # binary (parquet, images)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_every_markdown_file_a_file_names_is_in_the_repository() -> None:
    present = {p.name for p in _files() if p.suffix == ".md"}
    offenders = []
    for path in _files():
        text = _text(path)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            offenders += [f"{path.relative_to(REPO_ROOT)}:{lineno} cites {name}"
                          for name in MARKDOWN_NAME.findall(line) if name not in present]
    assert offenders == []


def test_no_file_points_outside_the_repository() -> None:
    outside = str(REPO_ROOT.parent) + "/"
    offenders = []
    for path in _files():
        if path == GUARD:
            continue
        text = _text(path)
        if text is None:
            continue
        rel = path.relative_to(REPO_ROOT)
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{lineno}"
            if outside in line:
                offenders.append(f"{where} names an absolute path outside the repository")
            if PARENT_FOLDER.search(line):
                offenders.append(f"{where} builds a path beside the repository")
            for target in RELATIVE_UP.findall(line):
                # from the file's folder or from the repository's root (a working directory), a path
                # that leaves the repository and names something there (hostile inputs such as
                # "../etc" in a validation test name nothing)
                for start in (path.parent, REPO_ROOT):
                    resolved = (start / target).resolve()
                    leaves = REPO_ROOT != resolved and REPO_ROOT not in resolved.parents
                    if leaves and resolved.exists():
                        offenders.append(f"{where} cites {target}, outside the repository")
                        break
    assert offenders == []
