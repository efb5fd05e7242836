"""Routing strategies: small classes behind one abstract method, registered in ``STRATEGIES``.

Each returns the ordered models that satisfy the constraints; the first is the primary. Filters use
the table's precomputed prefix bitmasks (``OrderIndex``), so the hot path is a few C calls.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .rank import Limits, cascade_order, violations

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

    @property
    def limits(self) -> Limits:
        return (self.max_cost_per_1k, self.max_latency_ms, self.min_quality)

    def violations(self, cost_per_1k: float, latency_ms: float, quality: float) -> list[str]:
        return violations(self.limits, cost_per_1k, latency_ms, quality)


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
        return cascade_order(chosen, index.best_quality(mask))


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (UtilityStrategy, CascadeStrategy)}
