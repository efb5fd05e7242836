"""`recsys ingest lmsys`: cassettes for the Hub exchanges, every mirror format, validation, atomicity."""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import vcr
from recsys_cli.app import app
from sqlmodel import col, func, select
from typer.testing import CliRunner

from recommender_core.config import Settings
from recommender_core.errors import SourceError, SourceHTTPError, SourceSchemaError
from recommender_core.evidence import list_evidence
from recommender_core.policy import load_policy
from recommender_core.sources.base import SOURCES, IngestOptions
from recommender_core.sources.http import HttpSettings
from recommender_core.sources.lmsys import LmsysSource
from recommender_core.sources.lmsys import constants as C
from recommender_core.store import Store
from recommender_core.store.runs import list_runs
from recommender_core.store.tables import BenchmarkEvidence, RunStatus

from .conftest import REPO_ROOT, real_data
from .lmsys_data import SAMPLE_MODELS, board_rows, parquet_bytes, rows_page

CASSETTES = REPO_ROOT / "cassettes"
SAMPLE = REPO_ROOT / "sample_mirror" / "lmsys"
LEGACY_SPACE = ("lmsys", "hf-space-chatbot-arena-leaderboard")  # under the real upstream samples
SHA = "05170bb206eda1ad46c9269b496d18d05c57535b"  # the cassettes' dataset sha (cassettes/make_lmsys.py)
FAST = HttpSettings(max_attempts=3, backoff_base=0.01)
runner = CliRunner()


def make_source(**kwargs: Any) -> tuple[LmsysSource, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("http_settings", FAST)
    source = LmsysSource(settings=Settings.load(), policy=load_policy(), sleep=sleeps.append, **kwargs)
    return source, sleeps


@pytest.fixture
def cassette() -> Iterator[Any]:
    recorder = vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none",
                       match_on=("method", "scheme", "host", "port", "path", "query"))
    opened: list[Any] = []

    def use(name: str) -> Any:
        context = recorder.use_cassette(name)
        tape = context.__enter__()
        opened.append(context)
        return tape

    yield use
    for context in reversed(opened):
        context.__exit__(None, None, None)


def ingest(store: Store, mirror: str | None = None, **options: Any) -> Any:
    source, _ = make_source()
    try:
        return source.run(store, IngestOptions(mirror=mirror, **options))
    finally:
        source.close()


def current(store: Store) -> dict[tuple[str, str], BenchmarkEvidence]:
    from recommender_core.evidence import current_run_ids

    run_id = current_run_ids(store, ["lmsys"]).get("lmsys")
    with store.session() as session:
        rows = session.exec(select(BenchmarkEvidence).where(col(BenchmarkEvidence.run_id) == run_id)).all()
        return {(r.category, r.model): r for r in rows}


# --- the Hub, from cassettes ----------------------------------------------------------------------

def test_api_sha_then_parquet_through_the_cdn_redirect(store: Store, cassette: Any) -> None:
    tape = cassette("lmsys_download.yaml")
    source, _ = make_source()
    progress: list[tuple[str, int, int | None]] = []
    source.progress = lambda label: lambda done, total: progress.append((label, done, total))
    result = source.run(store, IngestOptions())
    source.close()
    assert tape.all_played and tape.play_count == 3
    assert tape.requests[2].host == "cas-bridge.xethub.hf.co"
    assert (result.status, result.source_version, result.rows_accepted, result.rows_rejected) == (
        "success", SHA, 78, 0)
    assert progress and progress[-1][0] == "lmsys text" and progress[-1][1] == progress[-1][2]
    rows = current(store)
    expected = {(f"text/{r['category']}", r["model_name"]): r for r in board_rows()}
    assert set(rows) == set(expected)
    for key, row in rows.items():
        want = expected[key]
        assert (row.value, row.lower, row.upper, row.samples, row.rank) == (
            want["rating"], want["rating_lower"], want["rating_upper"], want["vote_count"], want["rank"])
        assert row.source_version == SHA and row.published_on.isoformat() == "2026-11-20"
        assert row.organization == want["organization"] and row.extra["license"] == want["license"]


