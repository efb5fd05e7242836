"""LiteLLM telemetry: the callback, the bounded queue and batch writer, rollups.

``TelemetryCallback`` lives in ``recommender_core.telemetry.callback`` (it imports litellm);
everything else here is importable without litellm.
"""

from __future__ import annotations

__all__: list[str] = []
