"""The top pick per task, and the one utility component that decided it (``recsys snapshot --summary``).

A person reads the summary in ten seconds: per task, the model ``route()`` would call first and why it
beat the runner-up. "Why" is the component whose weighted difference between the two contributes the
most to the pick's lead in utility (``weight × (pick − runner-up) / sum of weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NoCandidateError
from ..policy import Policy
from .decision import route
from .table import ScoreRow, UtilityTable

__all__ = ["COMPONENTS", "TaskPick", "deciding_component", "top_picks"]

COMPONENTS = ("quality", "cost", "latency", "reliability")


@dataclass(frozen=True)
class TaskPick:
    """One task's top pick. ``component`` is None when nothing was compared: the static order, no
    runner-up, or no candidate (then ``model`` is None and ``reason`` says why)."""

    task: str
    model: str | None
    runner_up: str | None = None
    component: str | None = None
    pick_value: float | None = None
    runner_up_value: float | None = None
    reason: str | None = None


def deciding_component(pick: ScoreRow, runner_up: ScoreRow, weights: dict[str, float]) -> str:
    """The component with the largest weighted lead of ``pick`` over ``runner_up`` (ties: the order of
    ``COMPONENTS``). With no lead anywhere (an exact tie broken by the total order), ``quality``."""
    total = sum(weights.values()) or 1.0
    leads = {c: weights[c] * (getattr(pick, c) - getattr(runner_up, c)) / total for c in COMPONENTS}
    best = max(COMPONENTS, key=lambda c: (leads[c], -COMPONENTS.index(c)))
    return best if leads[best] > 0 else "quality"


def top_picks(policy: Policy, scores: UtilityTable | None, *, v2_enabled: bool) -> list[TaskPick]:
    """Per task of the policy, in its order: the primary ``route()`` answers with the task's default
    constraints, and what decided it."""
    picks: list[TaskPick] = []
    for name, task in policy.tasks.items():
        if not v2_enabled or scores is None:
            picks.append(TaskPick(name, task.static_order[0], reason="static order"))
            continue
        try:
            decision = route(name, scores=scores, policy=policy, v2_enabled=True)
        except NoCandidateError as exc:
            picks.append(TaskPick(name, None, reason=f"no candidate qualifies ({len(exc.excluded)} excluded)"))
            continue
        rows = decision.candidates
        if len(rows) < 2:
            picks.append(TaskPick(name, decision.primary, reason="the only qualifying candidate"))
            continue
        w = task.weights
        component = deciding_component(rows[0], rows[1], {"quality": w.quality, "cost": w.cost,
                                                          "latency": w.latency, "reliability": w.reliability})
        picks.append(TaskPick(name, decision.primary, rows[1].model, component,
                              getattr(rows[0], component), getattr(rows[1], component)))
    return picks