def test_same_sha_is_unchanged_without_download_and_force_is_idempotent(store: Store, cassette: Any) -> None:
    with vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none").use_cassette("lmsys_download.yaml"):
        assert ingest(store).status == "success"
    with vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none").use_cassette("lmsys_api.yaml") as tape:
        result = ingest(store)  # the cassette holds no download: one would fail the test
        assert tape.all_played
    assert result.status == RunStatus.UNCHANGED and result.source_version == SHA
    with vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none").use_cassette("lmsys_download.yaml"):
        forced = ingest(store, force=True)
    assert forced.status == "success" and forced.rows_accepted == 78
    assert len(current(store)) == 78
    with store.session() as session:
        total = session.exec(select(func.count()).select_from(BenchmarkEvidence)).one()
    assert total == 2 * 78  # two successful runs kept for history, each complete, none duplicated
    assert [r.status for r in list_runs(store, source="lmsys")] == ["success", "unchanged", "success"]


def test_429_then_success_waits_as_asked(store: Store, cassette: Any) -> None:
    tape = cassette("lmsys_429_then_success.yaml")
    source, sleeps = make_source()
    result = source.run(store, IngestOptions())
    source.close()
    assert tape.all_played and result.status == "success" and result.rows_accepted == 78
    assert sleeps == [2.0]


def test_500_fails_the_run_and_keeps_previous_evidence(store: Store, cassette: Any) -> None:
    assert ingest(store, str(SAMPLE)).status == "success"
    before = {k: v.value for k, v in current(store).items()}
    tape = cassette("lmsys_500.yaml")
    with pytest.raises(SourceHTTPError, match=r"answered HTTP 500; run again later") as info:
        ingest(store)
    assert tape.all_played and info.value.status_code == 500
    assert {k: v.value for k, v in current(store).items()} == before
    failed = list_runs(store, source="lmsys")[0]
    assert failed.status == RunStatus.FAILED and failed.source_version == SHA and "HTTP 500" in (failed.error or "")


def test_truncated_download_fails_cleanly(store: Store, cassette: Any) -> None:
    cassette("lmsys_truncated.yaml")
    with pytest.raises(SourceError, match=r"was truncated \(\d+ of \d+ bytes\); run again"):
        ingest(store)
    assert current(store) == {}
    assert list_runs(store, source="lmsys")[0].status == RunStatus.FAILED


def test_schema_change_names_the_missing_columns(store: Store, cassette: Any) -> None:
    cassette("lmsys_schema_change.yaml")
    with pytest.raises(SourceSchemaError) as info:
        ingest(store)
    message = str(info.value)
    assert "lacks the column(s) rating_upper or score_ci_upper, vote_count or observation_count" in message
    assert "rating_q975" in message and "nothing was written" in message
    assert current(store) == {}


# --- mirrors --------------------------------------------------------------------------------------

def test_sample_mirror_covers_every_default_chat_candidate_and_task(store: Store) -> None:
    result = ingest(store, str(SAMPLE))
    assert (result.status, result.source_version) == ("success", "sample")
    policy = load_policy()
    rows = list_evidence(store, policy, source="lmsys")
    chat = {name for name, c in policy.candidates.items() if c.kind == "chat"}
    for task in policy.tasks.values():
        for ref in task.evidence_refs:
            if ref.source == "lmsys":
                assert {r.candidate for r in rows if r.category == ref.selector} >= chat, ref
    # explicit aliases only: the dated mini model maps to gpt-4o-mini, never to anything looser
    assert {r.candidate for r in rows if r.model == "gpt-4o-mini-2024-07-18"} == {"gpt-4o-mini"}
    assert all(r.source_version == "sample" for r in rows)


def test_score_spelling_parquet_file_and_rows_page(tmp_path: Path, memory_store: Store) -> None:
    board = tmp_path / "vision" / C.PARQUET_FILE
    board.parent.mkdir()
    board.write_bytes(parquet_bytes(board_rows(), score_spelling=True))
    result = ingest(memory_store, str(board))
    assert result.rows_accepted == 78 and result.details["configs"] == ["vision"]
    assert ("vision/coding", "gpt-5-chat") in current(memory_store)

    page = tmp_path / "rows.json"
    rows = board_rows()
    for row in rows:  # the JSON API sometimes serialises counts as floats (19038.0)
        row["vote_count"], row["rank"] = float(row["vote_count"]), float(row["rank"])
    page.write_text(json.dumps(rows_page(rows)))
    result = ingest(memory_store, str(page))
    assert result.rows_accepted == 78 and result.rows_rejected == 0
    stored = current(memory_store)[("text/math", "deepseek-v3.2")]
    assert isinstance(stored.samples, int) and stored.samples > 0 and isinstance(stored.rank, int)

    page.write_text(json.dumps(rows_page(board_rows()[:50], total=178)))
    with pytest.raises(SourceSchemaError, match="holds 50 of 178 rows"):
        ingest(memory_store, str(page))


