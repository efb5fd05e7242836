"""What routing reads from a policy, as protocols: ``route()`` takes any object of this shape.

A parsed ``Policy`` is one; so is anything else that offers the same few attributes (a test's stub).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["ConstraintsView", "PolicyView", "TaskView"]


class ConstraintsView(Protocol):
    @property
    def max_cost_per_1k(self) -> float | None: ...

    @property
    def max_latency_ms(self) -> float | None: ...

    @property
    def min_quality(self) -> float | None: ...


class TaskView(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def static_order(self) -> tuple[str, ...]: ...

    @property
    def constraints(self) -> ConstraintsView: ...


class PolicyView(Protocol):
    @property
    def tasks(self) -> Mapping[str, TaskView]: ...

    def candidates_of_kind(self, kind: str) -> tuple[str, ...]: ...
