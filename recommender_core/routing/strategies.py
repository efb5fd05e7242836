"""Routing strategies: small classes behind one abstract method, registered in ``STRATEGIES``.

Each returns the ordered models that satisfy the constraints; the first is the primary. Filters use
the table's precomputed prefix bitmasks (``OrderIndex``), so the hot path is a few C calls.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    # Annotations only: the CLI lists strategy names at start-up and must not pay for the table.
    from .table import TaskTable

__all__ = ["STRATEGIES", "CascadeStrategy", "RouteConstraints", "Strategy", "UtilityStrategy"]


@dataclass(frozen=True)
class RouteConstraints:
    """The effective limits of one route call (explicit arguments over the task's defaults)."""

    max_cost_per_1k: float | None = None
    max_latency_ms: float | None = None
    min_quality: float | None = None

    def violations(self, cost_per_1k: float, latency_ms: float, quality: float) -> list[str]:
        found = []
        if self.max_cost_per_1k is not None and cost_per_1k > self.max_cost_per_1k:
            found.append(f"cost {cost_per_1k:.6g}/1k tokens above max_cost_per_1k {self.max_cost_per_1k:g}")
        if self.max_latency_ms is not None and latency_ms > self.max_latency_ms:
            found.append(f"p95 latency {latency_ms:.6g} ms above max_latency_ms {self.max_latency_ms:g}")
        if self.min_quality is not None and quality < self.min_quality:
            found.append(f"quality {quality:.6g} below min_quality {self.min_quality:g}")
        return found


class Strategy(abc.ABC):
    """Orders a task's qualifying models."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    def order(self, table: TaskTable, constraints: RouteConstraints) -> tuple[str, ...]:
        """Models that meet ``constraints``, primary first; empty when none qualifies."""


class UtilityStrategy(Strategy):
    name = "utility"
    description = "highest utility first (then quality, cost and name)"

    def order(self, table: TaskTable, constraints: RouteConstraints) -> tuple[str, ...]:
        c = constraints
        index = table.utility_index
        return index.names_of(index.mask(c.max_cost_per_1k, c.max_latency_ms, c.min_quality))


class CascadeStrategy(Strategy):
    """FrugalGPT-style: the cheapest model meeting the quality floor first, escalating in cost order,
    and ending with the best-quality qualifying model."""

    name = "cascade"
    description = "cheapest model above the quality floor first, escalate by cost, end with the best quality"

    def order(self, table: TaskTable, constraints: RouteConstraints) -> tuple[str, ...]:
        c = constraints
        index = table.cost_index
        mask = index.mask(c.max_cost_per_1k, c.max_latency_ms, c.min_quality)
        chosen = index.names_of(mask)
        if len(chosen) < 2:
            return chosen
        best = index.best_quality(mask)
        if best is None or chosen[-1] == best:
            return chosen
        reordered = list(chosen)
        reordered.remove(best)
        reordered.append(best)
        return tuple(reordered)


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (UtilityStrategy, CascadeStrategy)}
