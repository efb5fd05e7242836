"""Scoring: prices, normalisation and utility runs."""

from __future__ import annotations

__all__: list[str] = []
