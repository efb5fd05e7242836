"""Translate SQLAlchemy/driver exceptions into the RecsysError tree at the store boundary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy.exc as sa_exc

from ..errors import ConfigError, StoreError, StoreSchemaError, StoreUnavailableError, StoreWriteError
from ..redact import first_line

__all__ = ["EXCEPTION_MAP", "translate_db_errors", "translate_exception"]

_READ_ONLY_HINTS = ("read-only", "read only", "readonly", "permission denied", "insufficient privilege")
_DISK_HINTS = ("disk full", "no space left", "database or disk is full", "could not extend file")
_SCHEMA_HINTS = ("no such table", "does not exist", "undefinedtable", "no such column")
_CONNECT_HINTS = (
    "connection", "could not connect", "unable to open database", "server closed", "terminating",
    "timeout expired", "connect", "broken pipe", "network",
)


def _first_line(exc: BaseException) -> str:
    # The driver's own error when SQLAlchemy wrapped one (its message names no SQL statement).
    return first_line(getattr(exc, "orig", None) or exc)


# Postgres SQLSTATE classes (locale-independent, unlike the message text the hints read).
_DISK_SQLSTATES = ("53100",)  # disk_full
_READ_ONLY_SQLSTATES = ("25006", "42501")  # read_only_sql_transaction, insufficient_privilege


def _classify_dbapi(exc: sa_exc.DBAPIError, where: str) -> StoreError:
    reason = _first_line(exc)
    lowered = reason.lower()
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    if sqlstate in _DISK_SQLSTATES or any(h in lowered for h in _DISK_HINTS):
        return StoreWriteError(f"The database at {where} is out of space: {reason}. Free space and re-run.")
    if sqlstate in _READ_ONLY_SQLSTATES or any(h in lowered for h in _READ_ONLY_HINTS):
        if where.startswith("sqlite"):
            return StoreWriteError(f"The database at {where} is read-only: {reason}. Make the file and its "
                                   "folder writable; read commands (runs, evidence, snapshot, route, serve) "
                                   "work as they are.")
        return StoreWriteError(
            f"The database at {where} refused a write: {reason}. Use a role with write access."
        )
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered
                               and "relation" not in lowered and "table" not in lowered):
        return StoreUnavailableError(
            f"The database at {where} does not exist ({reason}). Create it, then run `recsys db upgrade`."
        )
    if any(h in lowered for h in _SCHEMA_HINTS):
        return StoreSchemaError(
            f"The database at {where} is missing recsys tables ({reason}). Run 'recsys db upgrade'."
        )
    if exc.connection_invalidated or any(h in lowered for h in _CONNECT_HINTS):
        return StoreUnavailableError(
            f"Cannot reach the database at {where}: {reason}. Check that it is running and the URL is right."
        )
    return StoreError(f"Database error at {where}: {reason}.")


def _integrity(exc: sa_exc.SQLAlchemyError, where: str) -> StoreError:
    return StoreWriteError(f"The database at {where} rejected a write: {_first_line(exc)}.")


def _dbapi(exc: sa_exc.SQLAlchemyError, where: str) -> StoreError:
    assert isinstance(exc, sa_exc.DBAPIError)  # noqa: S101 - narrowed by the map's keys
    return _classify_dbapi(exc, where)


def _argument(exc: sa_exc.SQLAlchemyError, where: str) -> ConfigError:
    return ConfigError(f"Invalid database URL {where}: {_first_line(exc)}.")


def _generic(exc: sa_exc.SQLAlchemyError, where: str) -> StoreError:
    return StoreError(f"Database error at {where}: {_first_line(exc)}.")


# Most specific first; a test asserts every exception class SQLAlchemy defines has an entry
# (directly or via a listed base), so an upstream addition cannot slip through unmapped.
EXCEPTION_MAP: tuple[tuple[type[sa_exc.SQLAlchemyError], Callable[[sa_exc.SQLAlchemyError, str],
                                                                     StoreError | ConfigError]], ...] = (
    (sa_exc.IntegrityError, _integrity),
    (sa_exc.OperationalError, _dbapi),
    (sa_exc.ProgrammingError, _dbapi),
    (sa_exc.InternalError, _dbapi),
    (sa_exc.DataError, _dbapi),
    (sa_exc.NotSupportedError, _dbapi),
    (sa_exc.InterfaceError, _dbapi),
    (sa_exc.DatabaseError, _dbapi),
    (sa_exc.DBAPIError, _dbapi),
    (sa_exc.ArgumentError, _argument),
    (sa_exc.NoSuchModuleError, _argument),
    (sa_exc.TimeoutError, _generic),
    (sa_exc.ResourceClosedError, _generic),
    (sa_exc.InvalidRequestError, _generic),
    (sa_exc.SQLAlchemyError, _generic),
)


def translate_exception(exc: BaseException, where: str) -> StoreError | ConfigError | None:
    """The RecsysError for a SQLAlchemy exception, or None if ``exc`` is not one."""
    if not isinstance(exc, sa_exc.SQLAlchemyError):
        return None
    for exc_type, handler in EXCEPTION_MAP:
        if isinstance(exc, exc_type):
            return handler(exc, where)
    return _generic(exc, where)  # pragma: no cover - SQLAlchemyError is the last entry


@contextmanager
def translate_db_errors(where: str) -> Iterator[None]:
    """Re-raise SQLAlchemy errors as StoreError (``where`` is a redacted URL)."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        if not isinstance(exc, sa_exc.DBAPIError) and isinstance(orig, (TypeError, ValueError)):
            # A bad value bound by our own code (e.g. a naive datetime) is a bug, not a store error.
            raise orig from exc
        translated = translate_exception(exc, where)
        assert translated is not None  # noqa: S101 - every SQLAlchemyError maps
        raise translated from exc