def test_rows_url_is_paged_through(memory_store: Store) -> None:
    rows = board_rows()
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        offset, length = int(request.url.params["offset"]), int(request.url.params["length"])
        return httpx.Response(200, json=rows_page(rows[offset:offset + length], offset=offset, total=len(rows)))

    url = f"{C.DATASETS_SERVER_ROWS_URL}?dataset=lmarena-ai%2Fleaderboard-dataset&config=text&split=latest"
    source, _ = make_source(transport=httpx.MockTransport(handler))
    result = source.run(memory_store, IngestOptions(mirror=url))
    source.close()
    assert result.rows_accepted == 78 and len(seen) == 1  # 78 rows: one page of up to 100
    rows = board_rows() * 2  # 156 rows, two pages; the duplicates are rejected (> 5%: the run fails)
    source, _ = make_source(transport=httpx.MockTransport(handler))
    with pytest.raises(SourceSchemaError, match="78 of 156 rows were rejected"):
        source.run(memory_store, IngestOptions(mirror=url, force=True))
    source.close()
    assert [u.params["offset"] for u in seen[1:]] == ["0", "100"]


def test_hub_compatible_mirror_and_html_instead_of_parquet(memory_store: Store,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_s3cret")
    monkeypatch.setenv("RECSYS_HF_TOKEN_HOSTS", "hub.mirror.internal")  # named by the user: it gets the token
    tokens: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers.get("authorization"))
        if request.url.path.endswith("/api/datasets/" + C.DATASET_ID):
            return httpx.Response(200, json={"id": C.DATASET_ID, "sha": "a" * 40})
        return httpx.Response(200, headers={"Content-Type": "text/html"}, text="<!DOCTYPE html><html>login</html>")

    source, _ = make_source(transport=httpx.MockTransport(handler))
    with pytest.raises(SourceSchemaError, match=r"resolve/a{40}/text/latest-00000-of-00001.parquet is an HTML page"):
        source.run(memory_store, IngestOptions(mirror="https://hub.mirror.internal"))
    source.close()
    assert tokens == ["Bearer hf_s3cret"] * 2
    failed = list_runs(memory_store, source="lmsys")[0]
    assert failed.status == RunStatus.FAILED and "hf_s3cret" not in (failed.error or "")


def test_folder_versions_and_missing_config(tmp_path: Path, memory_store: Store) -> None:
    folder = tmp_path / "mirror"
    (folder / "text").mkdir(parents=True)
    (folder / "text" / C.PARQUET_FILE).write_bytes(parquet_bytes(board_rows()))
    first = ingest(memory_store, str(folder))
    assert len(first.source_version) == 64  # a content hash when nothing pins the version
    (folder / ".git" / "refs" / "heads").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "refs" / "heads" / "main").write_text("b" * 40 + "\n")
    assert ingest(memory_store, str(folder)).source_version == "b" * 40
    (folder / ".git" / "HEAD").write_bytes(b"\xff\xfe")  # a clone broken beyond reading: hashed, not a crash
    assert ingest(memory_store, str(folder)).source_version == first.source_version
    (folder / C.VERSION_FILE).write_bytes(b"\xffnightly\n")
    assert ingest(memory_store, str(folder)).source_version == "\ufffdnightly"
    (folder / C.VERSION_FILE).unlink()
    source, _ = make_source(configs=["text", "webdev"])
    with pytest.raises(SourceError, match=r"has no webdev/latest-00000-of-00001.parquet; lay it out like"):
        source.run(memory_store, IngestOptions(mirror=str(folder), force=True))


def test_a_new_config_is_ingested_at_once_even_if_the_version_is_unchanged(tmp_path: Path, store: Store) -> None:
    folder = tmp_path / "mirror"
    for config in ("text", "vision"):
        (folder / config).mkdir(parents=True)
        (folder / config / C.PARQUET_FILE).write_bytes(parquet_bytes(board_rows()))
    (folder / C.VERSION_FILE).write_text("pinned\n")
    assert ingest(store, str(folder)).status == RunStatus.SUCCESS
    # A run asking for another config is not "unchanged": the version is the same, the scope is not.
    source, _ = make_source(configs=["text", "vision", "text"])  # a config named twice is read once
    try:
        wider = source.run(store, IngestOptions(mirror=str(folder)))
        again = source.run(store, IngestOptions(mirror=str(folder)))
    finally:
        source.close()
    assert (wider.status, again.status) == (RunStatus.SUCCESS, RunStatus.UNCHANGED)
    assert {category.split("/")[0] for category, _ in current(store)} == {"text", "vision"}
    # ...and going back to the default configs is not "unchanged" either (vision would stay current).
    assert ingest(store, str(folder)).status == RunStatus.SUCCESS
    assert {category.split("/")[0] for category, _ in current(store)} == {"text"}


