"""The snapshot document: valid against docs/snapshot.schema.json on an empty and a filled store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from recommender_core.diagnostics.snapshot import build_snapshot, selection_counts
from recommender_core.errors import UsageError
from recommender_core.policy import load_policy
from recommender_core.store import Store
from recommender_core.store.tables import (
    BenchmarkEvidence,
    IngestRun,
    RunStatus,
    ScoringRun,
    TelemetryEvent,
    UtilityScore,
)
from recommender_core.telemetry.sketch import DOCUMENTED_RELATIVE_ERROR as SKETCH_ERROR

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "snapshot.schema.json").read_text())
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def validate(document: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)


def test_schema_is_itself_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_empty_store_snapshot_is_valid_and_says_what_to_run(store: Store) -> None:
    snap = build_snapshot(store, load_policy(), v2_enabled=False, now=NOW)
    validate(snap.document)
    assert snap.is_empty
    assert snap.document["next_steps"] == ["recsys ingest lmsys", "recsys ingest mteb", "recsys score"]
    assert snap.document["sources"] == [] and snap.document["tasks"] == {}


def fill(store: Store) -> None:
    """A store with a stale failed source, a fresh one, a current scoring run and 24 h of telemetry."""
    with store.session() as s:
        ok = IngestRun(source="lmsys", status=RunStatus.SUCCESS, started_at=NOW - timedelta(hours=30),
                       finished_at=NOW - timedelta(hours=30), source_version="sha-a", rows_accepted=3)
        s.add(ok)
        s.flush()
        assert ok.id is not None
        s.add(IngestRun(source="lmsys", status=RunStatus.FAILED, started_at=NOW - timedelta(hours=1),
                        finished_at=NOW - timedelta(hours=1), rows_rejected=9, error="SourceHTTPError: 500"))
        s.add(IngestRun(source="mteb", status=RunStatus.SUCCESS, started_at=NOW - timedelta(hours=2),
                        finished_at=NOW - timedelta(hours=2), source_version="sample", rows_accepted=10))
        for model, value in [("gpt-4.1-2025-04-14", 1300.0), ("mystery-model", 1100.0)]:
            s.add(BenchmarkEvidence(run_id=ok.id, source="lmsys", model=model, category="text/coding",
                                    value=value))
        run = ScoringRun(status=RunStatus.SUCCESS, started_at=NOW, finished_at=NOW, policy_hash="a" * 64,
                         is_current=True)
        s.add(run)
        s.flush()
        assert run.id is not None
        # Same utility: the tie is broken by quality desc (DESIGN.md section 6).
        s.add(UtilityScore(run_id=run.id, task="coding", model="gpt-4.1", utility=0.7, quality=0.8, cost=0.5,
                           latency=0.5, reliability=0.9, evidence=["lmsys:text/coding"]))
        s.add(UtilityScore(run_id=run.id, task="coding", model="gpt-5", utility=0.7, quality=0.9, cost=0.4,
                           latency=0.5, reliability=0.9, evidence=["lmsys:text/coding"]))
        s.add(UtilityScore(run_id=run.id, task="coding", model="gpt-4o-mini", excluded=True, reason="no evidence"))
        for i in range(20):
            s.add(TelemetryEvent(event_id=f"e{i}", model_group="gpt-4.1", model="gpt-4.1-2025-04-14",
                                 task="coding" if i < 15 else None,
                                 status="failure" if i == 0 else "success", started_at=NOW - timedelta(minutes=i),
                                 latency_ms=float(100 * (i + 1)), cache_hit=(i == 19)))
        s.add(TelemetryEvent(event_id="old", model="gpt-5", status="success",
                             started_at=NOW - timedelta(hours=25), latency_ms=1.0))


def test_filled_store_snapshot(store: Store) -> None:
    fill(store)
    doc = build_snapshot(store, load_policy(), v2_enabled=True, now=NOW).document
    validate(doc)
    sources = {s["source"]: s for s in doc["sources"]}
    assert sources["lmsys"]["last_status"] == "failed" and sources["lmsys"]["stale"] is True
    assert sources["lmsys"]["last_error"] == "SourceHTTPError: 500"
    assert sources["lmsys"]["source_version"] == "sha-a" and sources["lmsys"]["rows"] == 3
    assert sources["mteb"]["stale"] is False and sources["mteb"]["age_seconds"] == 7200
    assert [m["model"] for m in doc["tasks"]["coding"]] == ["gpt-5", "gpt-4.1"]
    assert doc["unmatched_models"] == ["mystery-model"]
    tele = {m["model"]: m for m in doc["telemetry"]["models"]}
    assert set(tele) == {"gpt-4.1"}  # the 25 h old call is outside the window
    assert tele["gpt-4.1"]["calls"] == 20 and tele["gpt-4.1"]["errors"] == 1
    # latencies of successes excluding the cache hit: 200..1900 step 100 (18 values)
    assert tele["gpt-4.1"]["latency_p50_ms"] == pytest.approx(1050.0, rel=SKETCH_ERROR)
    assert doc["next_steps"] == []
    # the hourly rollups' sketch: within its documented error of the exact (interpolated) percentile
    assert tele["gpt-4.1"]["latency_p95_ms"] == pytest.approx(1815.0, rel=SKETCH_ERROR)
    assert doc["telemetry"]["selections"] == [{"task": "coding", "model": "gpt-4.1", "calls": 15},
                                              {"task": "untagged", "model": "gpt-4.1", "calls": 5}]
    # the evidence behind each ranking: the stored value its reference points at
    gpt41 = doc["tasks"]["coding"][1]
    assert gpt41["evidence_values"] == [{
        "ref": "lmsys:text/coding", "model": "gpt-4.1-2025-04-14", "value": 1300.0, "lower": None, "upper": None,
        "samples": None, "tasks": None, "source_version": None}]
    assert doc["tasks"]["coding"][0]["evidence_values"] == []  # gpt-5 has no stored Arena row here
    assert doc["excluded"] == {"coding": [{"model": "gpt-4o-mini", "reason": "no evidence"}]}
    assert doc["scoring_run"]["age_seconds"] == 0
    top = build_snapshot(store, load_policy(), v2_enabled=True, now=NOW, top=1, task="coding").document
    assert [m["model"] for m in top["tasks"]["coding"]] == ["gpt-5"]


def test_mteb_type_evidence_is_averaged_over_the_task_type(memory_store: Store) -> None:
    with memory_store.session() as s:
        run = IngestRun(source="mteb", status=RunStatus.SUCCESS, started_at=NOW, finished_at=NOW,
                        source_version="abc")
        s.add(run)
        s.flush()
        assert run.id is not None
        for category, value in [("NFCorpus", 0.3), ("SciFact", 0.5), ("STS12", 0.9)]:
            s.add(BenchmarkEvidence(run_id=run.id, source="mteb", model="openai/text-embedding-3-large",
                                    category=category, task_type="STS" if category == "STS12" else "Retrieval",
                                    metric="main_score", value=value, source_version="abc"))
        scoring = ScoringRun(status=RunStatus.SUCCESS, started_at=NOW, finished_at=NOW, is_current=True)
        s.add(scoring)
        s.flush()
        assert scoring.id is not None
        s.add(UtilityScore(run_id=scoring.id, task="retrieval", model="text-embedding-3-large", utility=0.5,
                           quality=0.4, evidence=["mteb:type/Retrieval"]))
    doc = build_snapshot(memory_store, load_policy(), v2_enabled=False, now=NOW).document
    validate(doc)
    [entry] = doc["tasks"]["retrieval"]
    assert entry["evidence_values"] == [{
        "ref": "mteb:type/Retrieval", "model": "openai/text-embedding-3-large", "value": pytest.approx(0.4),
        "lower": None, "upper": None, "samples": None, "tasks": 2, "source_version": "abc"}]


def test_unknown_task_and_bad_top_are_usage_errors(memory_store: Store) -> None:
    with pytest.raises(UsageError, match=r"Unknown task 'nope'\. Tasks: chat, classification,"):
        build_snapshot(memory_store, load_policy(), v2_enabled=False, task="nope")
    with pytest.raises(UsageError, match="top must be at least 1"):
        build_snapshot(memory_store, load_policy(), v2_enabled=False, top=0)
    # a task of the policy with nothing scored yet is fine: an empty ranking
    doc = build_snapshot(memory_store, load_policy(), v2_enabled=False, task="coding").document
    assert doc["tasks"] == {}


def test_selection_counts_cover_the_window_and_match_the_snapshot(store: Store) -> None:
    fill(store)
    assert selection_counts(store, since=NOW - timedelta(hours=26)) == {
        ("coding", "gpt-4.1"): 15, ("untagged", "gpt-4.1"): 5, ("untagged", "gpt-5"): 1}
    # the snapshot's window: the 25 h old call has left it, and the gauge falls with it
    window = selection_counts(store, since=NOW - timedelta(hours=24))
    assert window == {("coding", "gpt-4.1"): 15, ("untagged", "gpt-4.1"): 5}
    selections = build_snapshot(store, load_policy(), v2_enabled=False, now=NOW).document["telemetry"]["selections"]
    assert {(e["task"], e["model"]): e["calls"] for e in selections} == window


def test_sketched_latency_percentiles_match_stats_percentile_on_every_backend(store: Store) -> None:
    """The database buckets latencies (ln and ceil in SQL): within 1% of the exact figures on both."""
    import random

    from recommender_core.stats import percentile

    rng = random.Random(7)
    expected = {}
    with store.session() as s:
        for n in (1, 2, 3, 20, 21, 41, 101):
            values = [round(rng.uniform(1, 5000), 3) for _ in range(n)]
            expected[f"m{n}"] = (percentile(sorted(values), 50), percentile(sorted(values), 95))
            for i, value in enumerate(values):
                s.add(TelemetryEvent(event_id=f"m{n}-{i}", model=f"m{n}", status="success",
                                     started_at=NOW - timedelta(minutes=i), latency_ms=value))
    tele = build_snapshot(store, load_policy(), v2_enabled=False, now=NOW).document["telemetry"]
    got = {m["model"]: (m["latency_p50_ms"], m["latency_p95_ms"]) for m in tele["models"]}
    assert got.keys() == expected.keys()
    for model, (p50, p95) in expected.items():
        assert got[model] == (pytest.approx(p50, rel=SKETCH_ERROR), pytest.approx(p95, rel=SKETCH_ERROR)), model


def test_snapshot_ranks_exactly_like_routing_under_ties(store: Store) -> None:
    """DESIGN.md 6 and 8: the snapshot's ranking is routing's total order (9 decimals), ties included."""
    import random

    from recommender_core.routing.table import load_current_table

    # (model, utility, quality, cost_per_1k): ties at 9 decimals broken by quality, then cost, then name;
    # differences below 1e-9 do not count.
    rows = [("m-a", 0.7, 0.8, 0.002), ("m-b", 0.7 + 1e-12, 0.8, 0.001), ("m-c", 0.7, 0.8 - 1e-12, 0.001),
            ("m-d", 0.7, 0.9, 0.005), ("m-e", 0.7000000004, 0.5, 0.0), ("m-f", 0.71, 0.1, 0.9),
            ("m-g", 0.7, 0.8, 0.001 + 1e-13), ("m-h", 0.69, 0.99, 0.0)]
    random.Random(7).shuffle(rows)
    with store.session() as s:
        run = ScoringRun(status=RunStatus.SUCCESS, started_at=NOW, finished_at=NOW, policy_hash="b" * 64,
                         is_current=True)
        s.add(run)
        s.flush()
        for model, utility, quality, cost in rows:
            s.add(UtilityScore(run_id=run.id, task="coding", model=model, utility=utility, quality=quality,
                               cost=0.5, latency=0.5, reliability=0.9, cost_per_1k_tokens=cost))
    doc = build_snapshot(store, load_policy(), v2_enabled=True, now=NOW).document
    table = load_current_table(store)
    assert table is not None
    routed = [r.model for r in table.tasks["coding"].by_utility]
    assert [m["model"] for m in doc["tasks"]["coding"]] == routed
    assert routed == ["m-f", "m-d", "m-b", "m-c", "m-g", "m-a", "m-e", "m-h"]
