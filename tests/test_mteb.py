"""`recsys ingest mteb`: the parser, the three ways in (mirror, GitHub API, HF parquet), and realism."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import vcr
from typer.testing import CliRunner

from recommender_core.config import Settings
from recommender_core.errors import ConfigError, SourceError, SourceHTTPError, SourceSchemaError
from recommender_core.evidence import list_evidence
from recommender_core.policy import load_policy
from recommender_core.sources.base import SOURCES, IngestOptions
from recommender_core.sources.http import HttpSettings, SourceClient
from recommender_core.sources.mteb import (
    MtebSource,
    Rejected,
    TaskInfo,
    choose_split,
    load_task_map,
    mirror_version,
    parse_result,
)
from recommender_core.store import Store
from recommender_core.store.runs import current_ingest_run, list_runs
from recommender_core.store.tables import BenchmarkEvidence, RunStatus, SourceState

from .conftest import REPO_ROOT, real_data

SAMPLE = REPO_ROOT / "sample_mirror" / "mteb"
CASSETTES = REPO_ROOT / "cassettes"
TASKS = load_task_map()
BGE = "BAAI/bge-base-en-v1.5"


def _source(**kwargs: Any) -> MtebSource:
    return MtebSource(settings=Settings.load(), policy=load_policy(None), **kwargs)


def _evidence(store: Store, run_id: int | None = None) -> dict[tuple[str, str], BenchmarkEvidence]:
    with store.session() as session:
        query = sa.select(BenchmarkEvidence)
        if run_id is not None:
            query = query.where(BenchmarkEvidence.run_id == run_id)  # type: ignore[arg-type]
        return {(e.model, e.category): e for e in session.execute(query).scalars()}


def _copy_sample(tmp_path: Path) -> Path:
    target = tmp_path / "mirror"
    shutil.copytree(SAMPLE, target)
    (target / "RECSYS_MIRROR_VERSION").unlink()
    return target


# --- the parser and the task map ------------------------------------------------------------------------


def test_task_map_comes_from_mteb_with_types_and_main_metrics() -> None:
    assert TASKS["NFCorpus"] == TaskInfo("Retrieval", "ndcg_at_10", ("test",))
    assert TASKS["STSBenchmark"].main_score == "cosine_spearman"
    assert TASKS["SprintDuplicateQuestions"].type == "PairClassification"
    # historic names mteb maps when it loads old results
    assert TASKS["8TagsClustering"] == TASKS["EightTagsClustering"]
    assert {"Retrieval", "STS", "Classification", "Clustering", "Reranking", "BitextMining",
            "Summarization"} <= {t.type for t in TASKS.values()}
    assert len(TASKS) > 1500


def test_new_format_is_the_mean_main_score_over_the_test_subsets() -> None:
    doc = {"task_name": "STS22", "mteb_version": "1.12.0",
           "scores": {"test": [{"hf_subset": "de", "main_score": 0.5}, {"hf_subset": "en", "main_score": 0.75}],
                      "validation": [{"hf_subset": "de", "main_score": 0.1}]}}
    score = parse_result(json.dumps(doc).encode(), file_task="STS22", tasks=TASKS)
    assert (score.value, score.split, score.subset_count, score.task_type) == (0.625, "test", 2, "STS")
    assert score.mteb_version == (1, 12, 0)


def test_split_rules() -> None:
    info = TaskInfo("Retrieval", "ndcg_at_10", ("dev",))
    assert choose_split(["validation", "test"], info) == "test"
    assert choose_split(["dev"], None) == "dev"
    assert choose_split(["train", "dev"], info) == "dev"  # the task's own eval split decides
    with pytest.raises(Rejected) as info_ambiguous:
        choose_split(["a", "b"], info)
    assert info_ambiguous.value.reason == "ambiguous_split"
    with pytest.raises(Rejected) as info_missing:
        choose_split([], info)
    assert info_missing.value.reason == "missing_split"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "malformed_json"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),  # nested deeper than the parser recurses
    (b"[1, 2]", "not_a_result_file"),
    (b'{"task_name": "NoSuchTask", "scores": {"test": []}}', "unknown_task"),
    (b'{"task_name": "NFCorpus", "scores": {}}', "missing_split"),
    (b'{"task_name": "NFCorpus", "scores": {"test": [{"hf_subset": "default"}]}}', "missing_main_score"),
    (b'{"task_name": "NFCorpus", "scores": {"test": [{"main_score": "high"}]}}', "missing_main_score"),
    (b'{"test": {"map": 0.5}, "mteb_dataset_name": "NFCorpus"}', "missing_main_score"),
])
def test_bad_files_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_result(raw, file_task="NFCorpus", tasks=TASKS)
    assert info.value.reason == reason


def test_legacy_files_use_the_task_main_metric() -> None:
    legacy = b'{"test": {"cos_sim": {"spearman": 0.8}, "evaluation_time": 3.0}, "mteb_dataset_name": "STSBenchmark"}'
    score = parse_result(legacy, file_task="STSBenchmark", tasks=TASKS)
    assert (score.value, score.split, score.subset_count, score.mteb_version) == (0.8, "test", 1, None)
    multi = (b'{"test": {"en": {"accuracy": 0.5}, "de": {"accuracy": 0.7}}, '
             b'"mteb_dataset_name": "AmazonReviewsClassification"}')
    score = parse_result(multi, file_task="AmazonReviewsClassification", tasks=TASKS)
    assert score.subset_count == 2 and score.value == pytest.approx(0.6)
    # max_ap (newer PairClassification) from per-similarity values: the best of them
    pair = b'{"test": {"cos_sim": {"ap": 0.9}, "dot": {"ap": 0.95}}, "mteb_dataset_name": "SprintDuplicateQuestions"}'
    assert parse_result(pair, file_task="SprintDuplicateQuestions", tasks=TASKS).value == 0.95


def test_real_files_parse_to_values_worked_out_by_hand() -> None:
    results = real_data("mteb", "embeddings-benchmark-results", "results")
    bge = results / "BAAI__bge-base-en-v1.5" / "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
    score = parse_result((bge / "STSBenchmark.json").read_bytes(), file_task="STSBenchmark", tasks=TASKS)
    assert (score.value, score.task_type, score.subset_count) == (0.8641801045690194, "STS", 1)
    e5 = results / "intfloat__multilingual-e5-small" / "fd1525a9fd15316a2d503bf26ab031a61d056e98"
    # STS17 test: en-en 0.871582, es-en 0.729968, es-es 0.852723, ko-ko 0.767332 -> 3.221605 / 4
    score = parse_result((e5 / "STS17.json").read_bytes(), file_task="STS17", tasks=TASKS)
    assert score.subset_count == 4 and score.value == pytest.approx(0.80540125, abs=1e-12)
    legacy = results / "openai__text-embedding-3-small" / "1"
    score = parse_result((legacy / "STSBenchmark.json").read_bytes(), file_task="STSBenchmark", tasks=TASKS)
    assert score.value == 0.8423906519 and score.mteb_version is None
    external = results / "BAAI__bge-base-en-v1.5" / "external" / "STS16.json"
    assert parse_result(external.read_bytes(), file_task="STS16", tasks=TASKS).value == 0.8547685776238286
    rejected = {}
    for path in results.rglob("*.json"):
        if path.name != "model_meta.json":
            try:
                parse_result(path.read_bytes(), file_task=path.stem, tasks=TASKS)
            except Rejected as exc:
                rejected[f"{path.parent.name}/{path.name}"] = exc.reason
    # the one legacy file whose metric ("map") is not the task's main metric today (map_at_1000);
    # mteb itself scores it null
    assert rejected == {"1/AskUbuntuDupQuestions.json": "missing_main_score"}


# --- local mirrors -----------------------------------------------------------------------------------


def test_sample_mirror_covers_every_embedding_candidate_and_reads_sample(store: Store) -> None:
    result = _source().run(store, IngestOptions(mirror=str(SAMPLE)))
    assert result.status == RunStatus.SUCCESS and result.source_version == "sample" and result.rows_rejected == 0
    policy = load_policy(None)
    rows = list_evidence(store, policy, source="mteb")
    covered = {r.candidate for r in rows}
    assert set(policy.candidates_of_kind("embedding")) <= covered
    assert {r.task_type for r in rows} >= {"Retrieval", "STS", "Classification", "Clustering"}
    bge = {r.category: r for r in rows if r.model == BGE}
    sts22 = json.loads(next((SAMPLE / "results" / "BAAI__bge-base-en-v1.5").glob("*/STS22.json")).read_text())
    subsets = [s["main_score"] for s in sts22["scores"]["test"]]
    assert bge["STS22"].value == pytest.approx(sum(subsets) / len(subsets))
    assert bge["STS22"].subset_count == len(subsets) == 5 and bge["STS22"].split == "test"
    assert bge["STS22"].revision == "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
    # revision 3 (mteb 1.18.0) wins over the legacy revision 1 for the same task
    small = {r.category: r for r in rows if r.model == "openai/text-embedding-3-small"}
    assert small["STSBenchmark"].revision == "3" and small["ArxivClusteringS2S"].revision == "1"
    assert small["SprintDuplicateQuestions"].value == 0.9288
    again = _source().run(store, IngestOptions(mirror=str(SAMPLE)))
    assert again.status == RunStatus.UNCHANGED
    forced = _source().run(store, IngestOptions(mirror=str(SAMPLE), force=True))
    assert forced.status == RunStatus.SUCCESS and forced.rows_accepted == result.rows_accepted


def test_mirror_fingerprint_and_git_head(tmp_path: Path) -> None:
    mirror = _copy_sample(tmp_path)
    first = mirror_version(mirror)
    assert first.startswith("files:") and mirror_version(mirror) == first
    target = next(mirror.rglob("NFCorpus.json"))
    os.utime(target, ns=(1, 1))
    assert mirror_version(mirror) != first
    git = mirror / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("f4cc6c8b365a3c779dbc708d6affe0b0355b2ddf\n")
    assert mirror_version(mirror) == "f4cc6c8b365a3c779dbc708d6affe0b0355b2ddf"
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs with: peeled\n0123456789abcdef0123456789abcdef01234567 "
                                     "refs/heads/main\n")
    assert mirror_version(mirror) == "0123456789abcdef0123456789abcdef01234567"
    # A broken clone (no HEAD: an interrupted init container) is fingerprinted, not a crash.
    (git / "HEAD").unlink()
    assert mirror_version(mirror).startswith("files:")
    (mirror / "RECSYS_MIRROR_VERSION").write_bytes(b"\xffnightly\n")  # not UTF-8: still a version
    assert mirror_version(mirror) == "\ufffdnightly"


def test_a_file_name_that_is_not_utf8_is_one_rejected_file(store: Store, tmp_path: Path) -> None:
    mirror = _copy_sample(tmp_path)
    folder = next(mirror.rglob("NFCorpus.json")).parent
    with open(os.fsencode(folder) + b"/\xffTask.json", "wb") as handle:
        handle.write(b"{}")
    version = mirror_version(mirror)
    assert version.startswith("files:") and version == mirror_version(mirror)
    result = _source().run(store, IngestOptions(mirror=str(mirror)))
    assert (result.status, result.rows_accepted, result.rejected_reasons) == ("success", 32, {"unknown_task": 1})


def test_bad_files_are_counted_and_odd_paths_handled(store: Store, tmp_path: Path) -> None:
    mirror = _copy_sample(tmp_path)
    bge = mirror / "results" / "BAAI__bge-base-en-v1.5" / "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
    (bge / "SciFact.json").write_text("{ truncated")
    # a variant folder keeps its suffix; a nested experiment folder is skipped, not rejected
    variant = mirror / "results" / "openai__text-embedding-3-small_(embed_dim=512)" / "3"
    shutil.copytree(mirror / "results" / "openai__text-embedding-3-small" / "3", variant)
    nested = bge / "experiments" / "model_kwargs_{}"
    nested.mkdir(parents=True)
    shutil.copy(bge / "NFCorpus.json", nested / "NFCorpus.json")
    # no model_meta.json: the folder name gives the model name
    shutil.copytree(mirror / "results" / "openai__text-embedding-3-large", mirror / "results" / "acme__embed-1")
    for meta in (mirror / "results" / "acme__embed-1").rglob("model_meta.json"):
        meta.unlink()
    result = _source().run(store, IngestOptions(mirror=str(mirror)))
    assert result.status == RunStatus.SUCCESS
    assert result.rejected_reasons == {"malformed_json": 1}
    assert result.skipped["nested_experiment_file"] == 1
    rows = _evidence(store, result.run_id)
    assert ("openai/text-embedding-3-small_(embed_dim=512)", "NFCorpus") in rows
    assert ("acme/embed-1", "NFCorpus") in rows
    assert (BGE, "SciFact") not in rows
    assert result.details["rejected_examples"]["malformed_json"] == [
        "BAAI__bge-base-en-v1.5/a5beb1e3e68b9ab74eb54cfd186867f64f240e1a/SciFact.json"]


def test_too_many_rejects_fail_and_keep_the_previous_evidence(store: Store, tmp_path: Path) -> None:
    mirror = _copy_sample(tmp_path)
    good = _source().run(store, IngestOptions(mirror=str(mirror)))
    tasks = sorted(p for p in (mirror / "results" / "BAAI__bge-base-en-v1.5").rglob("*.json")
                   if p.name != "model_meta.json")
    for path in tasks[:3]:
        path.write_text('{"task_name": "NoSuchTask", "scores": {"test": []}}')
    scifact = next((mirror / "results" / "nomic-ai__nomic-embed-text-v1.5").rglob("SciFact.json"))
    scifact.unlink()
    scifact.symlink_to(tmp_path / "gone.json")  # unreadable
    with pytest.raises(SourceSchemaError) as info:
        _source().run(store, IngestOptions(mirror=str(mirror)))
    assert "unknown_task: 3" in str(info.value) and "unreadable_file: 1" in str(info.value)
    assert "nothing was written" in str(info.value)
    current = current_ingest_run(store, "mteb")
    assert current is not None and current.id == good.run_id
    assert list_runs(store, source="mteb")[0].status == RunStatus.FAILED
    assert len(_evidence(store)) == good.rows_accepted


def test_a_missing_or_url_mirror_is_a_clear_config_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope does not exist; pass a clone or mirror"):
        _source().run(store, IngestOptions(mirror=str(tmp_path / "nope")))
    (tmp_path / "results.tar.gz").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"results.tar.gz is not a directory; .* \(an unpacked folder\)"):
        _source().run(store, IngestOptions(mirror=str(tmp_path / "results.tar.gz")))
    with pytest.raises(ConfigError, match=r"is a URL, but an MTEB mirror \(--source or RECSYS_MTEB_URL\) must be a "
                       r"local folder: clone https://github.com/embeddings-benchmark/results"):
        _source().run(store, IngestOptions(mirror="https://example.invalid/results"))
    with pytest.raises(ConfigError, match=r"cannot be combined with a mirror \(--source, or RECSYS_MTEB_URL: unset"):
        _source().run(store, IngestOptions(mirror=str(SAMPLE), all_models=True))
    empty = tmp_path / "empty"
    (empty / "results").mkdir(parents=True)
    with pytest.raises(SourceSchemaError, match="no model folders"):
        _source().run(store, IngestOptions(mirror=str(empty)))


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    archive_path = real_data("mteb", "results-slice-9-models.tar.gz")
    target = tmp_path_factory.mktemp("mteb-slice")
    with tarfile.open(archive_path) as archive:
        archive.extractall(target, filter="data")
    yield target


def test_real_slice_ingests_with_hand_checked_scores(store: Store, real_slice: Path) -> None:
    files = sum(1 for p in real_slice.rglob("*") if p.is_file())
    assert files == 4680
    result = _source().run(store, IngestOptions(mirror=str(real_slice)))
    assert result.status == RunStatus.SUCCESS and result.details["models"] == 9
    assert result.rows_rejected / (result.rows_accepted + result.rows_rejected) < 0.05
    assert set(result.rejected_reasons) <= {"ambiguous_split", "missing_main_score", "unknown_task"}
    rows = _evidence(store, result.run_id)
    # BAAI/bge-base-en-v1.5 STSBenchmark: one default subset, main_score 0.8641801045690194
    assert rows[(BGE, "STSBenchmark")].value == 0.8641801045690194
    # CTKFactsNLI has test and validation: test wins (one subset, 0.7158080092890192)
    ctk = rows[(BGE, "CTKFactsNLI")]
    assert (ctk.value, ctk.split, ctk.subset_count) == (0.7158080092890192, "test", 1)
    # CmedqaRetrieval has only a dev split: that split is used (0.02423)
    cmedqa = rows[(BGE, "CmedqaRetrieval")]
    assert (cmedqa.value, cmedqa.split, cmedqa.task_type) == (0.02423, "dev", "Retrieval")
    # legacy multilingual file of text-embedding-3-large revision 1: {"test": {"en": {"accuracy": 0.48698}}}
    amazon = rows[("openai/text-embedding-3-large", "AmazonReviewsClassification")]
    assert (amazon.value, amazon.revision, amazon.subset_count) == (0.48698, "1", 1)
    # no model_meta.json in e5-mistral's no_revision_available folder: the folder name is the model
    assert {m for m, _ in rows} == {
        "BAAI/bge-base-en-v1.5", "Snowflake/snowflake-arctic-embed-m", "intfloat/e5-mistral-7b-instruct",
        "nomic-ai/nomic-embed-text-v1.5", "openai/text-embedding-3-large", "openai/text-embedding-3-small",
        "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-mpnet-base-v2", "thenlper/gte-base"}


# --- network: GitHub API tree walk and the HF parquet (cassettes) ------------------------------------


def _vcr() -> vcr.VCR:
    return vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none",
                   filter_headers=["authorization"], match_on=["method", "uri"])


def _network_source() -> MtebSource:
    client = SourceClient(source="mteb", settings=HttpSettings(max_attempts=1, backoff_base=0.0))
    return _source(client=client)


def test_github_walk_then_unchanged_trees_are_skipped(store: Store) -> None:
    with _vcr().use_cassette("mteb_github_first.yaml") as cassette:
        source = _network_source()
        try:
            first = source.run(store, IngestOptions())
        finally:
            source.close()
        assert cassette.all_played
    assert first.status == RunStatus.SUCCESS and first.source_version == "5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e80"
    assert first.details["models_fetched"] == 5 and first.rows_rejected == 0
    sample = _evidence(store, first.run_id)
    assert {m for m, _ in sample} == {BGE, "intfloat/e5-mistral-7b-instruct", "nomic-ai/nomic-embed-text-v1.5",
                                       "openai/text-embedding-3-large", "openai/text-embedding-3-small"}
    with store.session() as session:
        states = {s.key: s.value for s in session.execute(sa.select(SourceState)).scalars()}
    assert len(states) == 5 and "github-tree:BAAI__bge-base-en-v1.5" in states

    with _vcr().use_cassette("mteb_github_second.yaml") as cassette:
        source = _network_source()
        try:
            second = source.run(store, IngestOptions())
        finally:
            source.close()
        assert cassette.all_played  # only BAAI's tree and files were fetched
    assert second.details["models_fetched"] == 1 and second.details["models_unchanged"] == 4
    assert second.skipped == {"unchanged_model_tree": 4}
    rows = _evidence(store, second.run_id)
    assert len(rows) == len(sample)
    assert rows[(BGE, "STSBenchmark")].value == 0.9001
    assert rows[("openai/text-embedding-3-large", "NFCorpus")].value == sample[
        ("openai/text-embedding-3-large", "NFCorpus")].value
    assert rows[(BGE, "STSBenchmark")].source_version == "7a2c4e6f8b0d1a3c5e7f9b2d4a6c8e0f1b3d5a79"


def test_github_rate_limit_is_a_clear_error_and_a_failed_run(store: Store) -> None:
    with _vcr().use_cassette("mteb_github_ratelimit.yaml"):
        source = _network_source()
        try:
            with pytest.raises(SourceHTTPError) as info:
                source.run(store, IngestOptions())
        finally:
            source.close()
    message = str(info.value)
    assert "HTTP 403" in message and "rate limit is exhausted until" in message and "GITHUB_TOKEN" in message
    assert list_runs(store, source="mteb")[0].status == RunStatus.FAILED


def test_all_models_from_the_hf_parquet(store: Store) -> None:
    with _vcr().use_cassette("mteb_hf_all.yaml") as cassette:
        source = _network_source()
        try:
            result = source.run(store, IngestOptions(all_models=True))
        finally:
            source.close()
        assert cassette.all_played
    assert result.source_version == "hf:c0ffee00d15ea5e5b0a710ad0f1ce0bead5eed42"
    rows = _evidence(store, result.run_id)
    mirror = _evidence_from_sample(store)
    # the same scores as the sample mirror's files (the parquet was built from them)
    for key, value in mirror.items():
        assert rows[key].value == pytest.approx(value, abs=1e-12), key
    nfcorpus = rows[(BGE, "NFCorpus")]
    assert nfcorpus.revision != "external" and nfcorpus.split == "test"


def _evidence_from_sample(store: Store) -> dict[tuple[str, str], float]:
    source = _source()
    batch = source.load("sample", IngestOptions(mirror=str(SAMPLE)))
    return {(r.model, r.category): r.value for r in batch.records if r.revision != "1"}


def test_registered_and_cli_prints_evidence(tmp_path: Path, database_url: str) -> None:
    from recsys_cli.app import app

    assert SOURCES["mteb"] is MtebSource
    runner = CliRunner()
    assert runner.invoke(app, ["--database-url", database_url, "db", "upgrade"]).exit_code == 0
    ingest = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(SAMPLE), "--json"])
    assert ingest.exit_code == 0, ingest.output
    assert json.loads(ingest.stdout)["rows"] == 32
    shown = runner.invoke(app, ["--database-url", database_url, "evidence", "--source", "mteb", "--model", BGE,
                                "--json"])
    assert shown.exit_code == 0
    rows = json.loads(shown.stdout)
    assert {r["category"] for r in rows} == {"NFCorpus", "SciFact", "STSBenchmark", "STS22",
                                             "Banking77Classification", "TwentyNewsgroupsClustering"}
    sts22 = next(r for r in rows if r["category"] == "STS22")
    assert sts22["task_type"] == "STS" and sts22["subset_count"] == 5 and sts22["split"] == "test"
    assert sts22["revision"] and sts22["source_version"] == "sample"
    dry = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(SAMPLE), "--dry-run"])
    assert dry.stdout.startswith("mteb: dry-run, version sample, 32 rows, 0 rejected (dry run, nothing written).")
    again = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(SAMPLE)])
    assert again.exit_code == 0 and again.stdout == (
        "mteb: source version sample is already ingested; nothing to do (use --force to ingest it again).\n")
    forced = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(SAMPLE), "--force"])
    assert re.match(r"mteb: success, version sample, 32 rows, 0 rejected as run \d+\.\n", forced.stdout)
    bad = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and bad.stderr.count("\n") == 1


def test_transport_errors_on_raw_files_fail_the_run(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="404: Not Found")

    client = SourceClient(source="mteb", transport=httpx.MockTransport(handler),
                          settings=HttpSettings(max_attempts=1))
    source = _source(client=client)
    with pytest.raises(SourceHTTPError, match="HTTP 404"):
        source.run(store, IngestOptions())
    source.close()


def test_a_new_candidate_is_fetched_at_once_at_an_unchanged_commit(store: Store) -> None:
    full = load_policy(None)
    narrow = full.model_copy(update={"candidates": {
        name: c for name, c in full.candidates.items() if name != "ollama/nomic-embed-text"}})

    def run(policy: Any) -> Any:
        client = SourceClient(source="mteb", settings=HttpSettings(max_attempts=1, backoff_base=0.0))
        source = MtebSource(settings=Settings.load(), policy=policy, client=client)
        try:
            return source.run(store, IngestOptions())
        finally:
            source.close()

    with _vcr().use_cassette("mteb_github_first.yaml", allow_playback_repeats=True):
        first = run(narrow)
        assert first.status == RunStatus.SUCCESS and first.details["models_fetched"] == 4
        assert run(narrow).status == RunStatus.UNCHANGED
        # The policy gained a candidate: same commit, but only the new model's tree is walked and read.
        wider = run(full)
    assert wider.status == RunStatus.SUCCESS and wider.source_version == first.source_version
    assert (wider.details["models_fetched"], wider.details["models_unchanged"]) == (1, 4)
    assert "nomic-ai/nomic-embed-text-v1.5" in {m for m, _ in _evidence(store, wider.run_id)}


def test_only_commit_evidence_stands_in_for_an_unchanged_tree(store: Store) -> None:
    with _vcr().use_cassette("mteb_github_first.yaml"):
        source = _network_source()
        try:
            source.run(store, IngestOptions())
        finally:
            source.close()
    probe = _source()
    probe._store = store
    kept = probe._previous_rows("BAAI__bge-base-en-v1.5")
    assert kept is not None and {r.model for r in kept} == {BGE}
    # once a fingerprinted mirror is current, its rows never stand in for a GitHub tree
    _source().run(store, IngestOptions(mirror=str(SAMPLE)))
    assert probe._previous_rows("BAAI__bge-base-en-v1.5") is None


def test_two_folders_of_one_model_merge_into_one_row_per_task(store: Store, tmp_path: Path) -> None:
    mirror = _copy_sample(tmp_path)
    bge = next((mirror / "results" / "BAAI__bge-base-en-v1.5").iterdir())
    other = mirror / "results" / "mirror__bge" / "external"
    other.mkdir(parents=True)
    meta = json.loads((bge / "model_meta.json").read_text())
    (other / "model_meta.json").write_text(json.dumps({**meta, "revision": "external"}))
    sts = json.loads((bge / "STSBenchmark.json").read_text())
    sts["mteb_version"] = None
    (other / "STSBenchmark.json").write_text(json.dumps(sts).replace('"main_score": 0.', '"main_score": 0.0'))
    (other / "STS12.json").write_text(json.dumps({**sts, "task_name": "STS12"}))
    result = _source().run(store, IngestOptions(mirror=str(mirror)))
    assert result.status == RunStatus.SUCCESS and result.details["merged_folders"] == 1
    rows = _evidence(store, result.run_id)
    assert rows[(BGE, "STSBenchmark")].revision == bge.name  # mteb 1.18.0 beats an external copy
    assert rows[(BGE, "STS12")].revision == "external"


def test_dry_run_writes_nothing(store: Store) -> None:
    result = _source().run(store, IngestOptions(mirror=str(SAMPLE), dry_run=True))
    assert result.status == "dry-run" and result.rows_accepted == 32
    assert _evidence(store) == {} and list_runs(store, source="mteb") == []


def test_github_token_is_sent_and_never_printed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"message": "Bad credentials"})

    def factory(source: str, token: str | None) -> SourceClient:
        return SourceClient(source=source, token=token, transport=httpx.MockTransport(handler),
                            settings=HttpSettings(max_attempts=1))

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secretvalue")
    monkeypatch.setattr(MtebSource, "client_factory", staticmethod(factory))
    source = _source()
    with pytest.raises(SourceHTTPError) as info:
        source.run(store, IngestOptions())
    source.close()
    assert seen[0].headers["authorization"] == "Bearer ghp_secretvalue"
    assert str(seen[0].url) == "https://api.github.com/repos/embeddings-benchmark/results/commits/main"
    assert "ghp_secretvalue" not in str(info.value) and "HTTP 401" in str(info.value)


@pytest.mark.parametrize("answer", [[], "main", {"sha": 42}])
def test_an_api_answer_of_the_wrong_shape_is_a_clear_error(store: Store, answer: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    def factory(source: str, token: str | None) -> SourceClient:
        return SourceClient(source=source, token=token, transport=httpx.MockTransport(handler),
                            settings=HttpSettings(max_attempts=1))

    monkeypatch.setattr(MtebSource, "client_factory", staticmethod(factory))
    for options in (IngestOptions(), IngestOptions(all_models=True)):
        source = _source()
        with pytest.raises(SourceSchemaError, match=r"^mteb: https://"):
            source.run(store, options)
        source.close()
    assert [r.status for r in list_runs(store, source="mteb")] == [RunStatus.FAILED] * 2


def test_malformed_tree_entries_are_left_out(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "c" * 40

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/commits/main"):
            return httpx.Response(200, json={"sha": commit})
        if path.endswith(f"/git/trees/{commit}"):
            return httpx.Response(200, json={"tree": ["results", {"path": "results", "type": "tree", "sha": "r" * 40}]})
        return httpx.Response(200, json={"tree": [None, {"type": "tree"}, {"path": 3, "type": "tree", "sha": "x"}]})

    def factory(source: str, token: str | None) -> SourceClient:
        return SourceClient(source=source, token=token, transport=httpx.MockTransport(handler),
                            settings=HttpSettings(max_attempts=1))

    monkeypatch.setattr(MtebSource, "client_factory", staticmethod(factory))
    source = _source()
    with pytest.raises(SourceSchemaError, match="no model folder in the results repository matches"):
        source.run(store, IngestOptions())
    source.close()


@pytest.mark.parametrize("job", ["lmsys", "mteb"])
def test_a_held_lock_exits_75_before_any_source_io(database_url: str, job: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys_cli.app import app

    from recommender_core.sources.lmsys import LmsysSource

    requests: list[httpx.Request] = []

    def factory(source: str, token: str | None) -> SourceClient:
        return SourceClient(source=source, token=token, settings=HttpSettings(max_attempts=1),
                            transport=httpx.MockTransport(lambda r: requests.append(r) or httpx.Response(500)))

    monkeypatch.setattr(MtebSource, "client_factory", staticmethod(factory))
    original = LmsysSource.http
    monkeypatch.setattr(LmsysSource, "http", lambda self: requests.append(None) or original(self))  # type: ignore
    store = Store(database_url)
    store.upgrade()
    try:
        with store.job_lock(f"ingest-{job}"):
            result = CliRunner().invoke(app, ["--database-url", database_url, "ingest", job])
        assert result.exit_code == 75, result.output
        assert result.stderr.startswith(f"LockHeldError: Another 'ingest-{job}' run holds its lock")
        assert result.stderr.count("\n") == 1 and requests == []
        assert list_runs(store, source=job) == []
    finally:
        store.dispose()


def test_all_models_with_a_corrupt_parquet_page_fails_cleanly(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = ("model_name", "model_revision", "task_name", "split", "subset", "language", "score", "is_public")
    table = pa.table({c: [f"{c}-{i}" for i in range(1000)] for c in columns[:6]}
                     | {"score": [0.5] * 1000, "is_public": [True] * 1000})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    body = bytearray(buffer.getvalue())
    body[40:140] = b"\xff" * 100  # a data page, not the footer: the file opens, reading it fails
    sha = "d" * 40

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/datasets/mteb/results":
            return httpx.Response(200, json={"id": "mteb/results", "sha": sha})
        if request.url.path.startswith("/api/datasets/mteb/results/tree/"):
            return httpx.Response(200, json=[{"type": "file", "oid": "1", "size": len(body),
                                              "path": "data/train-00000-of-00001.parquet"}])
        return httpx.Response(200, content=bytes(body))

    def factory(source: str, token: str | None) -> SourceClient:
        return SourceClient(source=source, token=token, transport=httpx.MockTransport(handler),
                            settings=HttpSettings(max_attempts=1))

    monkeypatch.setattr(MtebSource, "client_factory", staticmethod(factory))
    source = _source()
    with pytest.raises(SourceSchemaError, match=r"^mteb: data/train-00000-of-00001.parquet is corrupt \("):
        source.run(store, IngestOptions(all_models=True))
    source.close()
    assert list_runs(store, source="mteb")[0].status == RunStatus.FAILED


@pytest.mark.parametrize("where", ["version", "load"])
def test_a_mirror_folder_that_cannot_be_listed_is_a_clear_error(store: Store, tmp_path: Path, where: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender_core.sources.mteb as module

    mirror = _copy_sample(tmp_path)
    blocked = next(mirror.rglob("NFCorpus.json")).parent
    real_scandir = os.scandir
    listed = {"n": 0}

    def scandir(path: Any) -> Any:
        if Path(path) == blocked:
            listed["n"] += 1
            # The fingerprint lists the folder first; "load" lets that pass and fails while reading.
            if where == "version" or listed["n"] > 1:
                raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(module.os, "scandir", scandir)
    with pytest.raises(SourceError, match=r"^mteb: the mirror .* cannot be read \(Permission denied: .*"
                                          r"; check that it is complete and readable"):
        _source().run(store, IngestOptions(mirror=str(mirror)))
    assert list_runs(store, source="mteb")[0].status == RunStatus.FAILED
