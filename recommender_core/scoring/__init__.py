"""Scoring: prices, normalisation and utility runs.

``compute`` is the pure scoring function (plain inputs, no SQL, no store), ``persist`` writes a run's
rows and makes it current, ``run`` orchestrates the two under the ``score`` job lock.

The names below are imported when first used, so the pure helpers (``scoring.normalise``) stay light
for the source plugins that use them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run import ScoredModel, ScoringResult, activate_run, compute_scores, run_scoring

__all__ = ["ScoredModel", "ScoringResult", "activate_run", "compute_scores", "run_scoring"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".run", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
