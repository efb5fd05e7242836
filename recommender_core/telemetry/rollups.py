"""The one telemetry aggregation: hourly mergeable rollups per (model, task), caught up from dirty hours.

``score``, ``snapshot`` and ``serve`` read telemetry only from ``telemetry_rollup``, never the raw
events: O(hours x models) rows per model (fewer once days are merged), O(hours x models x tasks) per task.

How the rollups stay current
  A trigger on ``telemetry_event`` (migration 0004) marks the UTC hour of every inserted event in
  ``telemetry_rollup_dirty``, in the inserting transaction, so no insert path can forget it: the
  callback's writer, the SpendLogs import, a bulk ``COPY``. ``catch_up_rollups`` recomputes each
  marked hour from that hour's raw events (two grouped queries over the ``started_at`` index) and
  removes the mark in the same transaction, holding the mark's row lock, so an event committed
  meanwhile marks the hour again instead of being lost. Recomputing a whole hour is idempotent: a
  late event for a past hour, a gap of days, a re-run, all give what a full rebuild would. Every
  read (``read_window``) catches up first, so a read pays only for the hours written since the last.

What a rollup holds (per hour, model, task; plus one row per hour and model, ``all_tasks``, with
every task merged, so per-model reads touch O(hours x models) rows whatever the number of tasks;
plus one per day and model, ``span_hours`` 24, merged from that day's hour rows, so a 7-day window
reads at most 23 hour rows and 8 day rows per model: bounded, whatever the traffic)
  - ``model``: the LiteLLM ``model_group``, else the model name; ``task`` None for untagged calls.
  - ``calls`` counts successes and failures; ``errors`` the failures; ``error_rate = errors / calls``.
  - latency: a ``LatencySketch`` (log buckets, percentiles within 1% of the exact ones, see
    ``telemetry.sketch``) of the successful calls that were not cache hits and carry a latency
    (cache hits are excluded from latency only).
  - cost, the one definition: ``cost_per_1k_tokens = 1000 x sum(cost) / sum(prompt + completion
    tokens)`` over the *priced calls*, every call (success or failure, cache hits included) that
    reported a cost and at least one token: the price actually paid per token. ``mean_cost_per_call
    = sum(cost) / calls that reported a cost``.

Windows are whole UTC hours: a window of ``h`` hours may hold up to an hour more than ``h``, never
less (sums are exact; only latency percentiles are sketched). Retention: ``retention.py``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from ..errors import StoreWriteError
from ..store import Store
from ..store.tables import TelemetryEvent, TelemetryRollup, TelemetryRollupDirty
from .sketch import LN_GAMMA, LatencySketch, merge_json_texts
from .validate import stored_row_rules

__all__ = [
    "CatchUpResult",
    "ModelTelemetry",
    "TelemetryAggregate",
    "WindowTelemetry",
    "catch_up_rollups",
    "hour_floor",
    "mark_hours_dirty",
    "read_window",
    "telemetry_by_model",
]

log = logging.getLogger("recsys.telemetry")

_HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour that holds ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _epoch_hour(moment: datetime) -> int:
    return int((hour_floor(moment) - _EPOCH) // _HOUR)


def _hour_start(epoch_hour: int) -> datetime:
    return _EPOCH + epoch_hour * _HOUR


# --- the aggregate --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TelemetryAggregate:
    """Mergeable telemetry of any set of (hour, model, task) rollups; ``+`` merges two."""

    calls: int = 0
    errors: int = 0
    cost_calls: int = 0
    cost_total: float = 0.0
    priced_calls: int = 0
    priced_cost: float = 0.0
    priced_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)

    @classmethod
    def merge_all(cls, parts: Iterable[TelemetryAggregate]) -> TelemetryAggregate:
        items = list(parts)
        return cls(
            calls=sum(p.calls for p in items), errors=sum(p.errors for p in items),
            cost_calls=sum(p.cost_calls for p in items), cost_total=sum(p.cost_total for p in items),
            priced_calls=sum(p.priced_calls for p in items), priced_cost=sum(p.priced_cost for p in items),
            priced_tokens=sum(p.priced_tokens for p in items), prompt_tokens=sum(p.prompt_tokens for p in items),
            completion_tokens=sum(p.completion_tokens for p in items),
            latency=LatencySketch.merge_all(p.latency for p in items),
        )

    def __add__(self, other: TelemetryAggregate) -> TelemetryAggregate:
        return TelemetryAggregate.merge_all((self, other))

    @property
    def successes(self) -> int:
        return self.calls - self.errors

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def latency_samples(self) -> int:
        return self.latency.count

    def latency_percentile(self, q: float) -> float | None:
        """Latency percentile ``q`` (0-100) in ms, within 1% of the exact one; None without samples."""
        return self.latency.percentile(q)

    @property
    def cost_per_1k_tokens(self) -> float | None:
        """The one cost definition: 1000 x cost / tokens over the priced calls (see the module doc)."""
        return 1000.0 * self.priced_cost / self.priced_tokens if self.priced_tokens > 0 else None

    @property
    def mean_cost_per_call(self) -> float | None:
        return self.cost_total / self.cost_calls if self.cost_calls else None


@dataclass(frozen=True)
class WindowTelemetry:
    """The rollups of a window of whole hours: per model (every task merged, with the latency sketch)
    and, when read with ``tasks=True``, per (model, task)."""

    first_hour: datetime
    by_model: Mapping[str, TelemetryAggregate]
    by_model_task: Mapping[tuple[str, str | None], TelemetryAggregate] = field(default_factory=dict)
    rows_read: int = 0


@dataclass(frozen=True)
class CatchUpResult:
    """What one ``catch_up_rollups`` did."""

    hours: int  # hours recomputed
    rows: int  # rollup rows written


# --- catch-up -------------------------------------------------------------------------------------

_NAME = sa.func.coalesce(col(TelemetryEvent.model_group), col(TelemetryEvent.model))
_TOKENS = sa.func.coalesce(col(TelemetryEvent.prompt_tokens), 0) + sa.func.coalesce(
    col(TelemetryEvent.completion_tokens), 0)
_PRICED = sa.and_(col(TelemetryEvent.cost).is_not(None), _TOKENS > 0)


def _sum_if(condition: sa.ColumnElement[bool], value: Any = 1) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, value), else_=0)), 0)


_COUNTS = sa.select(
    _NAME, col(TelemetryEvent.task), sa.func.count(),
    _sum_if(col(TelemetryEvent.status) != "success"),
    _sum_if(col(TelemetryEvent.cost).is_not(None)),
    sa.func.coalesce(sa.func.sum(col(TelemetryEvent.cost)), 0.0),
    _sum_if(_PRICED), _sum_if(_PRICED, col(TelemetryEvent.cost)), _sum_if(_PRICED, _TOKENS),
    sa.func.coalesce(sa.func.sum(col(TelemetryEvent.prompt_tokens)), 0),
    sa.func.coalesce(sa.func.sum(col(TelemetryEvent.completion_tokens)), 0),
)
# The sketch's bucket of each latency, computed by the database (``sketch.bucket_of``); NULL is the
# zero bucket. Constants inlined, not bound: Postgres must see the same expression in GROUP BY.
_BUCKET = sa.case((col(TelemetryEvent.latency_ms) > sa.literal_column("0"),
                   sa.func.ceil(sa.func.ln(col(TelemetryEvent.latency_ms)) / sa.literal_column(repr(LN_GAMMA)))),
                  else_=sa.null())
_TIMED = sa.and_(col(TelemetryEvent.status) == "success", col(TelemetryEvent.cache_hit).is_(False),
                 col(TelemetryEvent.latency_ms).is_not(None))
_BUCKETS = sa.select(_NAME, col(TelemetryEvent.task), _BUCKET, sa.func.count()).where(_TIMED)
# Stored rows outside the telemetry rules never enter a rollup (see stored_row_rules for why).
_STORED_OK = stored_row_rules()

_ROLLUP = TelemetryRollup.__table__  # type: ignore[attr-defined]
_DIRTY = TelemetryRollupDirty.__table__  # type: ignore[attr-defined]


def _row(start: datetime, model: str, task: str | None, agg: TelemetryAggregate, *, all_tasks: bool,
         computed_at: datetime, span_hours: int = 1) -> dict[str, Any]:
    return {"hour_start": start, "span_hours": span_hours, "model": model, "task": task, "all_tasks": all_tasks,
            "calls": agg.calls,
            "errors": agg.errors, "cost_calls": agg.cost_calls, "cost_total": agg.cost_total,
            "priced_calls": agg.priced_calls, "priced_cost": agg.priced_cost, "priced_tokens": agg.priced_tokens,
            "prompt_tokens": agg.prompt_tokens, "completion_tokens": agg.completion_tokens,
            "latency_samples": agg.latency.count, "latency_sketch": agg.latency.to_json(), "computed_at": computed_at}


def _recompute_hour(store: Store, epoch_hour: int, computed_at: datetime) -> int | None:
    """Rebuild one hour's rollups from its raw events; None when another catch-up already did."""
    start = _hour_start(epoch_hour)
    in_hour = (col(TelemetryEvent.started_at) >= start, col(TelemetryEvent.started_at) < start + _HOUR, _STORED_OK)
    with store.connect() as conn:
        # A write first: it takes the mark's row lock on Postgres and the write lock on SQLite, so
        # two catch-ups never rebuild one hour at once, and an insert into this hour that commits
        # after our read below marks the hour again once we commit.
        held = conn.execute(sa.update(_DIRTY).where(_DIRTY.c.hour == epoch_hour)
                            .values(version=_DIRTY.c.version)).rowcount
        if not held:
            return None
        groups = conn.execute(_COUNTS.where(*in_hour).group_by(_NAME, col(TelemetryEvent.task))).all()
        buckets: dict[tuple[str, str | None], dict[int, int]] = defaultdict(dict)
        zeros: dict[tuple[str, str | None], int] = defaultdict(int)
        for name, task, bucket, count in conn.execute(
                _BUCKETS.where(*in_hour).group_by(_NAME, col(TelemetryEvent.task), _BUCKET)):
            if bucket is None:
                zeros[(name, task)] += int(count)
            else:
                buckets[(name, task)][int(bucket)] = int(count)
        rows = []
        per_model: dict[str, list[TelemetryAggregate]] = defaultdict(list)
        for name, task, calls, errors, cost_calls, cost_total, priced, p_cost, p_tokens, prompt, completion in groups:
            aggregate = TelemetryAggregate(
                calls=int(calls), errors=int(errors), cost_calls=int(cost_calls), cost_total=float(cost_total),
                priced_calls=int(priced), priced_cost=float(p_cost), priced_tokens=int(p_tokens),
                prompt_tokens=int(prompt), completion_tokens=int(completion),
                latency=LatencySketch(buckets=buckets.get((name, task), {}), zeros=zeros.get((name, task), 0)))
            per_model[name].append(aggregate)
            rows.append(_row(start, name, task, aggregate, all_tasks=False, computed_at=computed_at))
        # One more row per model with every task merged: what score and the snapshot's model list read.
        rows += [_row(start, name, None, TelemetryAggregate.merge_all(parts), all_tasks=True, computed_at=computed_at)
                 for name, parts in per_model.items()]
        conn.execute(sa.delete(_ROLLUP).where(_ROLLUP.c.hour_start == start, _ROLLUP.c.span_hours == 1))
        if rows:
            conn.execute(sa.insert(_ROLLUP), rows)
        conn.execute(sa.delete(_DIRTY).where(_DIRTY.c.hour == epoch_hour))
        _mark(conn, [_day_key(epoch_hour // 24)])  # its day's row is rebuilt from the hour rows next
    return len(rows)


def _day_key(epoch_day: int) -> int:
    """Days share the dirty table with hours, as negative keys (-1 is day 0)."""
    return -epoch_day - 1


def _recompute_day(store: Store, epoch_day: int, computed_at: datetime) -> int | None:
    """Rebuild one day's per-model rows (``span_hours`` 24) by merging its hour rows (never raw events)."""
    start = _hour_start(epoch_day * 24)
    r = _ROLLUP.c
    with store.connect() as conn:
        held = conn.execute(sa.update(_DIRTY).where(_DIRTY.c.hour == _day_key(epoch_day))
                            .values(version=_DIRTY.c.version)).rowcount
        if not held:
            return None
        hours = (r.hour_start >= start, r.hour_start < start + 24 * _HOUR, r.span_hours == 1)
        merged, _rows = _read(conn, hours, all_tasks=True, sketches=True)
        conn.execute(sa.delete(_ROLLUP).where(r.hour_start == start, r.span_hours == 24))
        rows = [_row(start, model, None, agg, all_tasks=True, computed_at=computed_at, span_hours=24)
                for (model, _task), agg in merged.items()]
        if rows:
            conn.execute(sa.insert(_ROLLUP), rows)
        conn.execute(sa.delete(_DIRTY).where(_DIRTY.c.hour == _day_key(epoch_day)))
    return len(rows)


def catch_up_rollups(store: Store) -> CatchUpResult:
    """Recompute every hour marked dirty (idempotent; cheap when nothing was written since the last one)."""
    with store.connect() as conn:
        dirty = conn.execute(sa.select(_DIRTY.c.hour).order_by(_DIRTY.c.hour)).scalars().all()
    if not dirty:
        return CatchUpResult(hours=0, rows=0)
    computed_at = store.clock.now()
    hours = rows = 0
    for epoch_hour in (int(h) for h in dirty if h >= 0):
        written = _recompute_hour(store, epoch_hour, computed_at)
        if written is not None:
            hours += 1
            rows += written
    with store.connect() as conn:  # the days of those hours, and of any earlier catch-up cut short
        days = conn.execute(sa.select(_DIRTY.c.hour).where(_DIRTY.c.hour < 0)).scalars().all()
    for key in days:
        written = _recompute_day(store, -int(key) - 1, computed_at)
        rows += written or 0
    return CatchUpResult(hours=hours, rows=rows)


def mark_hours_dirty(conn: sa.Connection, moments: Iterable[datetime]) -> None:
    """Mark the hours of ``moments`` for the next catch-up (the trigger does this for inserts)."""
    _mark(conn, sorted({_epoch_hour(m) for m in moments}))


def _mark(conn: sa.Connection, hours: list[int]) -> None:
    if not hours:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(_DIRTY)
    conn.execute(statement.on_conflict_do_update(index_elements=["hour"],
                                                 set_={"version": _DIRTY.c.version + 1}),
                 [{"hour": h, "version": 1} for h in hours])


# --- reads ----------------------------------------------------------------------------------------

def read_window(store: Store, *, since: datetime, catch_up: bool = True, tasks: bool = False,
                task_latency: bool = False) -> WindowTelemetry:
    """The telemetry of the whole hours from the one holding ``since`` on, read from the rollups after a
    catch-up (``catch_up=False`` reads them as they are).

    Per model always (O(hours x models) rows); per (model, task) with ``tasks=True`` (sums only, in
    SQL; their latency sketches too with ``task_latency=True``, O(hours x models x tasks) rows).
    """
    if catch_up:
        try:
            catch_up_rollups(store)
        except StoreWriteError as exc:  # a read-only role or mount still reads the rollups it has
            log.warning("telemetry rollups not caught up (read as they are): %s", exc)
    first = hour_floor(since)
    # Per model: the hour rows up to the first whole day, then one row per day (the current day's too).
    first_day = first if first.hour == 0 else first.replace(hour=0) + 24 * _HOUR
    r = _ROLLUP.c
    with store.connect() as conn:
        head, rows = _read(conn, (r.hour_start >= first, r.hour_start < first_day, r.span_hours == 1),
                           all_tasks=True, sketches=True)
        days, day_rows = _read(conn, (r.hour_start >= first_day, r.span_hours == 24), all_tasks=True, sketches=True)
        rows += day_rows
        by_model = {key: head[key] + days[key] if key in head and key in days else head.get(key) or days[key]
                    for key in head.keys() | days.keys()}
        by_task: dict[tuple[str, str | None], TelemetryAggregate] = {}
        if tasks or task_latency:
            by_task, task_rows = _read(conn, (r.hour_start >= first, r.span_hours == 1), all_tasks=False,
                                       sketches=task_latency)
            rows += task_rows
    return WindowTelemetry(first_hour=first, by_model={model: agg for (model, _t), agg in by_model.items()},
                           by_model_task=by_task, rows_read=rows)


def _read(conn: sa.Connection, bounds: tuple[sa.ColumnElement[bool], ...], *, all_tasks: bool,
          sketches: bool) -> tuple[dict[tuple[str, str | None], TelemetryAggregate], int]:
    r = _ROLLUP.c
    where = (*bounds, r.all_tasks.is_(all_tasks))
    sums = conn.execute(sa.select(
        r.model, r.task, sa.func.count(), *(sa.func.sum(c) for c in (
            r.calls, r.errors, r.cost_calls, r.cost_total, r.priced_calls, r.priced_cost, r.priced_tokens,
            r.prompt_tokens, r.completion_tokens)),
    ).where(*where).group_by(r.model, r.task)).all()
    # The sketches as their JSON text, each key's parsed in one call, then merged bucket by bucket into
    # the first: no per-row object, and half the time of a parse and a merge per row at 1M events.
    texts: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    if sketches:
        for model, task, text in conn.execute(sa.select(r.model, r.task, sa.cast(r.latency_sketch, sa.Text))
                                              .where(*where, r.latency_samples > 0)):
            texts[(model, task)].append(text)
    merged_sketches = {key: merge_json_texts(parts) for key, parts in texts.items()}
    aggregates = {}
    rows = 0
    for model, task, n, calls, errors, cost_calls, cost_total, priced, p_cost, p_tokens, prompt, completion in sums:
        rows += int(n)
        aggregates[(model, task)] = TelemetryAggregate(
            calls=int(calls), errors=int(errors), cost_calls=int(cost_calls), cost_total=float(cost_total),
            priced_calls=int(priced), priced_cost=float(p_cost), priced_tokens=int(p_tokens),
            prompt_tokens=int(prompt), completion_tokens=int(completion),
            latency=LatencySketch.from_json(merged_sketches.get((model, task))))
    return aggregates, rows


@dataclass(frozen=True)
class ModelTelemetry:
    """Observed behaviour of one model over the window, as scoring uses it."""

    model: str
    calls: int
    errors: int
    latency_p95_ms: float | None
    cost_calls: int  # priced calls: a cost and at least one token
    cost_per_1k_tokens: float | None
    latency_samples: int = 0  # successful, non-cached calls with a latency

    @property
    def successes(self) -> int:
        return self.calls - self.errors


def telemetry_by_model(store: Store, *, since: datetime) -> dict[str, ModelTelemetry]:
    """Per-model telemetry of the window starting at ``since`` (whole hours), from the rollups."""
    window = read_window(store, since=since)
    return {model: ModelTelemetry(model=model, calls=agg.calls, errors=agg.errors,
                                  latency_p95_ms=agg.latency_percentile(95), cost_calls=agg.priced_calls,
                                  cost_per_1k_tokens=agg.cost_per_1k_tokens, latency_samples=agg.latency_samples)
            for model, agg in window.by_model.items()}
