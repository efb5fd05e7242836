"""Constants of the MTEB source: upstream endpoints, file names, rejection reasons, revision ranks."""

from __future__ import annotations

__all__ = [
    "GITHUB_API",
    "GITHUB_BRANCH",
    "GITHUB_RAW",
    "GITHUB_REPO",
    "HF_API",
    "HF_DATASET",
    "HF_RESOLVE",
    "MIRROR_VERSION_FILE",
    "MODEL_META",
    "PARQUET_COLUMNS",
    "REJECT_AMBIGUOUS_SPLIT",
    "REJECT_MALFORMED",
    "REJECT_MISSING_SCORE",
    "REJECT_MISSING_SPLIT",
    "REJECT_NOT_A_RESULT",
    "REJECT_OUTSIDE_MIRROR",
    "REJECT_UNKNOWN_TASK",
    "REJECT_UNREADABLE",
    "REVISION_RANK_EXTERNAL",
    "REVISION_RANK_NONE",
    "REVISION_RANK_REAL",
    "SKIP_NESTED",
    "SKIP_NOT_JSON",
    "SKIP_UNCHANGED_TREE",
    "STATE_TREE_PREFIX",
    "TASKS_DATA_FILE",
    "UNMAPPED_TASK",
    "UNMAPPED_TASKS",
    "revision_rank",
]

GITHUB_REPO = "embeddings-benchmark/results"
GITHUB_BRANCH = "main"
GITHUB_API = f"https://api.github.com/repos/{GITHUB_REPO}"
GITHUB_RAW = f"https://raw.githubusercontent.com/{GITHUB_REPO}"

HF_DATASET = "mteb/results"
HF_API = f"https://huggingface.co/api/datasets/{HF_DATASET}"
HF_RESOLVE = f"https://huggingface.co/datasets/{HF_DATASET}/resolve"
PARQUET_COLUMNS = ("model_name", "model_revision", "task_name", "split", "subset", "score")

MODEL_META = "model_meta.json"
# A file at a mirror's root whose first line overrides the mirror's version (the shipped sample says "sample").
MIRROR_VERSION_FILE = "RECSYS_MIRROR_VERSION"
TASKS_DATA_FILE = "mteb_tasks.json"
# SourceState keys: one tree sha per tracked model folder (network mode).
STATE_TREE_PREFIX = "github-tree:"

# Rejection reasons (counted per reason, listed in the run summary).
REJECT_UNREADABLE = "unreadable_file"
REJECT_MALFORMED = "malformed_json"
REJECT_NOT_A_RESULT = "not_a_result_file"
REJECT_UNKNOWN_TASK = "unknown_task"
REJECT_MISSING_SPLIT = "missing_split"
REJECT_AMBIGUOUS_SPLIT = "ambiguous_split"
REJECT_MISSING_SCORE = "missing_main_score"
# A file or model folder of a mirror whose real path lies outside the mirror (sources/mirror.py).
REJECT_OUTSIDE_MIRROR = "outside_mirror"

# Scores of tasks the task map does not know: stored with task_type null, counted (not rejected) under
# UNMAPPED_TASK in the run summary, their names listed under UNMAPPED_TASKS.
UNMAPPED_TASK = "unmapped_task"
UNMAPPED_TASKS = "unmapped_tasks"

# Skips: files that are not evidence and not errors.
SKIP_NESTED = "nested_experiment_file"
SKIP_NOT_JSON = "not_a_json_file"
SKIP_UNCHANGED_TREE = "unchanged_model_tree"

# Revision preference when several revisions hold the same task (higher wins, after mteb_version).
REVISION_RANK_REAL = 2  # a model commit sha, or an API version such as "1"
REVISION_RANK_NONE = 1  # "no_revision_available"
REVISION_RANK_EXTERNAL = 0  # "external": copied from the model card, not run by mteb


def revision_rank(revision: str) -> int:
    if revision == "external":
        return REVISION_RANK_EXTERNAL
    if revision in ("no_revision_available", ""):
        return REVISION_RANK_NONE
    return REVISION_RANK_REAL