# --- validation -----------------------------------------------------------------------------------

BAD: list[tuple[str, dict[str, Any]]] = [
    ("no model name", {"model_name": "  "}),
    ("rating is not a number", {"rating": None}),
    ("bounds do not contain the rating", {"rating_lower": 1500.0, "rating_upper": 1510.0}),
    ("rating is not finite", {"rating": math.nan}),
    ("rating is not finite", {"rating": math.inf}),
    ("rating is out of range", {"rating": 1e9, "rating_upper": 2e9}),
    ("vote count is out of range", {"vote_count": -3}),
    ("no category", {"category": None}),
]


def test_bad_rows_are_rejected_and_counted(tmp_path: Path, store: Store) -> None:
    models = [(f"model-{i:03d}", "Org", "MIT", 1000.0 + i) for i in range(200)]
    rows = board_rows(models, {"overall": (0.0, 1.0)})
    for i, (_, change) in enumerate(BAD):
        rows[i * 10].update(change)
    rows.append(dict(rows[5]))  # a duplicate
    path = tmp_path / "board.parquet"
    path.write_bytes(parquet_bytes(rows))
    result = ingest(store, str(path))
    expected: dict[str, int] = {"duplicate row": 1}
    for reason, _ in BAD:
        expected[reason] = expected.get(reason, 0) + 1
    assert result.status == "success" and result.rows_rejected == 9 and dict(result.rejected_reasons) == expected
    assert result.rows_accepted == 192 and len(current(store)) == 192
    run = list_runs(store, source="lmsys")[0]
    assert (run.rows_accepted, run.rows_rejected) == (192, 9)


def test_more_than_five_percent_rejected_writes_nothing(tmp_path: Path, store: Store) -> None:
    rows = board_rows()
    for row in rows[:5]:
        row["rating"] = "n/a"
    page = tmp_path / "rows.json"
    page.write_text(json.dumps(rows_page(rows)))
    with pytest.raises(SourceSchemaError, match=r"5 of 78 rows were rejected \(rating is not a number: 5\)"):
        ingest(store, str(page))
    assert current(store) == {}
    run = list_runs(store, source="lmsys")[0]
    assert run.status == RunStatus.FAILED and run.rows_rejected == 5


# --- the legacy Space CSV (real files, read in place) ---------------------------------------------

def test_real_2023_csv(store: Store) -> None:
    path = real_data(*LEGACY_SPACE, "leaderboard_table_20230717.csv")
    result = ingest(store, str(path))
    assert (result.status, result.source_version) == ("success", "2023-07-17")
    rows = current(store)
    gpt4 = rows[("text/overall", "GPT-4")]
    assert gpt4.value == 1211.0 and gpt4.published_on.isoformat() == "2023-07-17" and gpt4.lower is None
    assert rows[("text/overall", "GPT-3.5-turbo")].value == 1124.0
    assert ("text/overall", "Claude-2") not in rows  # "-": unrated, skipped, not rejected
    assert result.rows_rejected == 0 and result.skipped["unrated"] > 0
    assert result.rows_accepted + result.skipped["unrated"] == 38
    assert {r.category for r in rows.values()} == {"text/overall"}


@pytest.mark.parametrize("name", ["leaderboard_table_20240109.csv", "leaderboard_table_20240527.csv",
                                  "leaderboard_table_20250511.csv"])
def test_later_csvs_carry_no_ratings_and_are_refused(name: str, store: Store) -> None:
    path = real_data(*LEGACY_SPACE, name)
    with pytest.raises(SourceSchemaError, match="has no 'Arena Elo rating' column: it carries no ratings"):
        ingest(store, str(path))
    assert current(store) == {}
    assert list_runs(store, source="lmsys")[0].status == RunStatus.FAILED


def test_csv_named_otherwise_is_versioned_by_hash(tmp_path: Path, memory_store: Store) -> None:
    path = tmp_path / "board.csv"
    path.write_text("Model,Arena Elo rating\nalpha,1100\nbeta,-\ngamma,\n")
    result = ingest(memory_store, str(path))
    assert len(result.source_version) == 64 and result.rows_accepted == 1 and result.skipped == {"unrated": 2}
    assert current(memory_store)[("text/overall", "alpha")].published_on is None


