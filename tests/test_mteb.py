"""`recsys ingest mteb`: the parser, the three ways in (mirror, GitHub API, HF parquet), and realism."""

from __future__ import annotations

import hashlib
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
from recommender_core.sources.http import HttpSettings
from recommender_core.sources.ingest import previous_run
from recommender_core.sources.mteb import MtebSource
from recommender_core.sources.mteb.load import (
    MtebReader,
    Rejected,
    TaskInfo,
    TaskMap,
    choose_splits,
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
# mteb-core's own TaskResult.get_score of every file of the slice, written by scripts/crosscheck_mteb.py reference
SLICE_SCORES = REPO_ROOT / "tests" / "data" / "mteb_slice_scores.json"
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
    assert TASKS["CUREv1"].eval_splits[:2] == ("all", "dentistry_and_oral_health")  # the task's evaluation splits
    assert TASKS["STSBenchmark"].main_score == "cosine_spearman"
    assert TASKS["SprintDuplicateQuestions"].type == "PairClassification"
    # historic names mteb maps when it loads old results
    assert TASKS["8TagsClustering"] == TASKS["EightTagsClustering"]
    assert {"Retrieval", "STS", "Classification", "Clustering", "Reranking", "BitextMining",
            "Summarization"} <= {t.type for t in TASKS.values()}
    assert len(TASKS) > 1500
    # looked up as mteb's loader does: the exact name, else the same name in another case
    assert TASKS.find("DiaBLaBitextMining") == ("DiaBlaBitextMining", TASKS["DiaBlaBitextMining"])
    assert TASKS.find("NoSuchTask") is None


def test_the_readme_names_the_mteb_version_the_task_map_comes_from() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"generated from mteb-core {TASKS.mteb_version}" in readme
    assert re.fullmatch(r"\d+\.\d+\.\d+", TASKS.mteb_version)


def test_new_format_is_the_mean_main_score_over_the_test_subsets() -> None:
    doc = {"task_name": "STS22", "mteb_version": "1.12.0",
           "scores": {"test": [{"hf_subset": "de", "main_score": 0.5}, {"hf_subset": "en", "main_score": 0.75}],
                      "validation": [{"hf_subset": "de", "main_score": 0.1}]}}
    score = parse_result(json.dumps(doc).encode(), file_task="STS22", tasks=TASKS)
    assert (score.value, score.splits, score.subset_count, score.task_type) == (0.625, ("test",), 2, "STS")
    assert score.mteb_version == (1, 12, 0)


def test_split_rules() -> None:
    info = TaskInfo("Retrieval", "ndcg_at_10", ("dev",))
    assert choose_splits(["validation", "test"], info) == ("test",)  # no evaluation split present: test
    assert choose_splits(["dev"], None) == ("dev",)
    assert choose_splits(["train", "dev"], info) == ("dev",)  # the task's own eval split decides
    assert choose_splits(["train", "dev", "test"], info) == ("dev",)  # mteb evaluates dev, not test (MSMARCO)
    both = TaskInfo("Retrieval", "ndcg_at_10", ("dev", "test"))
    assert choose_splits(["dev", "test"], both) == ("test",)  # test, when the task evaluates it
    # several evaluation splits and no test: all of them, in the task's order
    several = TaskInfo("Clustering", "v_measure", ("summaries", "articles"))
    assert choose_splits(["articles", "summaries", "train"], several) == ("summaries", "articles")
    assert choose_splits(["b", "a"], None) == ("b", "a")  # a task the map lacks: every split, as get_score()
    with pytest.raises(Rejected) as info_ambiguous:
        choose_splits(["a", "b"], info)
    assert info_ambiguous.value.reason == "ambiguous_split"
    with pytest.raises(Rejected) as info_missing:
        choose_splits([], info)
    assert info_missing.value.reason == "missing_split"


def test_several_splits_average_every_subset_of_every_split_as_mteb_does() -> None:
    doc = {"task_name": "SwednClusteringP2P", "mteb_version": "1.20.0",
           "scores": {"summaries": [{"hf_subset": "default", "main_score": 0.25, "languages": ["swe-Latn"]}],
                      "articles": [{"hf_subset": "default", "main_score": 0.5, "languages": ["swe-Latn"]},
                                   {"hf_subset": "other", "main_score": 0.75, "languages": ["swe-Latn"]},
                                   # mteb's get_score leaves out a subset that names no language
                                   {"hf_subset": "none", "main_score": 0.0, "languages": []}],
                      "train": [{"hf_subset": "default", "main_score": 0.0, "languages": ["swe-Latn"]}]}}
    score = parse_result(json.dumps(doc).encode(), file_task="SwednClusteringP2P", tasks=TASKS)
    assert (score.value, score.splits, score.subset_count) == (0.5, ("summaries", "articles"), 3)
    assert score.split == "summaries,articles"
    long = TaskMap({"X": TaskInfo("Retrieval", "ndcg_at_1", tuple(f"test_{n}_tokens" for n in range(8)))})
    doc = {"task_name": "X", "scores": {f"test_{n}_tokens": [{"main_score": n, "languages": ["eng-Latn"]}]
                                        for n in range(8)}}
    score = parse_result(json.dumps(doc).encode(), file_task="X", tasks=long)
    assert (score.value, score.split) == (3.5, "8 splits")  # the split column holds 64 characters


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "malformed_json"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),  # nested deeper than the parser recurses
    (b"[1, 2]", "not_a_result_file"),
    (b'{"mteb_dataset_name": "NoSuchTask", "test": {"accuracy": 0.5}}', "unknown_task"),  # legacy: no main score
    (b'{"task_name": "NoSuchTask", "scores": {"test": []}}', "missing_split"),
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
        path.write_text('{"mteb_dataset_name": "NoSuchTask", "test": {"accuracy": 0.5}}')
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
    with pytest.raises(ConfigError, match=r"is a URL, but an MTEB mirror \(or RECSYS_MTEB_URL\) must be a "
                       r"local folder: clone https://github.com/embeddings-benchmark/results") as info:
        _source().run(store, IngestOptions(mirror="https://example.invalid/results"))
    assert info.value.option == "mirror"  # the core names the setting; the CLI adds its flag
    with pytest.raises(ConfigError, match=r"cannot be combined with a mirror \(or RECSYS_MTEB_URL: unset") as info:
        _source(all_models=True).run(store, IngestOptions(mirror=str(SAMPLE)))
    assert info.value.option == "all_models"
    empty = tmp_path / "empty"
    (empty / "results").mkdir(parents=True)
    with pytest.raises(SourceSchemaError, match="no model folders"):
        _source().run(store, IngestOptions(mirror=str(empty)))


