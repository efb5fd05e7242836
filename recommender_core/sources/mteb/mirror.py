"""Local MTEB mirrors (a clone of embeddings-benchmark/results, or a copy): their path, version and files.

Version: the ``RECSYS_MIRROR_VERSION`` file at the root, else the git HEAD of a clone, else a
fingerprint of the file list (paths, sizes, mtimes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ...errors import ConfigError, SourceError
from ..base import git_head
from ..mirror import inside, read_inside
from .constants import (
    MIRROR_VERSION_FILE,
)
from .folder import FileReader

__all__ = [
    "mirror_version",
]


# --- local mirrors -----------------------------------------------------------------------------------


def _results_dir(root: Path) -> Path:
    if (root / "results").is_dir() and inside(root, root / "results"):
        return root / "results"
    return root


def _walk(directory: Path, rel: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files under ``directory`` in sorted order, with "/"-separated relative paths (streamed)."""
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            if entry.name.startswith("."):
                continue
            yield from _walk(Path(entry.path), path)
        elif entry.is_file() or entry.is_symlink():  # a dangling link is counted as unreadable
            yield path, entry


def mirror_version(root: Path) -> str:
    """A mirror's version: the override file, else git HEAD, else a fingerprint of its file list."""
    override = root / MIRROR_VERSION_FILE
    if override.is_file() and inside(root, override):
        first = read_inside(root, override).decode("utf-8", errors="replace").strip().splitlines()
        if first and first[0].strip():
            return first[0].strip()
    head = git_head(root)
    if head:
        return head
    digest = hashlib.sha256()
    results = _results_dir(root)
    count = 0
    for rel, entry in _walk(results):
        stat = entry.stat(follow_symlinks=False)
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        count += 1
    return f"files:{count}:{digest.hexdigest()[:16]}"


def _file_reader(path: str, root: Path, walked: os.DirEntry[str] | None = None) -> FileReader:
    def read() -> bytes:
        return read_inside(root, path, walked=walked)  # never a file outside the mirror, never a FIFO

    return read


def _mirror_path(value: str) -> Path:
    if value.startswith("file://"):
        value = value[len("file://"):]
    elif "://" in value:
        raise ConfigError(
            f"mteb: {value!r} is a URL, but an MTEB mirror (or RECSYS_MTEB_URL) must be a local folder: "
            "clone https://github.com/embeddings-benchmark/results and pass its path, or set neither to read "
            "the policy's candidates through the GitHub API (or every model from the Hugging Face dataset).",
            option="mirror")
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise ConfigError(f"mteb: {value} {what}; pass a clone or mirror of embeddings-benchmark/results "
                          "(an unpacked folder).")
    return path


def _unreadable_mirror(root: Path, exc: OSError) -> SourceError:
    return SourceError(f"mteb: the mirror {root} cannot be read ({exc.strerror or exc}: {exc.filename}); check "
                       "that it is complete and readable (not being updated right now), then run again.",
                       source="mteb")
