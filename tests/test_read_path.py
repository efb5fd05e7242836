"""The fast read path: one task's rows for route, a schema check without Alembic, bulk utility rows,
``top`` on every snapshot list (issue: interactive at any traffic volume)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from recommender_core.diagnostics.snapshot import build_snapshot
from recommender_core.policy import load_policy
from recommender_core.routing.decision import route
from recommender_core.routing.table import load_current_table, load_task_table
from recommender_core.scoring.run import ScoredModel
from recommender_core.store import Store
from recommender_core.store.engine import MIGRATIONS_DIR, head_revision
from recommender_core.store.tables import TelemetryEvent, UtilityScore

from .scoring_data import add_scoring_run

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def _scored(task: str, model: str, utility: float | None, **extra: object) -> ScoredModel:
    values: dict[str, object] = dict(task=task, model=model, utility=utility, quality=0.5, cost=0.25, latency=0.75,
                                     reliability=1.0, cost_per_1k_tokens=0.002, latency_p95_ms=800.0,
                                     success_rate=0.99, excluded=utility is None,
                                     reason="no evidence" if utility is None else None,
                                     evidence=("lmsys:text/coding",), details={"why": ["a", 1]})
    values.update(extra)
    return ScoredModel(**values)  # type: ignore[arg-type]


def _current_run(store: Store, scores: list[ScoredModel], *, current: bool = True) -> int:
    return add_scoring_run(store, scores, current=current, policy_hash="h", at=NOW)


def test_head_revision_matches_alembic_without_importing_it() -> None:
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    # A command that opens an up-to-date store never imports Alembic (it cost ~0.2 s per command).
    code = ("import sys; from recommender_core.store import Store; s = Store(sys.argv[1]); s.upgrade(); "
            "[m for m in list(sys.modules) if m.startswith('alembic') and sys.modules.pop(m)]; "
            "s2 = Store(sys.argv[1]); s2.ping(); s2.ensure_ready(); "
            "assert not any(m.startswith('alembic') for m in sys.modules), sorted(sys.modules)")
    with_db = f"sqlite:///{Path(os.environ.get('TMPDIR', '/tmp')) / f'readpath-{os.getpid()}.db'}"
    try:
        subprocess.run([sys.executable, "-c", code, with_db], check=True, capture_output=True, timeout=120)
    finally:
        Path(with_db.removeprefix("sqlite:///")).unlink(missing_ok=True)


def test_a_store_behind_head_is_still_refused_by_the_version_compare(database_url: str) -> None:
    from recommender_core.errors import StoreSchemaError

    s = Store(database_url)
    try:
        s.upgrade()
        with s.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        behind = Store(database_url)
        try:
            with pytest.raises(StoreSchemaError, match=f"is at migration 0001, not {head_revision()}"):
                behind.ensure_ready()
        finally:
            behind.dispose()
    finally:
        s.dispose()


def test_utility_rows_round_trip_through_the_bulk_writer(store: Store) -> None:
    """COPY on Postgres, executemany on SQLite: every column comes back as the ORM would read it."""
    scores = [_scored("coding", "m-a", 0.9), _scored("coding", "m-b", None), _scored("chat", "m-a", 0.1)]
    run_id = _current_run(store, scores)
    with store.session() as session:
        rows = {(r.task, r.model): r for r in session.exec(select(UtilityScore).where(UtilityScore.run_id == run_id))}
    assert set(rows) == {("coding", "m-a"), ("coding", "m-b"), ("chat", "m-a")}
    a = rows[("coding", "m-a")]
    assert (a.utility, a.quality, a.cost, a.latency, a.reliability) == (0.9, 0.5, 0.25, 0.75, 1.0)
    assert (a.cost_per_1k_tokens, a.latency_p95_ms, a.success_rate) == (0.002, 800.0, 0.99)
    assert a.excluded is False and a.reason is None
    assert a.evidence == ["lmsys:text/coding"] and a.details == {"why": ["a", 1]}
    b = rows[("coding", "m-b")]
    assert b.excluded is True and b.utility is None and b.reason == "no evidence"


def test_route_reads_one_task_and_decides_as_the_whole_table_does(store: Store) -> None:
    old = [_scored("coding", "stale-best", 0.99)]
    _current_run(store, old, current=False)
    scores = [_scored(task, f"m-{i}", round(0.1 * i, 3)) for task in ("coding", "chat") for i in range(1, 6)]
    scores.append(_scored("coding", "m-out", None))
    run_id = _current_run(store, scores)
    one = load_task_table(store, "coding")
    assert one is not None and set(one.tasks) == {"coding"} and one.origin == f"scoring run {run_id}"
    whole = load_current_table(store)
    assert whole is not None
    assert one.tasks["coding"] == whole.tasks["coding"]
    # a task the current run does not hold: an empty table of that run, not None
    empty = load_task_table(store, "no-such-task")
    assert empty is not None and empty.tasks == {} and empty.origin == f"scoring run {run_id}"
    policy = load_policy()
    from_store = route("coding", v2_enabled=True, store=store, policy=policy, max_cost_per_1k=1.0,
                       max_latency_ms=10_000.0, min_quality=0.0)
    from_table = route("coding", v2_enabled=True, scores=whole, policy=policy, max_cost_per_1k=1.0,
                       max_latency_ms=10_000.0, min_quality=0.0)
    assert from_store.models == from_table.models == ("m-5", "m-4", "m-3", "m-2", "m-1")
    assert from_store.to_json() == from_table.to_json()


def test_no_current_run_gives_no_table(store: Store) -> None:
    _current_run(store, [_scored("coding", "m", 0.5)], current=False)
    assert load_task_table(store, "coding") is None


def test_the_explanation_is_built_only_when_read(store: Store) -> None:
    _current_run(store, [_scored("coding", f"m-{i}", 0.1 * i) for i in range(1, 4)])
    calls = []
    decision = route("coding", v2_enabled=True, store=store, policy=load_policy(), max_cost_per_1k=1.0,
                     max_latency_ms=10_000.0, min_quality=0.0)
    explain = decision._explain
    object.__setattr__(decision, "_explain", lambda: calls.append(1) or explain())
    assert decision.primary == "m-3" and calls == []
    assert [c.model for c in decision.candidates] == ["m-3", "m-2", "m-1"] and calls == [1]
    decision.excluded  # noqa: B018 - read again: built once
    assert calls == [1]


def test_top_applies_to_every_list_of_the_snapshot(store: Store) -> None:
    scores = [_scored("coding", f"m-{i}", 0.1 * i) for i in range(1, 6)]
    scores += [_scored("coding", f"x-{i}", None) for i in range(4)]
    _current_run(store, scores)
    with store.session() as s:
        for i in range(30):
            model = f"m-{i % 5 + 1}" if i < 25 else "m-1"
            for task in ("coding", "chat", None):
                s.add(TelemetryEvent(event_id=f"e{i}-{task}", model=model, task=task, status="success",
                                     started_at=NOW - timedelta(minutes=i), latency_ms=100.0))
    full = build_snapshot(store, load_policy(), v2_enabled=True, now=NOW).document
    assert len(full["telemetry"]["selections"]) == 15 and len(full["excluded"]["coding"]) == 4
    doc = build_snapshot(store, load_policy(), v2_enabled=True, now=NOW, top=2).document
    assert [e["model"] for e in doc["tasks"]["coding"]] == ["m-5", "m-4"]
    assert [e["model"] for e in doc["excluded"]["coding"]] == ["x-0", "x-1"]
    # the two most-called models per task (m-1 has 10 calls of each task, the others 5: ties by name)
    assert [(e["task"], e["model"], e["calls"]) for e in doc["telemetry"]["selections"]] == [
        ("chat", "m-1", 10), ("chat", "m-2", 5), ("coding", "m-1", 10), ("coding", "m-2", 5),
        ("untagged", "m-1", 10), ("untagged", "m-2", 5)]
    assert [m["model"] for m in doc["telemetry"]["models"]] == ["m-1", "m-2"]
    assert len(doc["unmatched_models"]) <= 2 and len(doc["unmapped_tasks"]) <= 2


def test_the_policy_is_parsed_once_per_version_of_its_file(tmp_path: Path) -> None:
    from recommender_core.policy import default_policy_text
    from recommender_core.policy_cache import cached_policy, clear_policy_cache

    clear_policy_cache()
    file = tmp_path / "policy.yaml"
    file.write_text(default_policy_text())
    first = cached_policy(file)
    assert cached_policy(str(file)) is first  # same bytes: not parsed again
    assert cached_policy(None) is cached_policy(None)  # the packaged default, once
    # any edit is a new version (the key is the content's digest, not the modification time)
    file.write_text(default_policy_text() + "# edited\n")
    second = cached_policy(file)
    assert second is not first and second.tasks.keys() == first.tasks.keys()
    file.unlink()
    from recommender_core.errors import PolicyError

    with pytest.raises(PolicyError, match="does not exist"):
        cached_policy(file)