def test_the_cli_adds_the_flag_to_a_core_error(store: Store, database_url: str) -> None:
    from recsys_cli.app import app

    result = CliRunner().invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source",
                                      "https://example.invalid/results"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("ConfigError: mteb: 'https://example.invalid/results' is a URL")
    assert result.stderr.endswith("Hugging Face dataset). The mirror is set with --source.\n")
    both = CliRunner().invoke(app, ["--database-url", database_url, "ingest", "mteb", "--all", "--source", str(SAMPLE)])
    assert both.exit_code == 1 and both.stderr.endswith("unset it for this run). Run --all without --source.\n")


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
    # counts per reason: only legacy reranking files whose metric is no longer the task's main metric, which
    # mteb scores null too (test_every_slice_file_mteb_scores_is_evidence_equal_to_mteb)
    assert result.rejected_reasons == {"missing_main_score": 8}
    assert sorted(result.details["rejected_examples"]["missing_main_score"]) == [
        "openai__text-embedding-3-large/1/AskUbuntuDupQuestions.json",
        "openai__text-embedding-3-large/1/MindSmallReranking.json",
        "openai__text-embedding-3-large/1/SciDocsRR.json"]
    # GPUSpeedTask is in no mteb task list: counted, not rejected, and stored with task_type null
    assert (result.details["unmapped_task"], result.details["unmapped_tasks"]) == (1, ["GPUSpeedTask"])
    rows = _evidence(store, result.run_id)
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    speed = rows[(minilm, "GPUSpeedTask")]
    assert (speed.task_type, speed.value, speed.split) == (None, 78556.14835217845, "test")
    # a legacy file named DiaBLaBitextMining is mteb's DiaBlaBitextMining (its loader ignores case):
    # {"test": {"fr-en": {"main_score": 0.007426228877037484}}}
    legacy = real_slice / "results" / "intfloat__e5-mistral-7b-instruct" / "no_revision_available"
    diabla = parse_result((legacy / "DiaBLaBitextMining.json").read_bytes(), file_task="DiaBLaBitextMining",
                          tasks=TASKS)
    assert (diabla.task, diabla.value, diabla.task_type) == ("DiaBlaBitextMining", 0.007426228877037484,
                                                             "BitextMining")
    assert "DiaBLaBitextMining" not in {task for _, task in rows}
    # CUREv1 has eleven evaluation splits and no test: the mean over every subset of all of them
    cure_file = real_slice / "results" / "BAAI__bge-base-en-v1.5" / "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
    cure_doc = json.loads((cure_file / "CUREv1.json").read_bytes())
    subsets = [s["main_score"] for split in TASKS["CUREv1"].eval_splits for s in cure_doc["scores"][split]]
    cure = rows[(BGE, "CUREv1")]
    assert len(subsets) == len(cure_doc["scores"]) * 3 == cure.subset_count == 33  # en, es, fr per split
    assert cure.value == pytest.approx(sum(subsets) / len(subsets), abs=1e-15)
    assert cure.split == "11 splits" and cure.extra["splits"] == list(TASKS["CUREv1"].eval_splits)
    # AFQMC evaluates validation only; the file's test split (hidden labels) holds NaN: validation is used
    afqmc = rows[("intfloat/e5-mistral-7b-instruct", "AFQMC")]
    assert (afqmc.value, afqmc.split) == (0.3898544032547012, "validation")
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


