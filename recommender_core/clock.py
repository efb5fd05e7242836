"""Where "now" comes from: one injectable clock, so every answer that depends on the date can be tested
at any date.

Everything that reads the wall clock asks a ``Clock``: run timestamps, source staleness and ages,
telemetry windows and rollups, the retention cutoff, import cursors, the snapshot's ``generated_at``.
The store carries the clock (``Store(url, clock=...)``), so whatever works on a store shares it; the
default everywhere is ``SYSTEM_CLOCK``. Tests pass a ``FixedClock`` and move it.

Two rules keep the clock the single source of time:

- Timestamps written to the database come from this clock as bound parameters, never from the
  database server's ``now()``/``CURRENT_TIMESTAMP``: the server may sit on another host with another
  clock (and a test run under ``faketime`` moves this process's clock, not the server's).
- Timeouts, deadlines and durations use ``time.monotonic()``, not this clock: they measure intervals,
  and a wall clock that jumps (NTP, a test moving it) must not stretch or cut them.

    >>> from datetime import UTC, datetime, timedelta
    >>> clock = FixedClock(datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
    >>> clock.advance(timedelta(hours=2)).isoformat()
    '2026-11-26T05:00:00+00:00'
    >>> SYSTEM_CLOCK.now().tzinfo is UTC
    True
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "FixedClock", "SystemClock", "iso_utc"]


@runtime_checkable
class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise TypeError("naive datetimes are ambiguous; pass a timezone-aware value")
    return value.astimezone(UTC)


class FixedClock:
    """A clock that stands still until it is moved (``set``, ``advance``): for tests and replays."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> datetime:
        """Move the clock to ``at``; returns the new time."""
        self._at = _aware_utc(at)
        return self._at

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock by ``delta`` (which may be negative); returns the new time."""
        self._at += delta
        return self._at

    def __repr__(self) -> str:
        return f"FixedClock({self._at.isoformat()})"


SYSTEM_CLOCK: Final[Clock] = SystemClock()


def iso_utc(value: datetime) -> str:
    """The one way recsys writes a time in JSON and text: ISO 8601 in UTC ending in ``Z``.

    A naive value is taken as UTC (SQLite returns stored UTC times without their offset).

    >>> iso_utc(datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
    '2026-11-26T03:00:00Z'
    """
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")
