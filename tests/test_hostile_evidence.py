"""Hostile data never poisons the store, part two: evidence rows, stored telemetry, the policy, mirrors
and terminal output.

Evidence rows come from the real upstream formats (the sample mirror's MTEB result files and Arena
parquet, and the real MTEB slice and Arena CSVs through ``conftest.real_data()``) with one
value spoiled; every ingest runs through the real `recsys` CLI on both store backends. Property tests
(hypothesis) check that the row validator and the policy loader give a value or a ``RecsysError``
and nothing else, whatever they are given.
"""

from __future__ import annotations

import json
import math
import shutil
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from recsys_cli._base import AppState
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.errors import PolicyError, RecsysError, RejectedRow, SourceSchemaError
from recommender_core.policy import default_policy_text, parse_policy
from recommender_core.sources.base import Batch, EvidenceRecord
from recommender_core.sources.lmsys.parse import parse_legacy_csv
from recommender_core.sources.mteb.parse import load_task_map, parse_result
from recommender_core.sources.validate import check_record, mteb_metric_bounds, screen
from recommender_core.store import Store
from recommender_core.store.tables import BenchmarkEvidence, IngestRun, ScoringRun, TelemetryEvent, UtilityScore

from .conftest import REPO_ROOT, real_data
from .scoring_data import SMALL_POLICY, add_arena, add_calls

runner = CliRunner()
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SAMPLE_MTEB = REPO_ROOT / "sample_mirror" / "mteb"
SAMPLE_LMSYS = REPO_ROOT / "sample_mirror" / "lmsys"


def _cli(url: str, *args: str) -> Any:
    return runner.invoke(app, ["--database-url", url, *args], obj=AppState(clock=FixedClock(NOW)))