def _slice_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("results/*/*/*.json") if p.name != "model_meta.json")


def test_every_slice_file_mteb_scores_is_evidence_equal_to_mteb(real_slice: Path) -> None:
    """Expected values: mteb-core's ``TaskResult.get_score`` on every file of the real slice, computed by
    ``scripts/crosscheck_mteb.py reference`` in a throwaway environment (mteb version recorded in the file)."""
    expected = json.loads(SLICE_SCORES.read_text(encoding="utf-8"))
    archive = real_data("mteb", "results-slice-9-models.tar.gz")
    assert expected["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest(), \
        "the slice changed: regenerate tests/data/mteb_slice_scores.json (scripts/crosscheck_mteb.py)"
    files = _slice_files(real_slice)
    assert len(files) == expected["files"] == 4658
    equal = 0
    rejected: dict[str, int] = {}
    scored_by_recsys_only = []
    for path in files:
        mteb = expected["scores"][f"{path.parent.parent.name}/{path.parent.name}"][path.stem]
        try:
            ours = parse_result(path.read_bytes(), file_task=path.stem, tasks=TASKS)
        except Rejected as exc:
            assert not isinstance(mteb, float), f"{path}: rejected as {exc.reason}, but mteb scores it {mteb}"
            rejected[exc.reason] = rejected.get(exc.reason, 0) + 1
            continue
        if isinstance(mteb, float):
            assert abs(ours.value - mteb) < 1e-9, f"{path}: recsys {ours.value}, mteb {mteb}"
            equal += 1
        else:
            scored_by_recsys_only.append(path)
    # The one documented addition: legacy PairClassification files hold the metric per similarity function
    # only; recsys takes their maximum for the task's max_<metric>, mteb leaves the main score null.
    for path in scored_by_recsys_only:
        data = json.loads(path.read_bytes())
        info = TASKS[data["mteb_dataset_name"]]
        assert "scores" not in data and info.type == "PairClassification" and info.main_score.startswith("max_")
    assert (equal, len(scored_by_recsys_only), rejected) == (4644, 6, {"missing_main_score": 8})


# --- network: GitHub API tree walk and the HF parquet (cassettes) ------------------------------------


def _vcr() -> vcr.VCR:
    return vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none",
                   filter_headers=["authorization"], match_on=["method", "uri"])


