"""The one exception tree of recsys.

Every error the library raises on purpose derives from ``RecsysError``. Each class carries the
CLI exit code it maps to (DESIGN.md section 3), so the CLI keeps a single handler::

    RecsysError                      exit 1
    ├── ConfigError                  exit 1   bad setting, bad or missing policy file
    │   └── PolicyError                       names the file, the line and the field
    ├── SourceError                  exit 1   an upstream source or mirror failed
    │   ├── SourceTimeout
    │   ├── SourceHTTPError                   carries status_code and url
    │   └── SourceSchemaError                 the data is not in the expected format
    │       └── RejectedRow                   one row broke a validation rule: rejected and counted
    ├── StoreError                   exit 1   the database failed
    │   ├── StoreUnavailableError             cannot connect
    │   ├── StoreSchemaError                  schema not at the expected migration
    │   └── StoreWriteError                   a write was refused (read-only, disk full, ...)
    ├── LockHeldError                exit 75  another run of the same job holds its lock
    ├── LockLostError                exit 1   a run lost its job lock before committing; it wrote nothing
    ├── ScoringError                 exit 1
    ├── RoutingError                 exit 1
    │   └── NoCandidateError                  no candidate qualifies for the task
    ├── RouteTestFailed              exit 3   route-test expectations failed
    └── UsageError                   exit 2   arguments that parse but make no sense together

Programmer misuse raises ``TypeError``/``ValueError``/``RuntimeError``, never ``RecsysError``.
"""

from __future__ import annotations

__all__ = [
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_ROUTE_TEST_FAILED",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "ConfigError",
    "LockHeldError",
    "LockLostError",
    "NoCandidateError",
    "PolicyError",
    "RecsysError",
    "RejectedRow",
    "RouteTestFailed",
    "RoutingError",
    "ScoringError",
    "SourceError",
    "SourceHTTPError",
    "SourceSchemaError",
    "SourceTimeout",
    "StoreError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "StoreWriteError",
    "UsageError",
]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_ROUTE_TEST_FAILED = 3
# EX_TEMPFAIL from sysexits.h: "try again later", what a CronJob should see when a run overlaps.
EXIT_LOCKED = 75


class RecsysError(Exception):
    """Root of every error recsys raises on purpose."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The setting the remedy is about (``mirror``, or a source option's name such as
        # ``all_models``): the library knows no CLI flags, so a front end names its own (cli/_base.py).
        self.option = option

    def __str__(self) -> str:
        return self.message


class ConfigError(RecsysError):
    """A setting or configuration file is invalid."""


class PolicyError(ConfigError):
    """A policy (or route-test case) file is invalid; names the file, line and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.field = field


class SourceError(RecsysError):
    """An upstream source, or a local mirror of one, could not be read."""

    def __init__(self, message: str, *, source: str | None = None, url: str | None = None,
                 option: str | None = None) -> None:
        super().__init__(message, option=option)
        self.source = source
        self.url = url


class SourceTimeout(SourceError):
    """The source did not answer in time."""


class SourceHTTPError(SourceError):
    """The source answered with an HTTP error status."""

    def __init__(self, message: str, *, source: str | None = None, url: str | None = None,
                 status_code: int | None = None, option: str | None = None) -> None:
        super().__init__(message, source=source, url=url, option=option)
        self.status_code = status_code


class SourceSchemaError(SourceError):
    """The source's data is not in a format recsys understands."""


class RejectedRow(SourceSchemaError):
    """One row (an event, a record) broke a validation rule of its edge. The run goes on: the row is
    not stored and is counted under ``reason``, which names the field and the rule but never the value
    (so counts group, and hostile text is not echoed)."""

    def __init__(self, reason: str, *, field: str | None = None, source: str | None = None) -> None:
        super().__init__(reason, source=source)
        self.reason = reason
        self.field = field


class StoreError(RecsysError):
    """The store (database) failed."""


class StoreUnavailableError(StoreError):
    """The database could not be reached."""


class StoreSchemaError(StoreError):
    """The database schema is missing or at an unexpected migration."""


class StoreWriteError(StoreError):
    """The database refused a write (read-only role, disk full, constraint)."""


class LockHeldError(RecsysError):
    """Another run of the same job holds its lock."""

    exit_code = EXIT_LOCKED

    def __init__(self, message: str, *, job: str) -> None:
        super().__init__(message)
        self.job = job


class LockLostError(RecsysError):
    """A run lost its job lock before its results committed (its lock session ended, or a newer run
    took the job over); the write was refused, so nothing of this run was stored."""

    def __init__(self, message: str, *, job: str) -> None:
        super().__init__(message)
        self.job = job


class ScoringError(RecsysError):
    """A scoring run could not be computed."""


class RoutingError(RecsysError):
    """A route could not be decided."""


class NoCandidateError(RoutingError):
    """No candidate qualifies for the task under the given constraints."""

    def __init__(self, message: str, *, task: str, excluded: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.task = task
        self.excluded = excluded


class RouteTestFailed(RecsysError):
    """One or more route-test expectations did not hold."""

    exit_code = EXIT_ROUTE_TEST_FAILED


class UsageError(RecsysError):
    """Arguments that parse but cannot be used together."""

    exit_code = EXIT_USAGE
