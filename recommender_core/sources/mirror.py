"""Mirror isolation: a local mirror is read inside its own root, and nowhere else.

A mirror is a folder the operator points recsys at, but its contents come from elsewhere (a clone,
an rsync, an unpacked archive). A symlink in it must not make an ingest read a file outside it, or
walk the host's file system. The rules:

- every file is read through ``read_inside``: its real path (all symlinks resolved) must lie under
  the mirror root's real path, and it must be a regular file (opened without blocking, so a FIFO is
  refused, not waited on). A symlink that stays inside the root is followed; one that leads out is
  refused with ``OutsideMirror``, which the source counts as a rejected row. A plain file met by a
  walker that stayed inside (below) is inside by construction and is not resolved again;
- a directory is entered only when ``inside`` says its real path lies under the root: a model folder
  symlinked to ``/`` (or to any folder outside) is skipped and counted, never walked. The walkers
  never follow a symlinked directory below the model folders at all.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["OutsideMirror", "inside", "read_inside", "real_root"]


class OutsideMirror(OSError):
    """A path in a mirror resolves outside the mirror root, or is not a regular file; ``reason`` is
    the rejection reason the source counts it under."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``path``, all symlinks resolved, lies under ``root`` (or is it)."""
    base = _real(root)
    real = _real(path)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def read_inside(root: str | os.PathLike[str], path: str | os.PathLike[str], *,
                walked: os.DirEntry[str] | None = None) -> bytes:
    """The bytes of the regular file ``path`` when it resolves under ``root``; ``OutsideMirror`` else.

    ``walked`` is the file's entry from a walker that entered only directories ``inside`` the root and
    never followed a symlinked directory below them: when that entry is no symlink itself, the file is
    inside by construction and is opened without resolving its path again (resolving every component
    of every file cost a quarter of an MTEB mirror ingest); ``O_NOFOLLOW`` still refuses a symlink
    swapped in meanwhile.
    """
    if walked is not None and not walked.is_symlink():
        real = os.fspath(path)
    else:
        real = _real(path)
        if not os.path.lexists(real):  # a dangling link: unreadable, wherever it pointed
            raise FileNotFoundError(2, "No such file or directory", str(path))
        if not inside(root, path):
            raise OutsideMirror(f"{path} leads outside the mirror {root}", reason="outside_mirror")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(real, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutsideMirror(f"{path} is not a regular file", reason="not_a_regular_file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def real_root(path: Path) -> Path:
    """The mirror root as the walkers compare against it (all symlinks of the root itself resolved)."""
    return Path(_real(path))