def _one_line(result: Any) -> str:
    """The single stderr line of a failed command (and proof there is only one)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _current(store: Store, source: str) -> tuple[int | None, dict[tuple[str, str], float]]:
    """The current (latest successful) run of ``source`` and its evidence values."""
    with store.session() as session:
        run_id = session.execute(sa.select(sa.func.max(IngestRun.id)).where(
            IngestRun.source == source, IngestRun.status == "success")).scalar()  # type: ignore[arg-type]
        rows = session.execute(sa.select(BenchmarkEvidence).where(
            BenchmarkEvidence.run_id == run_id)).scalars().all()  # type: ignore[arg-type]
    return run_id, {(r.model, r.category): r.value for r in rows}


def _scoring(store: Store) -> tuple[int | None, dict[tuple[str, str], float | None]]:
    with store.session() as session:
        run = session.execute(sa.select(ScoringRun).where(ScoringRun.is_current.is_(True))).scalars().one_or_none()  # type: ignore[attr-defined]
        if run is None:
            return None, {}
        scores = session.execute(sa.select(UtilityScore).where(UtilityScore.run_id == run.id)).scalars().all()  # type: ignore[arg-type]
    return run.id, {(s.task, s.model): s.utility for s in scores}


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} in a JSON document")


# --- stored telemetry: rows an older version or another writer left behind ---------------------------

def _hostile_event(**fields: Any) -> TelemetryEvent:
    base: dict[str, Any] = {"event_id": uuid.uuid4().hex, "model": "alpha", "model_group": "alpha",
                            "status": "success", "started_at": NOW - timedelta(hours=2), "latency_ms": 500.0,
                            "prompt_tokens": 800, "completion_tokens": 200, "cost": 0.002}
    return TelemetryEvent(**{**base, **fields})


HOSTILE_STORED_EVENTS: dict[str, dict[str, Any]] = {
    "nan_cost": {"cost": float("nan")},
    "inf_cost": {"cost": float("inf")},
    "negative_cost": {"cost": -1e6},
    "absurd_cost": {"cost": 1e300},
    "int_min_prompt_tokens": {"prompt_tokens": -(2**31)},
    "int_max_tokens_both": {"prompt_tokens": 2**31 - 1, "completion_tokens": 2**31 - 1},
    "nan_latency": {"latency_ms": float("nan")},
    "negative_latency": {"latency_ms": -1e9},
    "inf_latency": {"latency_ms": float("inf")},
}


def test_stored_bad_telemetry_rows_never_break_or_skew_score(store: Store, database_url: str, tmp_path: Path) -> None:
    """Case 2: telemetry rows stored before validation existed (NaN, Infinity or negative spend, token
    counts at the integer limits, NaN or negative latency) made every `recsys score` fail on Postgres
    (`invalid input syntax for type json`, `integer out of range`) or skewed it. Scoring now reads only
    rows within the telemetry rules: it succeeds and its utilities equal the run before."""
    store = Store(store.url, engine=store.engine, clock=FixedClock(NOW))
    add_arena(store, [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0),
                      ("delta-2025", "overall", 1200.0, 1100.0)])
    add_calls(store, "alpha", latencies=[400.0 + i for i in range(60)], cost=0.002, tokens=1000)
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    first = _cli(database_url, "score", "--policy", str(policy))
    assert first.exit_code == 0, first.output
    run_before, utilities_before = _scoring(store)
    scored = [u for u in utilities_before.values() if u is not None]
    assert scored and all(math.isfinite(u) for u in scored)

    with store.session() as session:
        for fields in HOSTILE_STORED_EVENTS.values():
            session.add(_hostile_event(**fields))
    again = _cli(database_url, "score", "--policy", str(policy))
    assert again.exit_code == 0, again.output
    run_after, utilities_after = _scoring(store)
    assert run_after != run_before
    assert utilities_after == utilities_before
    for command in (["snapshot", "--json"], ["route", "chat", "--json"]):  # and every reader still answers
        shown = _cli(database_url, *command, "--policy", str(policy))
        assert shown.exit_code == 0, shown.output
        json.loads(shown.stdout, parse_constant=_no_constant)


def test_stored_evidence_off_its_scale_never_breaks_or_skews_score(
        store: Store, database_url: str, tmp_path: Path) -> None:
    """Evidence an older version stored before the row rules (an infinite or 1e300 rating, an MTEB
    score of 1e300 or -5.0, and on Postgres NaN, which SQLite cannot store): `score` used to fail on
    Postgres (`invalid input syntax for type json`) or rank by it. Scoring now leaves such values out:
    the run succeeds, equals the run without them, and `snapshot --json` is valid JSON."""
    from .scoring_data import add_mteb

    policy = _policy(tmp_path, SMALL_POLICY)
    good_arena = [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0)]
    good_mteb = [("emb-one", "SciFact", "Retrieval", 0.7), ("emb-two", "SciFact", "Retrieval", 0.6)]
    add_arena(store, good_arena)
    add_mteb(store, good_mteb)
    assert _cli(database_url, "score", "--policy", str(policy)).exit_code == 0
    _, clean = _scoring(store)

    nan = [("delta-2025", "math", float("nan"), None)] if store.dialect == "postgresql" else []
    add_arena(store, [*good_arena, ("delta-2025", "overall", float("inf"), None),
                      ("gamma-unpriced", "overall", 1e300, None), *nan])
    add_mteb(store, [*good_mteb, ("emb-one", "NFCorpus", "Retrieval", 1e300),
                     ("emb-two", "NFCorpus", "Retrieval", -5.0)])
    result = _cli(database_url, "score", "--policy", str(policy))
    assert result.exit_code == 0, result.output
    _, hostile = _scoring(store)
    assert hostile == clean
    shown = _cli(database_url, "snapshot", "--json", "--policy", str(policy))
    assert shown.exit_code == 0, shown.output
    json.loads(shown.stdout, parse_constant=_no_constant)


# --- evidence rows: MTEB result files of the sample mirror, one value spoiled -----------------------

def _mteb_mirror(tmp_path: Path, name: str = "mirror") -> Path:
    mirror = tmp_path / name
    shutil.copytree(SAMPLE_MTEB, mirror)
    (mirror / "RECSYS_MIRROR_VERSION").write_text(f"{name}\n")
    return mirror


def _result_file(mirror: Path, folder: str, task: str) -> Path:
    """The current-format (mteb >= 1.11, "scores") result file of ``task`` in ``folder``."""
    found = [p for p in sorted((mirror / "results" / folder).glob(f"*/{task}.json"))
             if "scores" in json.loads(p.read_text())]
    assert found, f"the sample mirror has no current-format {folder}/*/{task}.json"
    return found[-1]


def _set_main_scores(path: Path, value: Any) -> None:
    document = json.loads(path.read_text())
    for subsets in document["scores"].values():
        for subset in subsets:
            subset["main_score"] = value
    path.write_text(json.dumps(document))


def _set_json(path: Path, **fields: Any) -> None:
    document = json.loads(path.read_text())
    document.update(fields)
    path.write_text(json.dumps(document))


def _set_meta_name(mirror: Path, folder: str, name: str) -> None:
    for meta in (mirror / "results" / folder).glob("*/model_meta.json"):
        _set_json(meta, name=name)


TE3_SMALL = "openai__text-embedding-3-small"
BGE = "BAAI__bge-base-en-v1.5"
# case -> (how the mirror is spoiled, the rejection reason counted, how many rows it rejects)
MTEB_ROW_CASES: dict[str, tuple[Any, str, int]] = {
    "main_score_1e300": (lambda m: _set_main_scores(_result_file(m, TE3_SMALL, "STSBenchmark"), 1e300),
                         "value is outside [-1, 1] for cosine_spearman", 1),
    "main_score_minus_5": (lambda m: _set_main_scores(_result_file(m, TE3_SMALL, "STSBenchmark"), -5.0),
                           "value is outside [-1, 1] for cosine_spearman", 1),
    "accuracy_above_1": (lambda m: _set_main_scores(_result_file(m, TE3_SMALL, "Banking77Classification"), 1.5),
                         "value is outside [0, 1] for accuracy", 1),
    "mteb_version_5000_digits": (lambda m: _set_json(_result_file(m, TE3_SMALL, "SciFact"), mteb_version="9" * 5000),
                                 "mteb_version is longer than 64 characters", 1),
    "task_name_300_chars": (lambda m: _set_json(_result_file(m, TE3_SMALL, "SciFact"), task_name="T" * 300),
                            "category is longer than 256 characters", 1),
}


def _evidence_rows(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", list(MTEB_ROW_CASES))
def test_a_hostile_mteb_value_is_rejected_counted_and_the_rest_goes_in(
        store: Store, database_url: str, tmp_path: Path, case: str) -> None:
    """Cases 3 and 4: a main score of 1e300 (it used to be clamped to quality 1.0 and make
    text-embedding-3-small the sts primary) or -5.0, an accuracy of 1.5, a 5,000-digit mteb_version
    (a ValueError traceback), a 300-character task name (a psycopg traceback on Postgres): each is one
    rejected row, counted by reason; every other row goes in; the previous run's evidence and the
    current scoring run are untouched, and the sts route is the one the clean data gives."""
    spoil, reason, rejected = MTEB_ROW_CASES[case]
    clean = _mteb_mirror(tmp_path, "clean")
    assert _cli(database_url, "ingest", "mteb", "--source", str(clean)).exit_code == 0
    assert _cli(database_url, "score").exit_code == 0
    route_before = _evidence_rows(_cli(database_url, "route", "sts", "--json"))["primary"]
    run_before, evidence_before = _current(store, "mteb")
    scoring_before = _scoring(store)

    hostile = _mteb_mirror(tmp_path, "hostile")
    spoil(hostile)
    result = _cli(database_url, "ingest", "mteb", "--source", str(hostile), "--json")
    doc = _evidence_rows(result)
    assert doc["status"] == "success" and "Traceback" not in result.output
    assert doc["rejected"] == {reason: rejected}
    assert doc["rows"] == len(evidence_before) - rejected
    run_after, evidence_after = _current(store, "mteb")
    assert run_after != run_before
    assert set(evidence_after) < set(evidence_before)
    assert all(evidence_after[k] == evidence_before[k] for k in evidence_after)
    assert all(math.isfinite(v) and -1 <= v <= 1 for v in evidence_after.values())
    with store.session() as session:  # the previous run's rows are intact
        kept = session.execute(sa.select(sa.func.count()).select_from(BenchmarkEvidence).where(
            BenchmarkEvidence.run_id == run_before)).scalar()  # type: ignore[arg-type]
        run = session.get(IngestRun, run_after)
    assert kept == len(evidence_before)
    assert run is not None and (run.rows_rejected, run.details["rejected"]) == (rejected, {reason: rejected})
    assert _scoring(store) == scoring_before  # an ingest never touches the current scoring run
    assert _cli(database_url, "score").exit_code == 0
    assert _evidence_rows(_cli(database_url, "route", "sts", "--json"))["primary"] == route_before


@pytest.mark.parametrize(("case", "name", "reason"), [
    ("name_10000_chars", "x" * 10_000, "model name is longer than 512 characters"),
    ("nul_in_name", "BAAI/bge\x00-base", "model name holds a control character"),
    ("escape_sequence_in_name", "BAAI/bge\x1b[31m\r\nfake", "model name holds a control character"),
])
def test_a_hostile_model_meta_name_rejects_its_rows_and_the_five_percent_rule_decides(
        store: Store, database_url: str, tmp_path: Path, case: str, name: str, reason: str) -> None:
    """Case 4: a 10,000-character or NUL-holding name in model_meta.json aborted the ingest with a
    60-line psycopg traceback on Postgres. Every row of that folder is now rejected and counted; in the
    small sample they are over 5 % of the rows, so the run fails in one line, writes nothing and keeps
    the previous evidence current."""
    assert _cli(database_url, "ingest", "mteb", "--source", str(_mteb_mirror(tmp_path, "clean"))).exit_code == 0
    before = _current(store, "mteb")
    hostile = _mteb_mirror(tmp_path, "hostile")
    _set_meta_name(hostile, "BAAI__bge-base-en-v1.5", name)
    result = _cli(database_url, "ingest", "mteb", "--source", str(hostile))
    assert result.exit_code == 1
    line = _one_line(result)
    assert line.startswith("SourceSchemaError: mteb: ") and f"({reason}: " in line
    assert "more than 5%; nothing was written and the previous evidence stays current." in line
    assert _current(store, "mteb") == before
    with store.session() as session:
        failed = session.execute(sa.select(IngestRun).order_by(IngestRun.id.desc())).scalars().first()  # type: ignore[attr-defined]
    assert failed is not None and failed.status == "failed" and failed.rows_rejected > 0


# --- evidence rows: the Arena parquet of the sample mirror, one row spoiled --------------------------

def _lmsys_mirror(tmp_path: Path, spoil: Any) -> Path:
    mirror = tmp_path / "lmsys"
    shutil.copytree(SAMPLE_LMSYS, mirror)
    file = mirror / "text" / "latest-00000-of-00001.parquet"
    rows = pq.read_table(file).to_pylist()
    spoil(rows[5])
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(file)), file)
    (mirror / "VERSION").write_text("hostile\n")
    return mirror


LMSYS_ROW_CASES: dict[str, tuple[Any, str]] = {
    "name_10000_chars": (lambda r: r.update(model_name="m" * 10_000), "model name is longer than 512 characters"),
    "nul_in_name": (lambda r: r.update(model_name="gpt\x00-4o"), "model name holds a control character"),
    "escape_in_name": (lambda r: r.update(model_name="gpt\x1b]0;pwned\x07"), "model name holds a control character"),
    "category_300_chars": (lambda r: r.update(category="c" * 300), "category is longer than 256 characters"),
    "organization_nul": (lambda r: r.update(organization="Open\x00AI"), "organization holds a control character"),
    "rating_1e300": (lambda r: r.update(rating=1e300), "rating is out of range"),
}


@pytest.mark.parametrize("case", list(LMSYS_ROW_CASES))
def test_a_hostile_arena_row_is_rejected_counted_and_the_rest_goes_in(
        store: Store, database_url: str, tmp_path: Path, case: str) -> None:
    """Case 4 for the Arena parquet: one row of 78 with a 10,000-character name, a NUL or an OSC escape
    in it, a 300-character category or a NUL in the organization is rejected and counted (the long name
    and the NUL used to abort the run on Postgres); the other 77 rows are stored."""
    assert _cli(database_url, "ingest", "lmsys", "--source", str(SAMPLE_LMSYS)).exit_code == 0
    run_before, evidence_before = _current(store, "lmsys")
    spoil, reason = LMSYS_ROW_CASES[case]
    result = _cli(database_url, "ingest", "lmsys", "--source", str(_lmsys_mirror(tmp_path, spoil)), "--json")
    doc = _evidence_rows(result)
    assert (doc["status"], doc["rejected_rows"], doc["rejected"]) == ("success", 1, {reason: 1})
    run_after, evidence_after = _current(store, "lmsys")
    assert run_after != run_before and len(evidence_after) == len(evidence_before) - 1
    assert all(evidence_after[k] == evidence_before[k] for k in evidence_after)
    with store.session() as session:
        kept = session.execute(sa.select(sa.func.count()).select_from(BenchmarkEvidence).where(
            BenchmarkEvidence.run_id == run_before)).scalar()  # type: ignore[arg-type]
    assert kept == len(evidence_before)


# --- 1 % hostile rows in the real MTEB slice ---------------------------------------------------------

@pytest.fixture(scope="module")
def real_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slice")
    with tarfile.open(real_data("mteb", "results-slice-9-models.tar.gz")) as archive:
        archive.extractall(root, filter="data")
    return root


def test_an_ingest_with_one_percent_hostile_rows_stores_the_other_99_percent(
        store: Store, database_url: str, tmp_path: Path, real_slice: Path) -> None:
    """The real 9-model MTEB slice with 1 % of its task scores spoiled (1e300, -5.0, 1.5, a 5,000-digit
    mteb_version, alternating): the run succeeds, counts each spoiled file, and stores exactly the rows
    the clean slice gives minus those."""
    clean = tmp_path / "clean"
    shutil.copytree(real_slice, clean)
    (clean / "RECSYS_MIRROR_VERSION").write_text("clean\n")
    first = _evidence_rows(_cli(database_url, "ingest", "mteb", "--source", str(clean), "--json"))
    _, clean_rows = _current(store, "mteb")
    assert first["rows"] == len(clean_rows) > 1000

    hostile = tmp_path / "hostile"
    shutil.copytree(clean, hostile)
    (hostile / "RECSYS_MIRROR_VERSION").write_text("hostile\n")
    tasks = load_task_map()
    # The spoiled files: one in a hundred of the rows' files, each of a task whose row it alone gives.
    candidates = []
    for path in sorted((hostile / "results").rglob("*.json")):
        if path.name == "model_meta.json" or path.parent.name in ("external", "no_revision_available"):
            continue
        try:
            score = parse_result(path.read_bytes(), file_task=path.stem, tasks=tasks)
        except Exception:  # noqa: S112 - files the parser rejects anyway are not spoiled
            continue
        if score.task_type is not None and "scores" in json.loads(path.read_text()):
            candidates.append(path)
    spoiled = candidates[:: max(1, len(candidates) // max(1, len(clean_rows) // 100))][: len(clean_rows) // 100]
    spoilers = [lambda p: _set_main_scores(p, 1e300), lambda p: _set_main_scores(p, -5.0),
                lambda p: _set_main_scores(p, 1.5), lambda p: _set_json(p, mteb_version="9" * 5000)]
    for i, path in enumerate(spoiled):
        spoilers[i % len(spoilers)](path)
    doc = _evidence_rows(_cli(database_url, "ingest", "mteb", "--source", str(hostile), "--json"))
    assert doc["status"] == "success"
    assert doc["rejected_rows"] - first["rejected_rows"] == len(spoiled) >= len(clean_rows) // 100 - 1
    _, hostile_rows = _current(store, "mteb")
    # Each spoiled file is a rejected row; another revision of the same model may still hold that task.
    assert len(clean_rows) - len(spoiled) <= len(hostile_rows) < len(clean_rows)
    assert all(hostile_rows[k] == clean_rows[k] or k[1] in {p.stem for p in spoiled} for k in hostile_rows)


# --- a validator never rejects a real upstream value ------------------------------------------------

def test_no_real_upstream_value_is_rejected(real_slice: Path) -> None:
    """Every task score of the real MTEB files (the slice and the loose files, legacy and current
    formats, STS correlations down to -0.06, p-MRR below 0, GPUSpeedTask's 78,556 words per second),
    every rating of the real Arena CSVs and of the real Elo excerpt passes the row rules."""
    from recommender_core.sources.mteb.folder import ingest_model_folder

    tasks = load_task_map()
    checked = 0
    for root in (real_slice / "results", real_data("mteb", "embeddings-benchmark-results", "results")):
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            batch = Batch()
            files = [(str(p.relative_to(folder)), p.read_bytes) for p in sorted(folder.rglob("*")) if p.is_file()]
            records = ingest_model_folder(folder.name, files, batch, tasks)
            for record in records:
                check_record("mteb", record)
            checked += len(records)
    assert checked > 1000
    space = real_data("lmsys", "hf-space-chatbot-arena-leaderboard")
    rated = 0
    for csv_file in sorted(space.glob("leaderboard_table_*.csv")):
        batch = Batch()
        try:
            parse_legacy_csv(csv_file.read_text("utf-8-sig"), origin=csv_file.name, batch=batch, published_on=None)
        except SourceSchemaError:  # the 2024-and-later tables carry no ratings at all
            continue
        rated += len(batch.records)
        for record in batch.records:
            check_record("lmsys", record)
        checked += len(batch.records)
    assert rated > 20
    for entry in json.loads(real_data("lmsys", "derived", "elo_data_excerpt_2025-05-11.json").read_text()):
        check_record("lmsys", EvidenceRecord(model=entry["max_model"], category=f"text/{entry['category']}",
                                             value=entry["max_elo"]))
    assert mteb_metric_bounds("cosine_spearman").low == -1 and mteb_metric_bounds("ndcg_at_10").low == 0


# --- property tests: the row validator ---------------------------------------------------------------

_ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=600),
    st.sampled_from(["", " ", "\x00", "\x1b[31m", "a" * 600, "9" * 5000, "ndcg_at_10", "STSBenchmark"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.floats(), max_size=3),
)
_FIELDS = ("model", "category", "value", "metric", "task_type", "lower", "upper", "samples", "rank", "revision",
           "split", "subset_count", "organization", "extra")


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from(["lmsys", "mteb", "outcomes"]),
       replaced=st.dictionaries(st.sampled_from(_FIELDS), _ANYTHING, max_size=4))
def test_any_evidence_record_passes_the_rules_or_is_rejected(source: str, replaced: dict[str, Any]) -> None:
    """Any record (a plausible one with up to four fields replaced by anything) gives None or
    ``RejectedRow``; an accepted one is finite, on its source's scale, of bounded text without control
    characters; ``screen`` keeps exactly the accepted records and counts the others."""
    base = {"model": "gpt-4o", "category": "STSBenchmark" if source == "mteb" else "text/overall",
            "value": 0.5 if source == "mteb" else 1200.0, "metric": "main_score"}
    record = EvidenceRecord(**{**base, **replaced})
    try:
        check_record(source, record)
    except RejectedRow as bad:
        assert bad.reason and "\x00" not in bad.reason
        accepted = False
    else:
        accepted = True
        assert isinstance(record.value, int | float) and math.isfinite(record.value)
        assert isinstance(record.model, str) and 0 < len(record.model) <= 512
        assert not any(ord(c) < 32 for c in record.model + record.category)
        if source == "mteb":
            assert -1 <= record.value <= 1
    batch = Batch(records=[record])
    screen(source, batch)
    assert (len(batch.records), batch.rows_rejected) == ((1, 0) if accepted else (0, 1))


# --- the policy: limits and bounds, one line naming the file, the line and the field -----------------

def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


POLICY_CASES: dict[str, tuple[Any, int | None, str, str]] = {
    # case -> (the policy text, the line, the field, what the message says)
    "int_5000_digits": (lambda t: t.replace("input_tokens: 1200", "input_tokens: " + "9" * 5000, 1), 79,
                        "tasks.chat.token_mix.input_tokens", "a number of 5,000 digits"),
    "input_tokens_400_digits": (lambda t: t.replace("input_tokens: 1200", "input_tokens: " + "9" * 400, 1), 79,
                                "tasks.chat.token_mix.input_tokens", "a number of 400 digits"),
    "input_tokens_over_bound": (lambda t: t.replace("input_tokens: 1200", "input_tokens: 99999999999", 1), 79,
                                "tasks.chat.token_mix.input_tokens", "must be from 0 to 10,000,000"),
    "weight_inf": (lambda t: t.replace("quality: 0.5,", "quality: .inf,", 1), 78, "tasks.chat.weights.quality",
                   "must be a finite number"),
    "weight_nan": (lambda t: t.replace("quality: 0.5,", "quality: .nan,", 1), 78, "tasks.chat.weights.quality",
                   ""),
    "price_1e400": (lambda t: t.replace("price: {input_per_1m: 0.0}", "price: {input_per_1m: 1e400}", 1), 60,
                    "candidates.huggingface/BAAI/bge-base-en-v1.5.price.input_per_1m", "must be a finite number"),
    "nested_10000_deep": (lambda t: t + "extra: " + "[" * 10_000 + "]" * 10_000 + "\n", None, "extra.0.0.0",
                          "nested more than 32 levels deep"),
    "two_mebibytes": (lambda t: t + "#" + "x" * (2 * 1024 * 1024) + "\n", None, "", "more than the 1,048,576"),
}


@pytest.mark.parametrize("case", list(POLICY_CASES))
def test_a_policy_beyond_its_limits_is_one_line_naming_file_line_and_field(
        store: Store, database_url: str, tmp_path: Path, case: str) -> None:
    """Case 4: a 5,000-digit integer (ValueError traceback), nesting 10,000 deep (RecursionError), a
    400-digit input_tokens (OverflowError in score), a .inf weight (NaN utilities made current, then
    snapshot and route failed), a price of 1e400 (passed check, then a misleading StoreError in score):
    `policy check` and `score` now exit 1 with one PolicyError line naming the file, the line and the
    field, and the current scoring run stays current."""
    add_arena(store, [("gpt-4o", "overall", 1300.0, 1250.0)])
    assert _cli(database_url, "score").exit_code == 0
    before = _scoring(store)
    change, line, field, says = POLICY_CASES[case]
    path = _policy(tmp_path, change(default_policy_text()))
    for command in (["policy", "check", str(path)], ["score", "--policy", str(path)]):
        result = _cli(database_url, *command)
        assert result.exit_code == 1, result.output
        message = _one_line(result)
        assert message.startswith(f"PolicyError: Invalid policy {path}"), message
        if line is not None:
            assert f"line {line}, field '{field}'" in message, message
        assert says in message, message
    assert _scoring(store) == before


def _policy_documents() -> st.SearchStrategy[str]:
    import yaml

    base = yaml.safe_load(default_policy_text())

    def mutate(changes: list[tuple[int, Any]]) -> str:
        document = json.loads(json.dumps(base))
        slots: list[tuple[Any, Any]] = []

        def collect(node: Any) -> None:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, value in items:
                slots.append((node, key))
                collect(value)

        collect(document)
        for index, value in changes:
            node, key = slots[index % len(slots)]
            node[key] = value
        return yaml.safe_dump(document, allow_unicode=True, width=10_000)

    values = st.one_of(_ANYTHING, st.just(float("inf")), st.just(10**400), st.recursive(
        st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=5))
    mutated = st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), values), min_size=1, max_size=3).map(
        mutate)
    raw = st.one_of(st.text(max_size=300), st.sampled_from(["[" * 5000, "a: " + "9" * 5000, "{a: [1, .inf]}",
                                                            "version: 1\ncandidates: {}\n", "- - - -"]))
    return st.one_of(mutated, raw)


@settings(max_examples=150, deadline=None)
@given(text=_policy_documents())
def test_any_policy_text_gives_a_policy_or_a_policy_error(text: str) -> None:
    """Any text (the default policy with up to three values replaced by anything, or arbitrary text)
    gives a Policy whose every number is finite and within its bounds, or a RecsysError; nothing else."""
    from recommender_core.policy_limits import check_bounds

    try:
        policy = parse_policy(text, path="p.yaml")
    except RecsysError as exc:
        assert isinstance(exc, PolicyError) and "\n" not in exc.message.strip()
        return
    assert check_bounds(policy) is None
    json.dumps(policy.model_dump(mode="json"), allow_nan=False)


@pytest.mark.parametrize("text", [
    'version: 1\ncandidates:\n  a: {provider: p}\ntasks:\n  "\\n": {static_order: [a]}\n',
    'version: 1\ncandidates:\n  "\\n": {provider: p, price: {input_per_1m: -1}}\ntasks:\n  t: {static_order: [a]}\n',
])
def test_a_policy_key_holding_a_newline_gives_a_one_line_error(text: str) -> None:
    """Hypothesis found it: a key named "\\n" went raw into the field path of the error message,
    which then spanned two lines. The field path and message are escaped now."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, path="p.yaml")
    assert "\n" not in caught.value.message and "\\n" in caught.value.message


# --- mirror isolation --------------------------------------------------------------------------------

def test_nothing_outside_an_mteb_mirror_is_read(store: Store, database_url: str, tmp_path: Path,
                                                real_slice: Path) -> None:
    """Case 5: a result file symlinked to a JSON file outside the mirror was read and ingested, and a
    model folder symlinked to / made the ingest walk the host's file system. Both are now rejected and
    counted (`outside_mirror`) without being read; a symlink that stays inside the mirror is followed.
    The mirror is the real 9-model slice, so three rejects stay under the 5 % rule."""
    outside = tmp_path / "outside"
    outside.mkdir()
    foreign = outside / "Foreign.json"
    shutil.copy(_result_file(real_slice, BGE, "SciFact"), foreign)
    _set_json(foreign, task_name="ZZForeignTask")  # a task no real file holds: stored only if read
    mirror = tmp_path / "mirror"
    shutil.copytree(real_slice, mirror)
    clean = _evidence_rows(_cli(database_url, "ingest", "mteb", "--source", str(mirror), "--json"))
    clean_run, clean_rows = _current(store, "mteb")
    revision = _result_file(mirror, BGE, "SciFact").parent
    (revision / "ZZForeignTask.json").symlink_to(foreign)
    (mirror / "results" / "host__root").symlink_to("/")
    (mirror / "results" / "outside__model").symlink_to(outside, target_is_directory=True)
    (revision / "SciFactCopy.json").symlink_to(revision / "SciFact.json")  # inside: followed
    (mirror / "RECSYS_MIRROR_VERSION").symlink_to(outside / "Foreign.json")  # not read as the version

    result = _cli(database_url, "ingest", "mteb", "--source", str(mirror), "--json")
    doc = _evidence_rows(result)
    assert doc["status"] == "success"
    assert doc["rejected"] == {**clean["rejected"], "outside_mirror": 3}
    assert sorted(doc["details"]["rejected_examples"]["outside_mirror"]) == sorted(
        ["host__root", "outside__model", f"{BGE}/{revision.name}/ZZForeignTask.json"])
    assert not doc["source_version"].startswith("{")
    run, rows = _current(store, "mteb")
    assert run != clean_run and rows == clean_rows  # nothing from outside, everything from inside
    assert not any(category == "ZZForeignTask" for _, category in rows)
    assert doc["details"]["models"] == len([p for p in (real_slice / "results").iterdir() if p.is_dir()])


# --- terminal output: control characters escaped for people, exact in --json -------------------------

EVIL = "evil\x1b[31mred\x1b[0m\r\nspoofed\x07\u202e"


def test_control_characters_are_escaped_in_human_output_and_exact_in_json(
        store: Store, database_url: str, tmp_path: Path) -> None:
    """Case 8: an upstream model name holding ESC[31m and CR/LF (stored by an older version, before the
    row rules) was printed raw by `recsys evidence`, also when piped. Every human-readable output now
    shows such characters escaped (evidence, snapshot, route, error lines), while --json keeps the
    exact stored string."""
    add_arena(store, [(EVIL, "overall", 1300.0, 1250.0), ("gpt-4o", "overall", 1280.0, 1230.0)])
    candidate = "evil\x1b[31m-model"
    entry = f"  {json.dumps(candidate)}: {{provider: acme, aliases: {{lmsys: [{json.dumps(EVIL)}]}}}}\n"
    policy = _policy(tmp_path, default_policy_text().replace("candidates:\n", "candidates:\n" + entry, 1)
                     .replace("static_order: [", f"static_order: [{json.dumps(candidate)}, ", 1))
    assert _cli(database_url, "score", "--policy", str(policy)).exit_code == 0

    escaped = "evil\\x1b[31mred\\x1b[0m\\r\\nspoofed\\x07\\u202e"
    outputs = {
        "evidence": _cli(database_url, "evidence", "--policy", str(policy)),
        "snapshot": _cli(database_url, "snapshot", "--policy", str(policy)),
        "route": _cli(database_url, "route", "chat", "--policy", str(policy)),
        "policy check": _cli(database_url, "policy", "check", str(policy)),
        "error line": _cli(database_url, "policy", "check", str(tmp_path / "missing\x1b[2J.yaml")),
    }
    for what, result in outputs.items():
        text = result.output
        assert not any(c in text for c in "\x1b\r\x07\u202e"), (what, text)
    assert escaped[:16] in outputs["evidence"].stdout  # the cell may fold further on
    assert "evil\\x1b[31m-model" in outputs["route"].stdout
    assert "missing\\x1b[2J.yaml" in outputs["error line"].stderr

    exact = json.loads(_cli(database_url, "evidence", "--json", "--policy", str(policy)).stdout)
    assert EVIL in {row["model"] for row in exact}
    route = json.loads(_cli(database_url, "route", "chat", "--json", "--policy", str(policy)).stdout)
    assert "evil\x1b[31m-model" in [route["primary"], *route["fallbacks"]]
