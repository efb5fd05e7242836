"""The exception tree, its exit codes, and the SQLAlchemy translation table."""

from __future__ import annotations

import inspect

import pytest
import sqlalchemy.exc as sa_exc

import recommender_core.errors as errors
from recommender_core.errors import RecsysError
from recommender_core.store.errors import EXCEPTION_MAP, translate_exception


def _error_classes() -> list[type[RecsysError]]:
    return [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, RecsysError)]


def test_every_error_is_exported_and_documented_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    for cls in _error_classes():
        assert cls.__name__ in errors.__all__
        assert cls.__name__ in doc, f"{cls.__name__} missing from the tree in the module docstring"


@pytest.mark.parametrize(("cls", "code"), [
    (errors.RecsysError, 1), (errors.ConfigError, 1), (errors.PolicyError, 1), (errors.SourceError, 1),
    (errors.SourceHTTPError, 1), (errors.StoreError, 1), (errors.StoreUnavailableError, 1),
    (errors.LockHeldError, 75), (errors.LockLostError, 1), (errors.RouteTestFailed, 3), (errors.UsageError, 2),
    (errors.NoCandidateError, 1),
])
def test_exit_codes(cls: type[RecsysError], code: int) -> None:
    assert cls.exit_code == code
    assert code in (errors.EXIT_OK + 1, errors.EXIT_USAGE, errors.EXIT_ROUTE_TEST_FAILED, errors.EXIT_LOCKED)


def test_every_sqlalchemy_exception_is_mapped() -> None:
    """An upstream exception class SQLAlchemy adds must get an explicit entry (or a listed base)."""
    mapped = tuple(t for t, _ in EXCEPTION_MAP)
    for _, cls in inspect.getmembers(sa_exc, inspect.isclass):
        if issubclass(cls, sa_exc.SQLAlchemyError):
            assert issubclass(cls, mapped), cls
    # The generic fallback must be last, or it would shadow the specific ones.
    assert EXCEPTION_MAP[-1][0] is sa_exc.SQLAlchemyError


@pytest.mark.parametrize(("message", "expected"), [
    ("connection to server at \"db\" failed: Connection refused", errors.StoreUnavailableError),
    ("cannot execute INSERT in a read-only transaction", errors.StoreWriteError),
    ("permission denied for table benchmark_evidence", errors.StoreWriteError),
    ("could not extend file \"base/1/2\": No space left on device", errors.StoreWriteError),
    ("database or disk is full", errors.StoreWriteError),
    ("relation \"ingest_run\" does not exist", errors.StoreSchemaError),
    ("division by zero", errors.StoreError),
])
def test_operational_errors_are_classified(message: str, expected: type[RecsysError]) -> None:
    exc = sa_exc.OperationalError("SELECT 1", {}, Exception(message))
    translated = translate_exception(exc, "postgresql://u:***@h/d")
    assert type(translated) is expected
    assert "postgresql://u:***@h/d" in str(translated)


def test_non_sqlalchemy_exceptions_are_not_translated() -> None:
    assert translate_exception(ValueError("x"), "db") is None
