"""Routing strategies: small classes behind one abstract method, registered in ``STRATEGIES``.

Each returns the ordered models that satisfy the constraints; the first is the primary. Filters run
over the table's precomputed parallel tuples with ``map``/``compress``, so the hot path stays in C.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import compress, repeat
from operator import and_, ge, le
from typing import ClassVar

from .table import ROUND_DIGITS, TaskTable, total_order_key

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


def _filtered(names: tuple[str, ...], costs: tuple[float, ...], latencies: tuple[float, ...],
              qualities: tuple[float, ...], c: RouteConstraints) -> tuple[str, ...]:
    masks: list[Iterator[bool]] = []
    if c.max_cost_per_1k is not None:
        masks.append(map(ge, repeat(c.max_cost_per_1k), costs))
    if c.max_latency_ms is not None:
        masks.append(map(ge, repeat(c.max_latency_ms), latencies))
    if c.min_quality is not None:
        masks.append(map(le, repeat(c.min_quality), qualities))
    if not masks:
        return names
    mask = masks[0]
    for other in masks[1:]:
        mask = map(and_, mask, other)
    return tuple(compress(names, mask))


class Strategy(abc.ABC):
    """Orders a task's qualifying models."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    def order(self, table: TaskTable, constraints: RouteConstraints) -> tuple[str, ...]:
        """Models that meet ``constraints``, primary first; empty when none qualifies."""


class UtilityStrategy(Strategy):
    name = "utility"
    description = "highest utility first (the total order of DESIGN.md section 6)"

    def order(self, table: TaskTable, constraints: RouteConstraints) -> tuple[str, ...]:
        return _filtered(table.names, table.costs, table.latencies, table.qualities, constraints)


class CascadeStrategy(Strategy):
    """FrugalGPT-style: the cheapest model meeting the quality floor first, escalating in cost order,
    and ending with the best-quality qualifying model."""

    name = "cascade"
    description = "cheapest model above the quality floor first, escalate by cost, end with the best quality"

    def order(self, table: TaskTable, constraints: RouteConstraints) -> tuple[str, ...]:
        chosen = _filtered(table.cost_names, table.cost_costs, table.cost_latencies, table.cost_qualities,
                           constraints)
        if len(chosen) < 2:
            return chosen
        best = table.best_quality
        if best not in chosen:
            rows = [table.rows[m] for m in chosen]
            best = min(rows, key=lambda r: (-round(r.quality, ROUND_DIGITS), total_order_key(r))).model
        if chosen[-1] == best:
            return chosen
        return (*(m for m in chosen if m != best), best)


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (UtilityStrategy, CascadeStrategy)}
