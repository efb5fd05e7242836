"""The store: one engine per database URL, sessions, migrations and job locks."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import StoreError, StoreSchemaError, StoreWriteError
from ..redact import redact_url
from . import locks
from .errors import translate_db_errors
from .revision import MIGRATIONS_DIR as MIGRATIONS_FOLDER
from .revision import head_revision

if TYPE_CHECKING:
    from sqlmodel import Session

    from ..config import Settings

__all__ = ["MIGRATIONS_DIR", "Store", "UpgradeResult", "head_revision"]

MIGRATIONS_DIR = Path(MIGRATIONS_FOLDER)

# Only the migration job may wait for the lock; everything else fails fast (exit 75).
MIGRATION_LOCK = "db-upgrade"


@dataclass(frozen=True)
class UpgradeResult:
    """What ``Store.upgrade`` did."""

    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        return self.from_revision != self.to_revision


def _sqlite_on_connect(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    try:  # the telemetry rollups bucket latencies in SQL; SQLite builds without math functions get them here
        cursor.execute("SELECT ln(1.0), ceil(0.5)")
    except sqlite3.OperationalError:  # no such function
        dbapi_conn.create_function("ln", 1, math.log, deterministic=True)  # type: ignore[attr-defined]
        dbapi_conn.create_function("ceil", 1, math.ceil, deterministic=True)  # type: ignore[attr-defined]
    cursor.close()


class Store:
    """A recsys database, and the clock that dates what is written to it and measures ages from it.

    ``clock`` is the one source of "now" for everything that works on this store (run timestamps,
    staleness, telemetry windows, retention): tests pass a ``FixedClock``.

    >>> store = Store("sqlite://")          # in-memory, for tests
    >>> store.upgrade().to_revision is not None
    True
    """

    def __init__(self, url: str, *, engine: sa.Engine | None = None, auto_migrate: bool = False,
                 clock: Clock = SYSTEM_CLOCK, create_folder: bool = False) -> None:
        from ..config import normalise_database_url

        self.url = normalise_database_url(url)
        self.display_url = redact_url(url)
        self.auto_migrate = auto_migrate
        self.clock = clock
        # Only the default location is created: an explicit SQLite path in a folder that does not
        # exist is far more often a typo than a wish, and silently creating it hides the mistake.
        self.create_folder = create_folder
        self._engine = engine
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> Store:
        """Open the configured store; the embedded SQLite default migrates itself on first use."""
        return cls(settings.configured_database_url, auto_migrate=settings.resolved_database_url.startswith("sqlite"),
                   clock=clock, create_folder=settings.database_url is None)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _create_engine(self) -> sa.Engine:
        with translate_db_errors(self.display_url):
            url = sa.make_url(self.url)
            if url.get_backend_name() == "sqlite":
                if self.sqlite_path is not None:
                    folder = self.sqlite_path.parent
                    if not folder.is_dir() and not self.create_folder:
                        raise StoreError(f"The folder {folder} of the database at {self.display_url} does not "
                                         "exist. Create it first, or choose another database URL (only the "
                                         "default location is created).")
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise StoreWriteError(f"Cannot create the folder {folder} for the database at "
                                              f"{self.display_url}: {exc.strerror}. Create it, or choose "
                                              "another database URL.") from None
                    engine = sa.create_engine(url, connect_args={"timeout": 30})
                else:
                    # One shared connection, so every session sees the same in-memory database.
                    engine = sa.create_engine(
                        url, connect_args={"check_same_thread": False}, poolclass=sa.pool.StaticPool
                    )
                sa.event.listen(engine, "connect", _sqlite_on_connect)
                return engine
            return sa.create_engine(
                url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 5, "application_name": "recsys"},
            )

    @property
    def sqlite_path(self) -> Path | None:
        """The file of an embedded SQLite store; None for Postgres and in-memory SQLite."""
        url = sa.make_url(self.url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database).expanduser()

    def require_writable(self) -> None:
        """Raise StoreWriteError, naming the read-only place, when an SQLite store cannot be written.

        Every write job calls it before it takes its lock, whose file lives beside the database, so a
        store on a read-only mount fails in one line that says so. Read commands never call it: they
        work on a read-only store. On Postgres the server decides, and its refusal is translated.
        """
        path = self.sqlite_path
        if path is None:
            return
        for place, what in ((path.parent, "folder"), (path, "file")):
            if place.exists() and not os.access(place, os.W_OK):
                read_only_fs = bool(os.statvfs(place).f_flag & os.ST_RDONLY)
                why = "is on a read-only file system" if read_only_fs else "is not writable by this user"
                raise StoreWriteError(
                    f"The database at {self.display_url} is in a read-only location: its {what} {place} {why}. "
                    "Write commands (ingest, score, db upgrade, telemetry prune) need it writable; read "
                    "commands (runs, evidence, snapshot, route, serve) work as they are.")

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    # --- sessions -------------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        Database errors leave it as StoreError subclasses.
        """
        from sqlmodel import Session  # here, not at import: read paths such as route never need the ORM

        self.ensure_ready()
        with translate_db_errors(self.display_url):
            with Session(self.engine, expire_on_commit=False) as session:
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A raw connection in a transaction (for bulk paths such as COPY)."""
        self.ensure_ready()
        with translate_db_errors(self.display_url):
            with self.engine.begin() as conn:
                yield conn

    # --- migrations -----------------------------------------------------------------------------

    def head_revision(self) -> str:
        """The newest migration's id (``head_revision``): what ``current_revision`` must equal."""
        return head_revision()

    def current_revision(self) -> str | None:
        with translate_db_errors(self.display_url):
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def upgrade(self, *, wait_seconds: float = 60.0) -> UpgradeResult:
        """Apply every pending migration under the migration lock; idempotent."""
        from alembic import command
        from alembic.config import Config

        self.require_writable()
        with translate_db_errors(self.display_url):
            with locks.job_lock(self.engine, MIGRATION_LOCK, wait_seconds=wait_seconds):
                before = self.current_revision()
                with self.engine.begin() as conn:
                    config = Config()
                    config.set_main_option("script_location", str(MIGRATIONS_DIR))
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                after = self.current_revision()
        self._ready = True
        assert after is not None  # noqa: S101 - upgrade to head always stamps
        return UpgradeResult(from_revision=before, to_revision=after)

    def ensure_ready(self) -> None:
        """Require the schema at head; the embedded default migrates itself when it is not.

        A store already at head is used as it is, without the migration lock, so read commands work on
        a store in a read-only location. The check is one comparison of the stored schema version with
        the newest migration's id; Alembic is imported only when there is something to apply.
        """
        if self._ready:
            return
        current, head = self.current_revision(), self.head_revision()
        if current != head and self.auto_migrate:
            self.upgrade()
            return
        if current != head:
            state = "has no recsys schema" if current is None else f"is at migration {current}, not {head}"
            raise StoreSchemaError(f"The database at {self.display_url} {state}. Run 'recsys db upgrade'.")
        self._ready = True

    # --- locks and health -----------------------------------------------------------------------

    @contextmanager
    def job_lock(self, job: str, *, wait_seconds: float = 0.0) -> Iterator[locks.JobLock]:
        """Hold ``job``'s lock for the block; raises LockHeldError (exit 75) if another run has it.

        Every write job holds one, so a store in a read-only location is refused here, before any I/O.
        Writes that commit the run's results call ``check`` on the yielded lock inside their
        transaction, so a run that lost its lock commits nothing (``LockLostError``).
        """
        self.require_writable()
        with translate_db_errors(self.display_url):
            with locks.job_lock(self.engine, job, wait_seconds=wait_seconds) as held:
                yield held

    def job_lock_is_held(self, job: str) -> bool:
        """Whether a run holds ``job``'s lock right now; probes without waiting and without holding it."""
        with translate_db_errors(self.display_url):
            return locks.job_lock_is_held(self.engine, job)

    def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        with translate_db_errors(self.display_url):
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
