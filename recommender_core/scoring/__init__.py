"""Scoring: prices, normalisation and utility runs."""

from __future__ import annotations

from .run import ScoredModel, ScoringResult, activate_run, compute_scores, run_scoring

__all__ = ["ScoredModel", "ScoringResult", "activate_run", "compute_scores", "run_scoring"]
