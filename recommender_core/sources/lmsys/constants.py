"""Constants of the LMArena source: where the data lives and what its rows look like (SOURCES.md A).

Kept apart from the parser so a moved dataset or a renamed column is a one-line change here.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "COLUMN_SPELLINGS",
    "DATASETS_SERVER_ROWS_URL",
    "DATASET_ID",
    "DEFAULT_CONFIGS",
    "HF_ENDPOINT",
    "LEGACY_CSV_NAME",
    "LEGACY_MODEL_COLUMN",
    "LEGACY_RATING_COLUMN",
    "LEGACY_UNRATED",
    "MAX_RATING",
    "MAX_SAMPLES",
    "MIN_RATING",
    "OPTIONAL_COLUMNS",
    "PARQUET_FILE",
    "REQUIRED_COLUMNS",
    "ROWS_PAGE_LENGTH",
    "SPLIT",
    "VERSION_FILE",
    "api_url",
    "parquet_url",
]

HF_ENDPOINT: Final = "https://huggingface.co"
DATASET_ID: Final = "lmarena-ai/leaderboard-dataset"
DATASETS_SERVER_ROWS_URL: Final = "https://datasets-server.huggingface.co/rows"
# The datasets-server caps a /rows page at 100 rows.
ROWS_PAGE_LENGTH: Final = 100

# Configs ingested when the policy names none (`lmsys:<config>/<category>` evidence refs name them).
DEFAULT_CONFIGS: Final = ("text",)
# `latest` holds the most recent published board only; `full` is the whole history.
SPLIT: Final = "latest"
PARQUET_FILE: Final = f"{SPLIT}-00000-of-00001.parquet"

# A folder mirror may pin its version in this file (the sample mirror says `sample`).
VERSION_FILE: Final = "VERSION"


def api_url(endpoint: str = HF_ENDPOINT, dataset: str = DATASET_ID) -> str:
    """The Hub API document of the dataset, whose ``sha`` is the version."""
    return f"{endpoint.rstrip('/')}/api/datasets/{dataset}"


def parquet_url(sha: str, config: str, endpoint: str = HF_ENDPOINT, dataset: str = DATASET_ID) -> str:
    """The immutable download URL of one config's ``latest`` parquet at commit ``sha``."""
    return f"{endpoint.rstrip('/')}/datasets/{dataset}/resolve/{sha}/{config}/{PARQUET_FILE}"


# canonical column -> accepted spellings (the video/image arenas use the `score` names).
COLUMN_SPELLINGS: Final[dict[str, tuple[str, ...]]] = {
    "model_name": ("model_name",),
    "rating": ("rating", "score"),
    "rating_lower": ("rating_lower", "score_ci_lower"),
    "rating_upper": ("rating_upper", "score_ci_upper"),
    "vote_count": ("vote_count", "observation_count"),
    "rank": ("rank",),
    "category": ("category",),
    "leaderboard_publish_date": ("leaderboard_publish_date",),
    "organization": ("organization",),
    "license": ("license",),
    "variance": ("variance",),
}
REQUIRED_COLUMNS: Final = ("model_name", "rating", "rating_lower", "rating_upper", "vote_count", "rank",
                           "category", "leaderboard_publish_date")
OPTIONAL_COLUMNS: Final = ("organization", "license", "variance")

# Plausibility bounds: Arena ratings sit on an Elo scale (roughly 800-1600). Anything outside these
# is a corrupted value, not a model that is very good or very bad.
MIN_RATING: Final = 0.0
MAX_RATING: Final = 10_000.0
MAX_SAMPLES: Final = 10**10

# The legacy Space CSV (2023 files only carry the rating).
LEGACY_MODEL_COLUMN: Final = "Model"
LEGACY_RATING_COLUMN: Final = "Arena Elo rating"
LEGACY_UNRATED: Final = frozenset({"-", ""})
LEGACY_CSV_NAME: Final = re.compile(r"^leaderboard_table_(\d{8})(?:-(\d+))?\.csv$")
