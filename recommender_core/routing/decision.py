"""``route()`` and ``RouteDecision`` (docs/api.md).

Routing is a pure function of (utility table, policy, constraints, flag). The hot path walks orders
precomputed when the table was loaded; the explanation (``candidates``, ``excluded``) is built only
when read.

    >>> from recommender_core.policy import load_policy
    >>> decision = route("coding", policy=load_policy(), v2_enabled=False)
    >>> decision.primary, decision.v2_enabled
    ('claude-sonnet-4-5', False)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import NoCandidateError, UnknownTaskError, UsageError
from .rank import exclusions
from .strategies import STRATEGIES, RouteConstraints, Strategy
from .table import ScoreRow, TaskTable, UtilityTable, load_task_table

if TYPE_CHECKING:
    from ..policy import Policy
    from ..store import Store
    from .policy_view import PolicyView

__all__ = ["FLAG_ENV", "Exclusion", "RouteDecision", "decision_seconds", "no_candidate_error", "route"]

FLAG_ENV = "ENABLE_MODEL_RECOMMENDER_V2"
_INSTANCES: dict[str, Strategy] = {name: cls() for name, cls in STRATEGIES.items()}


@dataclass(frozen=True)
class Exclusion:
    """A candidate that cannot serve this route, and why."""

    model: str
    reason: str


Explanation = tuple[tuple[ScoreRow, ...], tuple[Exclusion, ...]]


def _no_explanation() -> Explanation:
    return (), ()


@dataclass(frozen=True)
class RouteDecision:
    """One routing decision: the primary model, the ordered fallbacks, and (lazily) why.

    ``candidates`` lists the scored models of the order with their utility and components;
    ``excluded`` lists the candidates left out, each with a reason.
    """

    task: str
    strategy: str
    v2_enabled: bool
    primary: str
    fallbacks: tuple[str, ...]
    _explain: Callable[[], Explanation] = field(default=_no_explanation, repr=False, compare=False)

    @property
    def models(self) -> tuple[str, ...]:
        """Primary then fallbacks: the order to try."""
        return (self.primary, *self.fallbacks)

    @cached_property
    def _explanation(self) -> Explanation:
        return self._explain()

    @property
    def candidates(self) -> tuple[ScoreRow, ...]:
        return self._explanation[0]

    @property
    def excluded(self) -> tuple[Exclusion, ...]:
        return self._explanation[1]

    def to_json(self) -> dict[str, Any]:
        """The ``recsys route --json`` document."""
        return {
            "task": self.task, "strategy": self.strategy, "v2_enabled": self.v2_enabled,
            "primary": self.primary, "fallbacks": list(self.fallbacks),
            "candidates": [{"model": r.model, "utility": r.utility, "quality": r.quality, "cost": r.cost,
                            "latency": r.latency, "reliability": r.reliability} for r in self.candidates],
            "excluded": [{"model": e.model, "reason": e.reason} for e in self.excluded],
        }


def _configured_policy() -> Policy:
    from ..config import Settings  # pydantic-settings, imported on first use
    from ..policy_cache import cached_policy

    configured = Settings.read("policy")
    return cached_policy(str(configured) if configured else None)


def _exclusions(policy: PolicyView, task: str, tt: TaskTable | None, chosen: tuple[str, ...],
                constraints: RouteConstraints) -> tuple[Exclusion, ...]:
    rows = tt.by_utility if tt is not None else ()
    figures = ((r.model, r.cost_per_1k_tokens or 0.0, r.latency_p95_ms or 0.0, r.quality or 0.0) for r in rows)
    found = exclusions(tt.excluded if tt is not None else (), figures,
                       chosen, constraints.limits, policy.candidates_of_kind(policy.tasks[task].kind),
                       tt.rows if tt is not None else ())
    return tuple(Exclusion(model, reason) for model, reason in found)


def route(
    task: str,
    *,
    max_cost_per_1k: float | None = None,
    max_latency_ms: float | None = None,
    min_quality: float | None = None,
    strategy: str = "utility",
    scores: UtilityTable | None = None,
    v2_enabled: bool | None = None,
    store: Store | None = None,
    policy: PolicyView | None = None,
) -> RouteDecision:
    """Decide the model order for ``task``.

    ``scores`` defaults to the current scoring run of ``store``; with neither given, route() opens the
    configured store (``Settings``: ``RECSYS_DATABASE_URL``, else the embedded SQLite default) for this
    call and closes it again (pass a ``Store``, or use ``RecommenderRouter``, to keep one open),
    ``v2_enabled`` to ``ENABLE_MODEL_RECOMMENDER_V2``, ``policy`` to ``RECSYS_POLICY`` or the default.
    Constraints left as None take the task's defaults from the policy. With the flag off the policy's
    static order is returned whatever the scores. Raises ``NoCandidateError`` when nothing qualifies.
    """
    impl = _INSTANCES.get(strategy)
    if impl is None:
        raise UsageError(f"Unknown strategy '{strategy}'. Available strategies: {', '.join(STRATEGIES)}.")
    if policy is None:
        policy = _configured_policy()
    spec = policy.tasks.get(task)
    if spec is None:
        raise UnknownTaskError(f"Unknown task '{task}'. Tasks in the policy: {', '.join(sorted(policy.tasks))}.",
                               task=task)
    if v2_enabled is None:
        from ..config import Settings

        v2_enabled = bool(Settings.read("enable_model_recommender_v2"))
    if not v2_enabled:
        static = spec.static_order
        return RouteDecision(task, strategy, False, static[0], static[1:])
    if scores is None:
        scores = _table_from_store(store, task)
    defaults = spec.constraints
    constraints = RouteConstraints(
        max_cost_per_1k if max_cost_per_1k is not None else defaults.max_cost_per_1k,
        max_latency_ms if max_latency_ms is not None else defaults.max_latency_ms,
        min_quality if min_quality is not None else defaults.min_quality,
    )
    tt = scores.tasks.get(task)
    chosen = impl.order(tt, constraints) if tt is not None else ()
    if not chosen:
        excluded = _exclusions(policy, task, tt, chosen, constraints)
        raise no_candidate_error(task, scores.origin, excluded, tt, constraints)

    def explain() -> Explanation:
        assert tt is not None  # noqa: S101 - chosen is non-empty only with a table
        return tuple(tt.rows[m] for m in chosen), _exclusions(policy, task, tt, chosen, constraints)

    return RouteDecision(task, strategy, True, chosen[0], chosen[1:], explain)


def _reason_kind(reason: str) -> str:
    """What an exclusion reason is about, without its figures: the key exclusions are counted by."""
    import re

    for constraint in ("max_cost_per_1k", "max_latency_ms", "min_quality"):
        if constraint in reason:
            return f"{'below' if constraint == 'min_quality' else 'above'} {constraint}"
    if reason.startswith("no score for this task"):
        return "not scored"
    kind = re.split(r"[(;]|: ", reason, maxsplit=1)[0]
    return " ".join(re.sub(r"\d[\d.,%]*", "#", kind).split())[:48] or "other"


def no_candidate_error(task: str, origin: str, excluded: tuple[Exclusion, ...], tt: TaskTable | None,
                       constraints: RouteConstraints) -> NoCandidateError:
    """A ``NoCandidateError`` of at most three lines: the task, how many were excluded per reason, and
    the first thing to try. Every exclusion stays on the error (``excluded``, ``detail``)."""
    counts: dict[str, int] = {}
    for e in excluded:
        for part in e.reason.split("; "):
            kind = _reason_kind(part)
            counts[kind] = counts.get(kind, 0) + 1
    per_reason = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    rows = tt.by_utility if tt is not None else ()
    if not excluded:
        hint = "add candidates of this task's kind to the policy"
    elif constraints.max_cost_per_1k is not None and counts.get("above max_cost_per_1k"):
        cheapest = min((r.cost_per_1k_tokens for r in rows if r.cost_per_1k_tokens is not None), default=None)
        hint = "loosen max_cost_per_1k" + (f" (the cheapest scored candidate costs {cheapest:.6g}/1k tokens)"
                                           if cheapest is not None else "")
    elif constraints.min_quality is not None and counts.get("below min_quality"):
        best = max((r.quality for r in rows if r.quality is not None), default=None)
        hint = "lower min_quality" + (f" (the best scored quality is {best:.3f})" if best is not None else "")
    elif constraints.max_latency_ms is not None and counts.get("above max_latency_ms"):
        fastest = min((r.latency_p95_ms for r in rows if r.latency_p95_ms is not None), default=None)
        hint = "raise max_latency_ms" + (f" (the fastest p95 is {fastest:.0f} ms)" if fastest is not None else "")
    elif counts.get("not scored"):
        hint = "run 'recsys score' so this task has scores"
    else:
        hint = ("ingest the evidence this task references, then run 'recsys score' "
                "('recsys policy check' shows what each candidate maps to)")
    message = (f"No candidate qualifies for task '{task}' ({origin}): {len(excluded)} excluded.\n"
               f"Excluded per reason: {per_reason or 'none'}.\nTry: {hint}.")
    return NoCandidateError(message, task=task, excluded=tuple((e.model, e.reason) for e in excluded), hint=hint)


def decision_seconds(policy: Policy, scores: UtilityTable) -> dict[str, float]:
    """Per task of ``scores`` (and of ``policy``), the time one utility ``route()`` takes (task defaults).

    What ``recsys score`` observes as ``recsys_recommendation_latency_seconds``; a task where no
    candidate qualifies is skipped.
    """
    seconds: dict[str, float] = {}
    for task in sorted(set(scores.tasks) & set(policy.tasks)):
        started = time.perf_counter()
        try:
            route(task, scores=scores, v2_enabled=True, policy=policy)
        except NoCandidateError:
            continue
        seconds[task] = time.perf_counter() - started
    return seconds


def _table_from_store(store: Store | None, task: str) -> UtilityTable:
    owned = None
    if store is None:  # documented in route(): the configured store, opened for this call
        from ..config import Settings
        from ..store import Store

        store = owned = Store.from_settings(Settings.load())
    try:
        table = load_task_table(store, task)  # one task's rows, not the whole table
    finally:
        if owned is not None:
            owned.dispose()
    if table is None:
        raise NoCandidateError("No scoring run is current, so there are no scores to route by. "
                               "Run 'recsys score' first.", task=task)
    return table
