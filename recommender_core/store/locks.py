"""Job locks: a Postgres advisory lock, or a file lock beside an SQLite database.

A lock is taken before any source I/O and held until the run is recorded (DESIGN.md section 3).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from ..errors import LockHeldError

__all__ = ["advisory_key", "job_lock"]

_POLL_SECONDS = 0.2
# In-memory SQLite databases live inside one engine, so a process-local lock is the whole truth.
_MEMORY_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_MEMORY_LOCKS_GUARD = threading.Lock()


def advisory_key(job: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` (same on every machine and version)."""
    digest = hashlib.sha256(f"recsys:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _held(job: str) -> LockHeldError:
    return LockHeldError(
        f"Another '{job}' run holds its lock; this run did nothing. Wait for it to finish.", job=job
    )


@contextmanager
def _postgres_lock(engine: sa.Engine, job: str, wait_seconds: float) -> Iterator[None]:
    key = advisory_key(job)
    conn = engine.connect()
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if got:
                break
            if time.monotonic() >= deadline:
                raise _held(job)
            time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except sa.exc.DBAPIError:
                # The session is gone (killed or network loss); Postgres released the lock with it.
                pass
    finally:
        conn.close()


@contextmanager
def _file_lock(path: Path, job: str, wait_seconds: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                # flock locks belong to the open file description, so two opens conflict even
                # inside one process; the kernel drops the lock if the process dies.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _held(job) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _memory_lock(engine: sa.Engine, job: str, wait_seconds: float) -> Iterator[None]:
    with _MEMORY_LOCKS_GUARD:
        lock = _MEMORY_LOCKS.setdefault((id(engine), job), threading.Lock())
    acquired = lock.acquire(timeout=wait_seconds) if wait_seconds > 0 else lock.acquire(blocking=False)
    if not acquired:
        raise _held(job)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def job_lock(engine: sa.Engine, job: str, *, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the lock of ``job`` for the duration of the block, or raise LockHeldError.

    ``wait_seconds`` > 0 polls until the lock frees or the time is up.
    """
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, job, wait_seconds):
            yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _memory_lock(engine, job, wait_seconds):
            yield
        return
    with _file_lock(Path(f"{database}.{job}.lock"), job, wait_seconds):
        yield
