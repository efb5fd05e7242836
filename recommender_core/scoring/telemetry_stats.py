"""The telemetry rollup that scoring reads: per model, over a window, in two SQL queries.

The model key is the LiteLLM ``model_group`` when set, else the model name (as in the snapshot).
``calls`` counts successes and failures; cache hits are left out of latency only. The p95 comes from
``telemetry.rollups.latency_percentiles`` (the same query the snapshot uses): exact, with the same
definition as ``recommender_core.stats.percentile``, without fetching every latency into Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ..store import Store
from ..telemetry.rollups import latency_percentiles
from ..telemetry.validate import STORED_ROW_PARAMS, STORED_ROW_RULES

__all__ = ["ModelTelemetry", "telemetry_by_model"]


@dataclass(frozen=True)
class ModelTelemetry:
    """Observed behaviour of one model over the window."""

    model: str
    calls: int
    errors: int
    latency_p95_ms: float | None
    cost_calls: int  # calls that reported both a cost and token counts
    cost_per_1k_tokens: float | None
    latency_samples: int = 0  # successful, non-cached calls with a latency

    @property
    def successes(self) -> int:
        return self.calls - self.errors


_COUNTS = sa.text("""
SELECT COALESCE(model_group, model) AS key,
       COUNT(*) AS calls,
       SUM(CASE WHEN status = 'success' THEN 0 ELSE 1 END) AS errors,
       SUM(CASE WHEN cost IS NOT NULL AND prompt_tokens IS NOT NULL THEN 1 ELSE 0 END) AS cost_calls,
       SUM(CASE WHEN cost IS NOT NULL AND prompt_tokens IS NOT NULL THEN cost ELSE 0 END) AS cost_sum,
       SUM(CASE WHEN cost IS NOT NULL AND prompt_tokens IS NOT NULL
                THEN prompt_tokens + COALESCE(completion_tokens, 0) ELSE 0 END) AS token_sum
FROM telemetry_event
WHERE started_at >= :since AND """ + STORED_ROW_RULES + """
GROUP BY COALESCE(model_group, model)
""")

def telemetry_by_model(store: Store, *, since: datetime) -> dict[str, ModelTelemetry]:
    """Per-model telemetry of events started at or after ``since``."""
    bind_since = since.replace(tzinfo=None) if store.dialect == "sqlite" else since
    with store.connect() as conn:
        counts = conn.execute(_COUNTS, {"since": bind_since, **STORED_ROW_PARAMS}).all()
        latencies = latency_percentiles(conn, since=since, percentiles=(95,))
    result: dict[str, ModelTelemetry] = {}
    for key, calls, errors, cost_calls, cost_sum, token_sum in counts:
        timed = latencies.get(key)
        tokens = int(token_sum or 0)
        result[key] = ModelTelemetry(
            model=key, calls=int(calls), errors=int(errors or 0),
            latency_p95_ms=timed.values[95] if timed else None,
            cost_calls=int(cost_calls or 0), latency_samples=timed.samples if timed else 0,
            cost_per_1k_tokens=(float(cost_sum) / tokens * 1000.0) if tokens > 0 else None,
        )
    return result
