"""Routing: RouteDecision, strategies, the LiteLLM adapter and exports."""

from __future__ import annotations

__all__: list[str] = []
