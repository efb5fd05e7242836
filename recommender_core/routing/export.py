"""``recsys export litellm-router``: a LiteLLM Router / proxy config fragment from recsys decisions.

Each task becomes a model group alias ``task/<name>`` pointing at its current primary, and
``fallbacks`` are keyed by that alias, each with the task's own order: LiteLLM looks fallbacks up
under the model group the client asked for, and tasks that share a primary keep different orders.
LiteLLM walks a whole list (its ``max_fallbacks`` bounds nested fallbacks, not the list's length).
``model_list`` holds one deployment per model that appears (``litellm_params.model`` = the
candidate name); edit credentials in, never out.
"""

from __future__ import annotations

from typing import Any

from ..errors import NoCandidateError
from ..policy import Policy
from ..telemetry.events import TASK_ALIAS_PREFIX
from .decision import route
from .table import UtilityTable

__all__ = ["TASK_ALIAS_PREFIX", "litellm_router_config"]


def litellm_router_config(policy: Policy, *, scores: UtilityTable | None, v2_enabled: bool) -> dict[str, Any]:
    """The config: ``model_list`` and ``router_settings`` (``model_group_alias``, ``fallbacks``).

    Each task's order is exactly what ``route(task)`` (``recsys route TASK``) gives under the same
    flag and scores. A task with no qualifying candidate falls back to its static order (as the
    router adapter does), and is listed under ``x-recsys.static_tasks``.
    """
    aliases: dict[str, str] = {}
    fallbacks: dict[str, list[str]] = {}
    static_tasks: list[str] = []
    for task in sorted(policy.tasks):
        try:
            decision = route(task, policy=policy, scores=scores, v2_enabled=v2_enabled)
        except NoCandidateError:
            decision = route(task, policy=policy, v2_enabled=False)
            static_tasks.append(task)
        alias = f"{TASK_ALIAS_PREFIX}{task}"
        aliases[alias] = decision.primary
        if decision.fallbacks:
            fallbacks[alias] = list(decision.fallbacks)
    used = sorted({*aliases.values(), *(m for chain in fallbacks.values() for m in chain)})
    return {
        "model_list": [{"model_name": name, "litellm_params": {"model": name}} for name in used],
        "router_settings": {
            "model_group_alias": aliases,
            "fallbacks": [{alias: chain} for alias, chain in fallbacks.items()],
        },
        "x-recsys": {"v2_enabled": v2_enabled, "policy_hash": policy.hash,
                     "scores": scores.origin if scores is not None else None, "static_tasks": static_tasks},
    }
