"""Arena boards in the real `lmarena-ai/leaderboard-dataset` shape, with the project's own values.

Shared by the tests, the cassette generator (`cassettes/make_lmsys.py`) and the benchmark, so every
fixture is reproducible from code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

__all__ = ["SAMPLE_CATEGORIES", "SAMPLE_MODELS", "board_rows", "parquet_bytes", "rows_page"]

# (arena model key, organization, license, base rating): every default chat candidate by alias or name,
# plus models no candidate maps to. The ratings are invented for the demo, not real rankings.
SAMPLE_MODELS: tuple[tuple[str, str, str, float], ...] = (
    ("gemini-2.5-pro", "Google", "Proprietary", 1452.0),
    ("claude-opus-4-5-20251101", "Anthropic", "Proprietary", 1447.5),
    ("gpt-5-chat", "OpenAI", "Proprietary", 1441.0),
    ("claude-sonnet-4-5-20250929", "Anthropic", "Proprietary", 1436.0),
    ("gpt-4.1-2025-04-14", "OpenAI", "Proprietary", 1411.0),
    ("deepseek-v3.2", "DeepSeek", "MIT", 1408.5),
    ("gemini-2.5-flash", "Google", "Proprietary", 1405.0),
    ("gpt-5-mini-high", "OpenAI", "Proprietary", 1399.0),
    ("claude-haiku-4-5-20251001", "Anthropic", "Proprietary", 1387.0),
    ("mistral-large-2411", "Mistral", "MRL", 1352.0),
    ("gpt-4o-mini-2024-07-18", "OpenAI", "Proprietary", 1318.0),
    ("qwen3-235b-a22b-instruct-2507", "Alibaba", "Apache 2.0", 1417.0),
    ("llama-4-maverick-17b-128e-instruct", "Meta", "Llama 4", 1329.0),
)
# category -> (rating offset scale, vote share)
SAMPLE_CATEGORIES: dict[str, tuple[float, float]] = {
    "overall": (0.0, 1.0), "coding": (1.0, 0.31), "math": (-1.0, 0.12), "creative_writing": (0.5, 0.16),
    "long_user": (-0.5, 0.22), "hard_prompts": (0.25, 0.35),
}


def board_rows(models: Sequence[tuple[str, str, str, float]] = SAMPLE_MODELS,
               categories: dict[str, tuple[float, float]] | None = None,
               publish_date: str = "2026-11-20") -> list[dict[str, Any]]:
    """One row per (model, category), ranked within each category; deterministic."""
    rows: list[dict[str, Any]] = []
    for category, (scale, share) in (categories or SAMPLE_CATEGORIES).items():
        board = []
        for i, (name, org, licence, base) in enumerate(models):
            rating = base + scale * ((i * 7) % 11 - 5) * 1.75
            votes = int(max(40_000 - 2_300 * i, 1_500) * share) + 500
            half = round(3.0 + 60_000 / votes * 0.35, 4)
            board.append({"model_name": name, "organization": org, "license": licence, "rating": rating,
                          "rating_lower": rating - half, "rating_upper": rating + half,
                          "variance": round((half / 1.96) ** 2, 6), "vote_count": votes, "category": category,
                          "leaderboard_publish_date": publish_date})
        board.sort(key=lambda r: -r["rating"])
        for rank, row in enumerate(board, start=1):
            row["rank"] = rank
        rows.extend(board)
    return rows


COLUMNS = ("model_name", "organization", "license", "rating", "rating_lower", "rating_upper", "variance",
           "vote_count", "rank", "category", "leaderboard_publish_date")
SCORE_SPELLING = {"rating": "score", "rating_lower": "score_ci_lower", "rating_upper": "score_ci_upper",
                  "vote_count": "observation_count"}


def parquet_bytes(rows: Sequence[dict[str, Any]], *, score_spelling: bool = False,
                  drop: Sequence[str] = (), rename: dict[str, str] | None = None) -> bytes:
    """A parquet file like the dataset's: strings, float64 ratings, int64 counts (snappy, one row group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"rating": pa.float64(), "rating_lower": pa.float64(), "rating_upper": pa.float64(),
             "variance": pa.float64(), "vote_count": pa.int64(), "rank": pa.int64()}
    arrays, names = [], []
    for column in COLUMNS:
        if column in drop:
            continue
        name = SCORE_SPELLING.get(column, column) if score_spelling else column
        name = (rename or {}).get(name, name)
        arrays.append(pa.array([r.get(column) for r in rows], type=types.get(column, pa.string())))
        names.append(name)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), sink, compression="snappy")
    return sink.getvalue()


def rows_page(rows: Sequence[dict[str, Any]], *, offset: int = 0, total: int | None = None) -> dict[str, Any]:
    """A datasets-server `/rows` response for ``rows`` (starting at ``offset`` of ``total``)."""
    kinds = {"rating": "float64", "rating_lower": "float64", "rating_upper": "float64", "variance": "float64",
             "vote_count": "int64", "rank": "int64"}
    return {
        "features": [{"feature_idx": i, "name": c, "type": {"dtype": kinds.get(c, "string"), "_type": "Value"}}
                     for i, c in enumerate(COLUMNS)],
        "rows": [{"row_idx": offset + i, "row": {c: r.get(c) for c in COLUMNS}, "truncated_cells": []}
                 for i, r in enumerate(rows)],
        "num_rows_total": len(rows) if total is None else total,
        "num_rows_per_page": 100,
        "partial": False,
    }
