"""Job locks: a Postgres advisory lock, or a file lock beside an SQLite database.

A lock is taken before any source I/O and held until the run is recorded. Holding it at the start
is not enough: a Postgres session-level advisory lock vanishes with its session (a killed backend,
a network blip, a pooler), while the run's process goes on. So every write that commits a run's
results first calls ``JobLock.check`` on the write transaction's own connection, which raises
``LockLostError`` unless the lock is still held by this run (see docs/reliability.md).

``job_lock_is_held`` probes a lock without taking it, for ``recsys runs`` and the snapshot.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..errors import LockHeldError, LockLostError

__all__ = ["JobLock", "advisory_key", "job_lock", "job_lock_is_held"]

_POLL_SECONDS = 0.2
# A probe of a file lock holds a shared flock for two system calls; a run starting at that very
# moment retries for this long before it reports the lock as held by another run.
_PROBE_GRACE_SECONDS = 0.05
# In-memory SQLite databases live inside one engine, so a process-local lock is the whole truth.
_MEMORY_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_MEMORY_LOCKS_GUARD = threading.Lock()

# pg_locks shows a bigint advisory key as its high half (classid) and low half (objid), objsubid 1.
_ADVISORY_LOCK_ROWS = """
    SELECT pid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND classid = CAST(:classid AS oid) AND objid = CAST(:objid AS oid)
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def advisory_key(job: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` (same on every machine and version)."""
    digest = hashlib.sha256(f"recsys:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _key_halves(job: str) -> dict[str, int]:
    unsigned = advisory_key(job) & 0xFFFF_FFFF_FFFF_FFFF
    return {"classid": unsigned >> 32, "objid": unsigned & 0xFFFF_FFFF}


def _held(job: str) -> LockHeldError:
    return LockHeldError(
        f"Another '{job}' run holds its lock; this run did nothing. Wait for it to finish.", job=job
    )


def lock_lost(job: str, why: str) -> LockLostError:
    """The one-line error of a run that may no longer commit: ``why`` says what happened."""
    return LockLostError(
        f"The '{job}' run lost its job lock before committing ({why}); it wrote nothing. "
        "Run the job again.", job=job)


@dataclass(frozen=True)
class JobLock:
    """A job lock this process holds. ``check(conn)`` raises ``LockLostError`` unless it still does.

    Call it inside the transaction that commits a run's results, on that transaction's connection.
    """

    job: str
    _verify: Callable[[sa.Connection], str | None]

    def check(self, conn: sa.Connection) -> None:
        why = self._verify(conn)
        if why is not None:
            raise lock_lost(self.job, why)


def _postgres_verifier(job: str, backend_pid: int) -> Callable[[sa.Connection], str | None]:
    def verify(conn: sa.Connection) -> str | None:
        holders = conn.execute(sa.text(_ADVISORY_LOCK_ROWS), _key_halves(job)).scalars().all()
        if backend_pid in holders:
            return None
        return f"the database session {backend_pid} that held it ended"

    return verify


@contextmanager
def _postgres_lock(engine: sa.Engine, job: str, wait_seconds: float) -> Iterator[JobLock]:
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
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
        try:
            yield JobLock(job, _postgres_verifier(job, int(pid)))
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except sa.exc.DBAPIError:
                # The session is gone (killed or network loss); Postgres released the lock with it.
                pass
    finally:
        conn.close()


def _file_verifier(path: Path, fd: int) -> Callable[[sa.Connection], str | None]:
    # flock belongs to this process's open file, so it cannot be lost while the process lives; the
    # one way around it is the lock file being deleted or replaced, after which another run could
    # lock a new file at the same path.
    held = os.fstat(fd)

    def verify(conn: sa.Connection) -> str | None:
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return f"its lock file {path} was deleted"
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return f"its lock file {path} was replaced"
        return None

    return verify


@contextmanager
def _file_lock(path: Path, job: str, wait_seconds: float) -> Iterator[JobLock]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + max(wait_seconds, _PROBE_GRACE_SECONDS)
        while True:
            try:
                # flock locks belong to the open file description, so two opens conflict even
                # inside one process; the kernel drops the lock if the process dies.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _held(job) from None
                time.sleep(min(_POLL_SECONDS, remaining))
        try:
            yield JobLock(job, _file_verifier(path, fd))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _memory_lock_of(engine: sa.Engine, job: str) -> threading.Lock:
    with _MEMORY_LOCKS_GUARD:
        return _MEMORY_LOCKS.setdefault((id(engine), job), threading.Lock())


@contextmanager
def _memory_lock(engine: sa.Engine, job: str, wait_seconds: float) -> Iterator[JobLock]:
    lock = _memory_lock_of(engine, job)
    acquired = lock.acquire(timeout=wait_seconds) if wait_seconds > 0 else lock.acquire(blocking=False)
    if not acquired:
        raise _held(job)
    try:
        # One engine, one process: the lock lives exactly as long as the database.
        yield JobLock(job, lambda conn: None)
    finally:
        lock.release()


def _lock_file(engine: sa.Engine, job: str) -> Path | None:
    """The file lock of ``job`` beside an SQLite database file; None for an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.{job}.lock")


@contextmanager
def job_lock(engine: sa.Engine, job: str, *, wait_seconds: float = 0.0) -> Iterator[JobLock]:
    """Hold the lock of ``job`` for the duration of the block, or raise LockHeldError.

    ``wait_seconds`` > 0 polls until the lock frees or the time is up.
    """
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, job, wait_seconds) as held:
            yield held
        return
    path = _lock_file(engine, job)
    if path is None:
        with _memory_lock(engine, job, wait_seconds) as held:
            yield held
        return
    with _file_lock(path, job, wait_seconds) as held:
        yield held


def job_lock_is_held(engine: sa.Engine, job: str) -> bool:
    """Whether some run holds ``job``'s lock now, found without taking it (or only for an instant).

    Postgres reads ``pg_locks`` (no lock is taken, so a read-only role may ask). A file lock is
    probed with a non-blocking shared ``flock`` released at once; a missing lock file means no run
    ever held it here.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(_ADVISORY_LOCK_ROWS), _key_halves(job)).first())
    path = _lock_file(engine, job)
    if path is None:
        return _memory_lock_of(engine, job).locked()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # cannot tell: trust the recorded status
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