@pytest.mark.parametrize("mirror", ["https://user:pw1234@hub.mirror.internal",
                                    "https://user:pw1234@mirror.internal/text/latest-00000-of-00001.parquet",
                                    "https://user:pw1234@mirror.internal/rows?config=text",
                                    "https://user:pw1234@mirror.internal/rows?config=Text"])
def test_mirror_credentials_never_reach_a_message_or_the_run_record(mirror: str, memory_store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/datasets/" + C.DATASET_ID):
            return httpx.Response(200, json={"id": C.DATASET_ID, "sha": 7})
        return httpx.Response(200, headers={"Content-Type": "text/html"}, text="<!DOCTYPE html><html>login</html>")

    source, _ = make_source(transport=httpx.MockTransport(handler))
    with pytest.raises(SourceError) as info:
        source.run(memory_store, IngestOptions(mirror=mirror))
    source.close()
    failed = list_runs(memory_store, source="lmsys")[0]
    assert failed.status == RunStatus.FAILED and "user:***@" in str(info.value)
    assert "pw1234" not in str(info.value) and "pw1234" not in (failed.error or "")


@pytest.mark.parametrize("url", ["http://[::1/x.parquet", "https://example.invalid:port/x.parquet",
                                 "https://example.invalid/rows?dataset=d&config=text&split=latest&offset=abc"])
def test_a_malformed_mirror_url_is_a_clear_error(url: str, memory_store: Store) -> None:
    with pytest.raises(SourceError, match=r"is not a valid mirror URL \(.*\); check the mirror URL"):
        ingest(memory_store, url)
    assert list_runs(memory_store, source="lmsys")[0].status == RunStatus.FAILED


def test_a_csv_the_csv_module_cannot_read_is_a_clear_error(tmp_path: Path, memory_store: Store) -> None:
    path = tmp_path / "leaderboard_table_20231220.csv"
    path.write_text("Model,Arena Elo rating\nGPT-4," + "1" * 200_000 + "\n")
    with pytest.raises(SourceSchemaError, match=r"is not a well-formed CSV \(field larger than field limit"):
        ingest(memory_store, str(path))


def test_a_rows_page_nested_too_deep_is_a_clear_error(tmp_path: Path, memory_store: Store) -> None:
    path = tmp_path / "rows.json"
    path.write_bytes(b'{"rows": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(SourceSchemaError, match="is not valid JSON"):
        ingest(memory_store, str(path))


def test_unsupported_inputs(tmp_path: Path, memory_store: Store) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(SourceError, match=r"notes.txt is not in a supported format. Supported: a parquet file"):
        ingest(memory_store, str(junk))
    with pytest.raises(SourceError, match="does not exist"):
        ingest(memory_store, str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="read from a local file only"):
        ingest(memory_store, "https://example.invalid/leaderboard_table_20230717.csv")
    with pytest.raises(SourceError, match="is not a dataset config name"):
        make_source(configs=["../etc"])


def test_nothing_is_ever_unpickled() -> None:
    for module in (REPO_ROOT / "recommender_core" / "sources").rglob("*.py"):
        tree = ast.parse(module.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                    for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"pickle", "dill", "joblib", "pandas", "cloudpickle"}, module


def test_registered_and_configs_come_from_the_policy() -> None:
    assert SOURCES["lmsys"] is LmsysSource and LmsysSource.job == "ingest-lmsys"
    source, _ = make_source()
    assert source.configs == ("text",)


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_ingest_json_unchanged_and_evidence(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--database-url", database_url]
    assert runner.invoke(app, [*base, "db", "upgrade"]).exit_code == 0
    first = runner.invoke(app, [*base, "ingest", "lmsys", "--source", str(SAMPLE), "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert (doc["status"], doc["source_version"], doc["rows"]) == ("success", "sample", 78)
    monkeypatch.setenv("RECSYS_LMSYS_URL", str(SAMPLE))
    again = runner.invoke(app, [*base, "ingest", "lmsys"])
    assert again.exit_code == 0
    assert again.stdout.startswith("lmsys: source version sample is already ingested; nothing to do")
    shown = runner.invoke(app, [*base, "evidence", "--source", "lmsys", "--model", "claude-sonnet-4-5",
                                "--category", "text/coding", "--json"])
    rows = json.loads(shown.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert {"source", "model", "candidate", "category", "value", "lower", "upper", "samples", "source_version",
            "run_id", "task_type"} <= set(row)
    assert (row["model"], row["candidate"], row["source_version"]) == (
        "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "sample")
    assert row["lower"] < row["value"] < row["upper"] and row["published_on"] == "2026-11-20"


def test_cli_evidence_table_fits_80_columns_and_refuses_unknown_sources(tmp_path: Path) -> None:
    base = ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    runner.invoke(app, [*base, "db", "upgrade"])
    assert runner.invoke(app, [*base, "evidence", "--category", "text/coding"]).stdout.startswith(
        "Evidence: no evidence stored yet; run 'recsys ingest lmsys'")
    runner.invoke(app, [*base, "ingest", "lmsys", "--source", str(SAMPLE)])
    runner.invoke(app, [*base, "ingest", "mteb", "--source", str(REPO_ROOT / "sample_mirror" / "mteb")])
    table = runner.invoke(app, [*base, "evidence"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    lines = [line.rstrip() for line in table.stdout.splitlines()]
    assert max(len(line) for line in lines) <= 80
    # One table per source; numbers and categories never wrap, only long model names may.
    assert "Evidence: lmsys" in lines and "Evidence: mteb" in lines
    arena = [line for line in lines if re.search(r"  text/\w+ +\d+(\.\d+)? +[\d.]+\.\.[\d.]+ +\d+$", line)]
    mteb = [line for line in lines if re.search(r"  [A-Z]\w+ +[A-Z]\w+ +0\.\d+$", line)]
    assert (len(arena), len(mteb)) == (78, 32)  # every category, type and number on one line
    assert any("text/coding" in line and "1446.28..1455.72" in line for line in arena)
    assert any("TwentyNewsgroupsClustering" in line and "Clustering" in line for line in mteb)
    assert all(name in table.stdout for name in ("candidate", "category", "rating", "lower..upper", "votes"))
    assert runner.invoke(app, [*base, "evidence", "--category", "nope"]).stdout.startswith(
        "Evidence: no current evidence matches these filters")
    unknown = runner.invoke(app, [*base, "evidence", "--source", "lmsyss"])
    assert unknown.exit_code == 2 and unknown.stderr.count("\n") == 1
    from recommender_core.sources import available_sources

    assert f"is not a known source; use one of: {', '.join(available_sources())}." in unknown.stderr


def test_cli_dry_run_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner.invoke(app, ["--database-url", url, "db", "upgrade"])
    result = runner.invoke(app, ["--database-url", url, "ingest", "lmsys", "--source", str(SAMPLE), "--dry-run"])
    assert result.exit_code == 0
    assert result.stdout.startswith("lmsys: validated (dry run, nothing written) 78 rows from version sample.")
    runs = runner.invoke(app, ["--database-url", url, "runs", "--json"])
    assert json.loads(runs.stdout) == []


def test_cli_refused_csv_is_one_line_exit_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner.invoke(app, ["--database-url", url, "db", "upgrade"])
    result = runner.invoke(app, ["--database-url", url, "ingest", "lmsys", "--source",
                                 str(real_data(*LEGACY_SPACE, "leaderboard_table_20250511.csv"))])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("SourceSchemaError: lmsys: ")
    assert "carries no ratings" in result.stderr and "Traceback" not in result.output


def test_cassettes_and_sample_mirror_are_reproducible(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_lmsys", CASSETTES / "make_lmsys.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "c").mkdir()
    written = module.write(tmp_path / "c", tmp_path / "m")
    for path in written:
        committed = (CASSETTES / path.name) if path.parent == tmp_path / "c" else (
            SAMPLE / path.relative_to(tmp_path / "m"))
        assert committed.read_bytes() == path.read_bytes(), f"{committed} differs: run cassettes/make_lmsys.py"
    assert len(SAMPLE_MODELS) >= 11


def test_progress_bar_only_on_a_terminal_and_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from recsys_cli.ingest import download_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    piped, terminal = io.StringIO(), Terminal()
    monkeypatch.setattr(sys, "stderr", piped)
    with download_progress(True) as progress:
        assert progress is None  # a CronJob's log gets no bar
    monkeypatch.setattr(sys, "stderr", terminal)
    with download_progress(False) as progress:
        assert progress is None  # --json: nothing but the document
    with download_progress(True) as progress:
        assert progress is not None
        update = progress("lmsys text")
        update(512, 1024)
        update(1024, 1024)
    assert "lmsys text" in terminal.getvalue() and piped.getvalue() == ""
