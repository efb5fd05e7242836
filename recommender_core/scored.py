"""The scored row: the one declaration of a (task, model) row of a utility table.

Scoring computes these, the store persists them (``store.tables.UtilityScore`` holds the same
columns, ``SCORED_COLUMNS``), routing ranks them (``routing.table.ScoreRow`` is this class) and the
snapshot shows them. Light (no SQL, no ORM, no imports of the project): every layer can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["SCORED_COLUMNS", "ScoredModel"]


@dataclass(frozen=True, kw_only=True)
class ScoredModel:
    """One (task, model) row of a utility table; components in [0, 1], None when excluded.

    A row routing ranks is never excluded and has every component (missing ones read as 0.0).
    """

    task: str = ""
    model: str
    utility: float | None
    quality: float | None
    cost: float | None
    latency: float | None
    reliability: float | None
    cost_per_1k_tokens: float | None
    latency_p95_ms: float | None
    success_rate: float | None = None
    excluded: bool = False
    reason: str | None = None
    evidence: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task, "model": self.model, "utility": self.utility, "quality": self.quality,
            "cost": self.cost, "latency": self.latency, "reliability": self.reliability,
            "cost_per_1k_tokens": self.cost_per_1k_tokens, "latency_p95_ms": self.latency_p95_ms,
            "success_rate": self.success_rate, "excluded": self.excluded, "reason": self.reason,
            "evidence": list(self.evidence), "details": dict(self.details),
        }

    @classmethod
    def from_row(cls, row: Any) -> ScoredModel:
        """The row of any object with these attributes (a stored ``UtilityScore``, another row)."""
        return cls(**{name: getattr(row, name) for name in SCORED_COLUMNS} | {
            "evidence": tuple(row.evidence or ()), "details": dict(row.details or {})})


# The stored columns of a scored row, in declaration order (``utility_score`` adds ``run_id``).
SCORED_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ScoredModel))
