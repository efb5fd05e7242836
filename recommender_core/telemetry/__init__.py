"""LiteLLM telemetry: the callback, the bounded queue and batch writer, rollups."""

from __future__ import annotations

__all__: list[str] = []
