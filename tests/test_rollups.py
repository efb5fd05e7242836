"""Hourly telemetry rollups on both backends: merge, catch-up after a gap, late events, pruning, the
migration that builds them from stored history, and the latency sketch's documented error."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender_core.stats import percentile
from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent, TelemetryRollup, TelemetryRollupDirty
from recommender_core.telemetry.events import TelemetryRecord
from recommender_core.telemetry.retention import prune_events
from recommender_core.telemetry.rollups import (
    TelemetryAggregate,
    catch_up_rollups,
    hour_floor,
    read_window,
)
from recommender_core.telemetry.sketch import DOCUMENTED_RELATIVE_ERROR, LatencySketch, bucket_of, merge_json_texts
from recommender_core.telemetry.writer import write_records

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)


def _events(prefix: str, starts: Sequence[datetime], *, rng: random.Random, model: str = "gpt-4o",
            task: str | None = "chat") -> list[TelemetryRecord]:
    out = []
    for i, started in enumerate(starts):
        ok = rng.random() > 0.1
        out.append(TelemetryRecord(
            event_id=f"{prefix}-{i}", model=model, task=task, status="success" if ok else "failure",
            started_at=started, latency_ms=rng.lognormvariate(6, 1) if ok else None, prompt_tokens=100,
            completion_tokens=rng.randrange(1, 200), cost=rng.uniform(0.0001, 0.01)))
    return out


def _exact(records: Sequence[TelemetryRecord], since: datetime) -> dict[str, object]:
    """What the rollups must say, computed from the records themselves."""
    window = [r for r in records if r.started_at >= hour_floor(since)]
    timed = sorted(r.latency_ms for r in window if r.status == "success" and r.latency_ms is not None
                   and not r.cache_hit)
    priced = [r for r in window if r.cost is not None and (r.prompt_tokens or 0) + (r.completion_tokens or 0) > 0]
    tokens = sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in priced)
    return {"calls": len(window), "errors": sum(r.status != "success" for r in window),
            "p50": percentile(timed, 50), "p95": percentile(timed, 95),
            "cost_per_1k": 1000 * sum(r.cost or 0 for r in priced) / tokens if tokens else None}


def _assert_matches(store: Store, records: Sequence[TelemetryRecord], since: datetime) -> None:
    got = read_window(store, since=since).by_model.get("gpt-4o", TelemetryAggregate())
    want = _exact(records, since)
    assert (got.calls, got.errors) == (want["calls"], want["errors"])
    assert got.latency_percentile(50) == pytest.approx(want["p50"], rel=DOCUMENTED_RELATIVE_ERROR)
    assert got.latency_percentile(95) == pytest.approx(want["p95"], rel=DOCUMENTED_RELATIVE_ERROR)
    assert got.cost_per_1k_tokens == pytest.approx(want["cost_per_1k"], rel=1e-9)


def _dirty_hours(store: Store) -> list[int]:
    with store.connect() as conn:
        return list(conn.execute(sa.select(TelemetryRollupDirty.hour).order_by(  # type: ignore[arg-type]
            TelemetryRollupDirty.hour)).scalars())  # type: ignore[arg-type]


def _rollup_rows(store: Store, *, all_tasks: bool = False) -> list[tuple[datetime, str, str | None, int]]:
    with store.session() as session:
        rows = session.execute(sa.select(TelemetryRollup).where(
            TelemetryRollup.all_tasks.is_(all_tasks),  # type: ignore[attr-defined]
            TelemetryRollup.span_hours == 1)).scalars().all()
    return sorted((r.hour_start, r.model, r.task, r.calls) for r in rows)


# --- the sketch -----------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=1e-3, max_value=1e7, allow_nan=False, allow_infinity=False), min_size=1,
                max_size=300),
       st.integers(min_value=0, max_value=100))
def test_sketch_percentiles_are_within_the_documented_error(values: list[float], q: int) -> None:
    exact = percentile(sorted(values), q)
    assert exact is not None
    assert LatencySketch.of(values).percentile(q) == pytest.approx(exact, rel=DOCUMENTED_RELATIVE_ERROR, abs=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=100),
       st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=100),
       st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=100))
def test_sketches_merge_exactly_in_any_order(a: list[float], b: list[float], c: list[float]) -> None:
    sa_, sb, sc = LatencySketch.of(a), LatencySketch.of(b), LatencySketch.of(c)
    whole = LatencySketch.of(a + b + c)
    assert (sa_ + sb) + sc == sa_ + (sb + sc) == sc + sb + sa_
    assert ((sa_ + sb) + sc).buckets == whole.buckets and (sa_ + sb + sc).zeros == whole.zeros
    assert LatencySketch.from_json((sa_ + sb + sc).to_json()) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=60), min_size=1,
                max_size=12))
def test_stored_sketches_merged_from_their_json_text_equal_the_sketch_of_all_values(parts: list[list[float]]) -> None:
    """What the window read merges (each row's stored JSON text) gives the sketch of all the rows' values."""
    texts = [json.dumps(LatencySketch.of(values).to_json()) for values in parts]
    merged = LatencySketch.from_json(merge_json_texts(texts))
    assert merged == LatencySketch.of([v for values in parts for v in values])


def test_sketch_bucket_edges_and_zero() -> None:
    assert bucket_of(0.0) is None and bucket_of(-1.0) is None
    assert LatencySketch.of([0.0, 0.0, 10.0]).percentile(0) == 0.0
    assert LatencySketch().percentile(50) is None
    for value in (1e-3, 1.0, 999.999, 1000.0, 1000.001, 6e5):
        assert LatencySketch.of([value]).percentile(50) == pytest.approx(value, rel=DOCUMENTED_RELATIVE_ERROR)
    assert math.isclose(LatencySketch.of([1.0] * 7).percentile(99) or 0, 1.0, rel_tol=DOCUMENTED_RELATIVE_ERROR)


# --- maintained rollups, on both backends ---------------------------------------------------------

def test_hour_rollups_merge_into_the_window_figures(store: Store) -> None:
    rng = random.Random(1)
    records = _events("a", [NOW - timedelta(minutes=rng.uniform(0, 30 * 60)) for _ in range(400)], rng=rng)
    records += _events("b", [NOW - timedelta(minutes=rng.uniform(0, 60)) for _ in range(50)], rng=rng, task=None)
    write_records(store, records)
    result = catch_up_rollups(store)
    assert result.hours == 31  # 30 h back from 12:30 touches 31 hours
    window = read_window(store, since=NOW - timedelta(hours=24), catch_up=False, task_latency=True)
    # One row per (hour, model, task) in the window, merged per (model, task) and then per model.
    # Per task: 25 hours of tagged calls, and the untagged ones of the last 60 minutes, which span two
    # hours; per model: the 12 hours before midnight, then one row for the day.
    assert window.rows_read == 25 + 2 + 12 + 1 and set(window.by_model_task) == {("gpt-4o", "chat"), ("gpt-4o", None)}
    merged = window.by_model["gpt-4o"]
    assert set(window.by_model) == {"gpt-4o"}
    parts = window.by_model_task.values()
    for other in (TelemetryAggregate.merge_all(parts), sum(parts, TelemetryAggregate())):
        # Counts and sketches merge exactly; float sums only up to the order of addition.
        assert dataclasses.replace(other, cost_total=0.0, priced_cost=0.0) == dataclasses.replace(
            merged, cost_total=0.0, priced_cost=0.0)
        assert (other.cost_total, other.priced_cost) == pytest.approx((merged.cost_total, merged.priced_cost))
    # The merged sketch is the sketch of every value in the window, bucket for bucket.
    first = hour_floor(NOW - timedelta(hours=24))
    assert merged.latency == LatencySketch.of(
        r.latency_ms for r in records if r.latency_ms is not None and r.started_at >= first)
    _assert_matches(store, records, NOW - timedelta(hours=24))
    _assert_matches(store, records, NOW - timedelta(hours=6))


@pytest.mark.parametrize("bad", [
    {"cost": float("nan")}, {"cost": float("inf")}, {"cost": -1e6}, {"cost": 1e300},
    {"prompt_tokens": -(2**31)}, {"prompt_tokens": 2**31 - 1, "completion_tokens": 2**31 - 1},
    {"latency_ms": float("nan")}, {"latency_ms": -1e9}, {"latency_ms": float("inf")},
], ids=["nan-cost", "inf-cost", "negative-cost", "absurd-cost", "int-min-tokens", "int-max-tokens",
        "nan-latency", "negative-latency", "inf-latency"])
def test_stored_rows_outside_the_telemetry_rules_never_enter_a_rollup(store: Store, bad: dict[str, float]) -> None:
    """A row written straight into telemetry_event (an older version, another writer) with a figure
    the telemetry rules reject neither fails the catch-up on either backend nor changes any rollup."""
    rng = random.Random(3)
    good = _events("g", [NOW - timedelta(minutes=rng.uniform(0, 120)) for _ in range(40)], rng=rng)
    write_records(store, good)
    base = {"model": "gpt-4o", "task": "chat", "status": "success", "cache_hit": False, "latency_ms": 500.0,
            "prompt_tokens": 800, "completion_tokens": 200, "cost": 0.002}
    rows = [{**base, **bad, "event_id": f"bad-{i}", "started_at": NOW - timedelta(minutes=10 + 50 * i)}
            for i in range(3)]
    with store.session() as session:
        session.add_all(TelemetryEvent(**row) for row in rows)
    catch_up_rollups(store)
    expected = list(good)
    if store.dialect == "sqlite" and any(math.isnan(v) for v in bad.values()):
        # SQLite stores NaN as NULL: the row is a valid call without that figure, and counts as one.
        expected += [TelemetryRecord(**{k: None if isinstance(v, float) and math.isnan(v) else v
                                        for k, v in row.items()}) for row in rows]
    _assert_matches(store, expected, NOW - timedelta(hours=3))


def test_catch_up_after_a_gap_recomputes_only_the_new_hours(store: Store) -> None:
    rng = random.Random(2)
    old = _events("old", [NOW - timedelta(days=3, minutes=m) for m in range(0, 120, 2)], rng=rng)
    write_records(store, old)
    assert catch_up_rollups(store).hours == 3  # 60 events over two hours, touching three
    assert catch_up_rollups(store).hours == 0  # idempotent: nothing new, nothing done
    # Three days without a catch-up, then a burst over six hours.
    new = _events("new", [NOW - timedelta(minutes=m) for m in range(0, 360, 3)], rng=rng)
    write_records(store, new)
    assert len(_dirty_hours(store)) == 7
    assert catch_up_rollups(store).hours == 7
    assert _dirty_hours(store) == []
    _assert_matches(store, old + new, NOW - timedelta(days=4))
    _assert_matches(store, old + new, NOW - timedelta(hours=24))


def test_a_late_event_for_a_past_hour_is_folded_in(store: Store) -> None:
    rng = random.Random(3)
    records = _events("on-time", [NOW - timedelta(minutes=m) for m in range(0, 600, 5)], rng=rng)
    write_records(store, records)
    read_window(store, since=NOW - timedelta(hours=24))  # reads catch up
    before = _rollup_rows(store)
    # A call that started 8 h ago arrives now (a SpendLogs import, a delayed writer).
    late = _events("late", [NOW - timedelta(hours=8, minutes=10)], rng=rng)
    late = [dataclasses.replace(late[0], status="success", latency_ms=90_000.0)]
    write_records(store, late)
    assert _dirty_hours(store) == [int((hour_floor(late[0].started_at) - datetime(1970, 1, 1, tzinfo=UTC))
                                       // timedelta(hours=1))]
    assert catch_up_rollups(store).hours == 1
    after = _rollup_rows(store)
    changed = [row for row in after if row not in before]
    assert [(h, calls) for h, _m, _t, calls in changed] == [
        (hour_floor(late[0].started_at), next(c for h, _m, _t, c in before if h == hour_floor(late[0].started_at)) + 1)]
    _assert_matches(store, records + late, NOW - timedelta(hours=24))
    # The same figures as a rebuild from scratch: drop every rollup, mark every hour, catch up.
    with store.connect() as conn:
        conn.execute(sa.delete(TelemetryRollup))
        conn.execute(sa.insert(TelemetryRollupDirty), [{"hour": h, "version": 1} for h in range(
            int((hour_floor(NOW - timedelta(hours=12)) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(hours=1)),
            int((hour_floor(NOW) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(hours=1)) + 1)])
    catch_up_rollups(store)
    assert _rollup_rows(store) == after
    assert _rollup_rows(store, all_tasks=True) == [(h, m, None, c) for h, m, _t, c in after]  # one task here


def test_prune_removes_the_rollups_of_pruned_hours_and_recomputes_the_cutoff_hour(store: Store) -> None:
    rng = random.Random(4)
    # Every 10 minutes from 32 days ago to now.
    records = _events("e", [NOW - timedelta(minutes=m) for m in range(0, 32 * 24 * 60, 10)], rng=rng)
    write_records(store, records)
    catch_up_rollups(store)
    result = prune_events(store, older_than_days=30, now=NOW, batch_size=100)
    cutoff = NOW - timedelta(days=30)
    kept = [r for r in records if r.started_at >= cutoff]
    assert result.deleted == len(records) - len(kept)
    if store.dialect == "postgresql":  # the two whole days before the cutoff's day went with their partitions
        batched = sum(1 for r in records if hour_floor(cutoff).replace(hour=0) <= r.started_at < cutoff)
        assert (result.partitions_dropped, result.batches) == (2, math.ceil(batched / 100))
    else:
        assert (result.partitions_dropped, result.batches) == (0, math.ceil(result.deleted / 100))
    # The hours wholly before the cutoff hour (12:00 two days earlier on): a task row and a model row
    # each; and the rows of the two days before the cutoff's day (whose row is rebuilt).
    assert result.rollups_deleted == 2 * 24 * 2 + 2
    with store.session() as session:
        day_rows = session.execute(sa.select(TelemetryRollup).where(TelemetryRollup.span_hours == 24)).scalars().all()
    assert min(r.hour_start for r in day_rows) == hour_floor(cutoff).replace(hour=0)
    assert sum(r.calls for r in day_rows) == len(kept)
    hours = {h for h, _m, _t, _c in _rollup_rows(store)}
    assert min(hours) == hour_floor(cutoff)
    # The cutoff hour (12:00-13:00, cutoff 12:30) now counts only the events left in it.
    cut_hour = {h: c for h, _m, _t, c in _rollup_rows(store)}[hour_floor(cutoff)]
    assert cut_hour == sum(1 for r in kept if hour_floor(r.started_at) == hour_floor(cutoff)) == 3
    _assert_matches(store, kept, NOW - timedelta(days=40))
    assert prune_events(store, older_than_days=30, now=NOW).rollups_deleted == 0


def test_score_and_snapshot_never_read_raw_events_once_caught_up(store: Store) -> None:
    from recommender_core.diagnostics.snapshot import build_snapshot
    from recommender_core.policy import load_policy
    from recommender_core.scoring.run import run_scoring

    rng = random.Random(5)
    write_records(store, _events("e", [NOW - timedelta(minutes=m) for m in range(0, 600, 7)], rng=rng))
    catch_up_rollups(store)
    statements: list[str] = []

    def capture(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run_scoring(store, load_policy(), now=NOW, dry_run=True)
        build_snapshot(store, load_policy(), v2_enabled=True, now=NOW)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    assert any("telemetry_rollup" in s for s in statements)
    assert not [s for s in statements if "telemetry_event" in s]


def test_the_migration_marks_the_stored_history_for_the_first_catch_up(database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from recommender_core.store.engine import MIGRATIONS_DIR

    s = Store(database_url)
    try:
        with s.engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
            for i, ago in enumerate((1, 2, 2, 50)):
                conn.execute(sa.text(
                    "INSERT INTO telemetry_event (event_id, origin, model, status, started_at, latency_ms, cache_hit,"
                    " tags) VALUES (:id, 'callback', 'gpt-4o', 'success', :t, 100.0, false, '[]')"),
                    {"id": f"old-{i}", "t": (NOW - timedelta(hours=ago)).replace(tzinfo=None)
                     if s.dialect == "sqlite" else NOW - timedelta(hours=ago)})
        s.upgrade()
        assert len(_dirty_hours(s)) == 3
        assert read_window(s, since=NOW - timedelta(hours=72)).by_model["gpt-4o"].calls == 4
        assert read_window(s, since=NOW - timedelta(hours=24)).by_model["gpt-4o"].calls == 3
    finally:
        s.dispose()