def _network_source(**kwargs: Any) -> MtebSource:
    return _source(**kwargs, http_settings=HttpSettings(max_attempts=1, backoff_base=0.0))


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
        source = _network_source(all_models=True)
        try:
            result = source.run(store, IngestOptions())
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
    assert dry.stdout.startswith("mteb: validated (dry run, nothing written) 32 rows from version sample.")
    again = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(SAMPLE)])
    assert again.exit_code == 0 and again.stdout == (
        "mteb: source version sample is already ingested; nothing to do (use --force to ingest it again).\n")
    forced = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(SAMPLE), "--force"])
    assert re.match(r"mteb: ingested 32 rows from version sample as run \d+\.\n", forced.stdout)
    bad = runner.invoke(app, ["--database-url", database_url, "ingest", "mteb", "--source", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and bad.stderr.count("\n") == 1


def test_a_task_missing_from_the_map_is_evidence_listed_by_policy_check_and_snapshot(
        tmp_path: Path, database_url: str, real_slice: Path) -> None:
    """mteb 1.25.8 wrote SynPerChatbotToneClassification (BAAI/bge-m3), a task later split in two and so in no
    task map today. Derived file: the slice's real AmazonCounterfactualClassification.json of bge-base (test
    and validation splits, four subsets each) with that task name."""
    from recsys_cli.app import app

    unmapped = "SynPerChatbotToneClassification"
    mirror = _copy_sample(tmp_path)
    revision = "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
    doc = json.loads((real_slice / "results" / "BAAI__bge-base-en-v1.5" / revision /
                      "AmazonCounterfactualClassification.json").read_bytes())
    doc["task_name"] = unmapped
    (mirror / "results" / "BAAI__bge-base-en-v1.5" / revision / f"{unmapped}.json").write_text(json.dumps(doc))
    expected = [s["main_score"] for s in doc["scores"]["test"]]
    assert unmapped not in TASKS

    def cli(*args: str) -> Any:
        result = CliRunner().invoke(app, ["--database-url", database_url, *args])
        assert result.exit_code == 0, result.output
        return result

    cli("db", "upgrade")
    ingest = json.loads(cli("ingest", "mteb", "--source", str(mirror), "--json").stdout)
    assert (ingest["rows"], ingest["rejected"], ingest["unmapped_task"], ingest["unmapped_tasks"]) == (
        33, {}, 1, [unmapped])
    row = json.loads(cli("evidence", "--source", "mteb", "--category", unmapped, "--json").stdout)
    assert [(r["model"], r["task_type"], r["split"], r["subset_count"]) for r in row] == [(BGE, None, "test", 4)]
    assert row[0]["value"] == pytest.approx(sum(expected) / len(expected), abs=1e-15)
    dry = cli("ingest", "mteb", "--source", str(mirror), "--dry-run").stdout
    assert f"  unmapped_task: 1 (stored, task_type null)\n  MTEB tasks missing from the task map (1): {unmapped};" \
        in dry
    # policy check and snapshot name it, so users know to regenerate the map
    assert json.loads(cli("policy", "check", "--json").stdout)["unmapped_tasks"] == [unmapped]
    assert f"MTEB tasks missing from the task map (1): {unmapped}; their scores count only as mteb:task/<name>" \
        in " ".join(cli("policy", "check").stdout.split())
    snapshot = json.loads(cli("snapshot", "--json").stdout)
    assert snapshot["unmapped_tasks"] == [unmapped]
    import jsonschema

    schema = json.loads((REPO_ROOT / "docs" / "snapshot.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(snapshot)
    assert "regenerate the task map" in " ".join(cli("snapshot").stdout.split())
    # usable through mteb:task/<name> (and in no mteb:type/...)
    policy = (REPO_ROOT / "recommender_core" / "data" / "default_policy.yaml").read_text(encoding="utf-8")
    assert "evidence: [mteb:type/Classification]" in policy
    path = tmp_path / "policy.yaml"
    path.write_text(policy.replace("evidence: [mteb:type/Classification]", f"evidence: [mteb:task/{unmapped}]"))
    scores = json.loads(cli("score", "--policy", str(path), "--dry-run", "--json").stdout)["scores"]
    bge = next(s for s in scores if s["task"] == "classification" and s["model"] == "huggingface/" + BGE)
    assert not bge["excluded"] and bge["quality"] == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    others = [s for s in scores if s["task"] == "classification" and s["model"] != "huggingface/" + BGE]
    assert others and all(s["excluded"] for s in others)


def test_transport_errors_on_raw_files_fail_the_run(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="404: Not Found")

    source = _source(transport=httpx.MockTransport(handler), http_settings=HttpSettings(max_attempts=1))
    with pytest.raises(SourceHTTPError, match="HTTP 404"):
        source.run(store, IngestOptions())
    source.close()


def test_a_new_candidate_is_fetched_at_once_at_an_unchanged_commit(store: Store) -> None:
    full = load_policy(None)
    narrow = full.model_copy(update={"candidates": {
        name: c for name, c in full.candidates.items() if name != "ollama/nomic-embed-text"}})

    def run(policy: Any) -> Any:
        source = MtebSource(settings=Settings.load(), policy=policy,
                            http_settings=HttpSettings(max_attempts=1, backoff_base=0.0))
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
    previous = previous_run(store, "mteb")
    assert previous is not None
    kept = MtebReader._previous_rows(previous, "BAAI__bge-base-en-v1.5")
    assert kept is not None and {r.model for r in kept} == {BGE}
    # once a fingerprinted mirror is current, its rows never stand in for a GitHub tree
    _source().run(store, IngestOptions(mirror=str(SAMPLE)))
    previous = previous_run(store, "mteb")
    assert previous is not None and MtebReader._previous_rows(previous, "BAAI__bge-base-en-v1.5") is None


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

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secretvalue")
    source = _source(transport=httpx.MockTransport(handler), http_settings=HttpSettings(max_attempts=1))
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

    for all_models in (False, True):
        source = _source(all_models=all_models, transport=httpx.MockTransport(handler),
                         http_settings=HttpSettings(max_attempts=1))
        with pytest.raises(SourceSchemaError, match=r"^mteb: https://"):
            source.run(store, IngestOptions())
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

    source = _source(transport=httpx.MockTransport(handler), http_settings=HttpSettings(max_attempts=1))
    with pytest.raises(SourceSchemaError, match="no model folder in the results repository matches"):
        source.run(store, IngestOptions())
    source.close()


@pytest.mark.parametrize("job", ["lmsys", "mteb"])
def test_a_held_lock_exits_75_before_any_source_io(database_url: str, job: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys_cli.app import app

    from recommender_core.sources.base import Source

    requests: list[httpx.Request | None] = []

    # A spy on the one HTTP seam every source shares: a held lock must stop the run before it.
    original = Source.http
    monkeypatch.setattr(Source, "http", lambda self, token=None: requests.append(None) or original(self, token))
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


def _serve_parquet(body: bytes, sha: str = "d" * 40) -> dict[str, Any]:
    """The Hub API and one data/ parquet file, answered in-process (simulated: no network in tests)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/datasets/mteb/results":
            return httpx.Response(200, json={"id": "mteb/results", "sha": sha})
        if request.url.path.startswith("/api/datasets/mteb/results/tree/"):
            return httpx.Response(200, json=[{"type": "file", "oid": "1", "size": len(body),
                                              "path": "data/train-00000-of-00001.parquet"}])
        return httpx.Response(200, content=body)

    return {"transport": httpx.MockTransport(handler), "http_settings": HttpSettings(max_attempts=1)}


def test_all_models_parquet_averages_every_eval_split_and_keeps_unmapped_tasks(
        store: Store, real_slice: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parquet rows are built from two real files of the slice (one row per subset, as mteb/results
    publishes them): CUREv1 (eleven evaluation splits, no test) and GPUSpeedTask (in no task map)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    revision = "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a"
    folder = real_slice / "results" / "BAAI__bge-base-en-v1.5" / revision
    minilm = real_slice / "results" / "sentence-transformers__all-MiniLM-L6-v2" / \
        "8b3219a92973c328a8e22fadcfa821b5dc75636a"
    rows: dict[str, list[Any]] = {c: [] for c in ("model_name", "model_revision", "task_name", "split", "subset",
                                                  "language", "score", "is_public")}
    for model, path in ((BGE, folder / "CUREv1.json"), ("sentence-transformers/all-MiniLM-L6-v2",
                                                        minilm / "GPUSpeedTask.json")):
        doc = json.loads(path.read_bytes())
        for split, subsets in doc["scores"].items():
            for subset in subsets:
                for column, value in zip(rows, (model, path.parent.name, doc["task_name"], split,
                                                subset["hf_subset"], ",".join(subset["languages"]),
                                                subset["main_score"], True), strict=True):
                    rows[column].append(value)
    buffer = io.BytesIO()
    pq.write_table(pa.table(rows), buffer)
    source = _source(all_models=True, **_serve_parquet(buffer.getvalue()))
    try:
        result = source.run(store, IngestOptions())
    finally:
        source.close()
    assert (result.rows_rejected, result.details["unmapped_tasks"]) == (0, ["GPUSpeedTask"])
    stored = _evidence(store, result.run_id)
    cure = stored[(BGE, "CUREv1")]
    mteb = json.loads(SLICE_SCORES.read_text(encoding="utf-8"))["scores"][f"BAAI__bge-base-en-v1.5/{revision}"]
    assert abs(cure.value - mteb["CUREv1"]) < 1e-9
    assert (cure.subset_count, cure.split, cure.task_type) == (33, "11 splits", "Retrieval")
    assert stored[("sentence-transformers/all-MiniLM-L6-v2", "GPUSpeedTask")].task_type is None


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
    source = _source(all_models=True, **_serve_parquet(bytes(body)))
    with pytest.raises(SourceSchemaError, match=r"^mteb: data/train-00000-of-00001.parquet is corrupt \("):
        source.run(store, IngestOptions())
    source.close()
    assert list_runs(store, source="mteb")[0].status == RunStatus.FAILED


@pytest.mark.parametrize("where", ["version", "load"])
def test_a_mirror_folder_that_cannot_be_listed_is_a_clear_error(store: Store, tmp_path: Path, where: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender_core.sources.mteb.load as module

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
