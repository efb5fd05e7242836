"""``RecommenderRoutingStrategy``: recsys order inside a plain ``litellm.Router``, through LiteLLM's
own hook for custom routing (``CustomRoutingStrategyBase``, registered with ``Router.register_plugin``;
``Router.set_custom_routing_strategy`` is its deprecated name).

LiteLLM asks the strategy for a deployment on every attempt of a request, and records the attempts
that failed in the request metadata (``previous_models``). For a ``task/<name>`` model group the
strategy answers with the first deployment, in recsys order for the task, that this request has
not tried yet and that is not cooling down, so the Router's retries walk the recsys order. Any
other model group gets its own deployments, in model-list order, the same way.

    router = litellm.Router(model_list=[...],                  # one model_name per candidate
                            model_group_alias={"task/coding": "claude-sonnet-4-5"},  # each task
                            num_retries=3)                     # attempts after the first
    router.register_plugin(RecommenderRoutingStrategy(router, store="postgresql://recsys@db/recsys"))
    router.completion(model="task/coding", messages=[...])

Each ``task/<name>`` must be a model group or a ``model_group_alias`` of the Router (LiteLLM checks
the name before it asks the strategy); ``recsys export litellm-router`` writes those aliases. Walking
the order takes one retry per model, so set ``num_retries`` to at least the longest order minus one;
LiteLLM's retry policy applies (an error it does not retry ends the walk, where ``fallbacks`` would
go on). The decisions come from ``Recommender`` (``store=``, ``scores=``, ``policy=``, ``v2_enabled=``
as for ``RecommenderRouter``), so a store is read once per ``refresh_seconds``, not per call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RoutingError
from ..policy import Policy
from ..telemetry.events import TASK_ALIAS_PREFIX
from .recommender import Recommender
from .table import UtilityTable

if TYPE_CHECKING:
    from ..store import Store

from ..litellm_import import local_cost_map

with local_cost_map():
    from litellm.router import CustomRoutingStrategyBase

__all__ = ["RecommenderRoutingStrategy"]

log = logging.getLogger("recsys.routing")


def _tried(request_kwargs: Mapping[str, Any] | None) -> set[str]:
    """Deployment ids this request already tried (LiteLLM's ``previous_models`` breadcrumbs)."""
    tried: set[str] = set()
    for bucket in ("metadata", "litellm_metadata"):
        metadata = (request_kwargs or {}).get(bucket)
        if not isinstance(metadata, Mapping):
            continue
        for crumb in metadata.get("previous_models") or ():
            if isinstance(crumb, Mapping) and isinstance(crumb.get("deployment_id"), str):
                tried.add(crumb["deployment_id"])
    return tried


def _deployment_id(deployment: Mapping[str, Any]) -> str | None:
    info = deployment.get("model_info")
    value = info.get("id") if isinstance(info, Mapping) else None
    return value if isinstance(value, str) else None


class RecommenderRoutingStrategy(CustomRoutingStrategyBase):
    """Picks each attempt's deployment of ``router`` in recsys order (see the module docstring)."""

    def __init__(
        self,
        router: Any,
        *,
        policy: Policy | None = None,
        scores: UtilityTable | str | os.PathLike[str] | None = None,
        store: Store | str | None = None,
        v2_enabled: bool | None = None,
        refresh_seconds: float = 60.0,
    ) -> None:
        self.recommender = Recommender(policy=policy, scores=scores, store=store, v2_enabled=v2_enabled,
                                       refresh_seconds=refresh_seconds)
        self.router = router

    def _order(self, model: str) -> Sequence[str]:
        """Model groups in the order to try: a task's recsys order, else the group itself."""
        if model.startswith(TASK_ALIAS_PREFIX):
            try:
                return self.recommender.decide(model[len(TASK_ALIAS_PREFIX):]).models
            except RoutingError:  # not a task of the policy: an ordinary model group
                log.debug("recsys strategy: %s names no policy task", model)
        return (model,)

    def _cooling(self, ids: list[str]) -> set[str]:
        try:
            active = self.router.health().cooldowns.get_active_cooldowns(ids, None)
        except Exception:  # cooldowns are an optimisation: a LiteLLM without this API still routes
            log.debug("recsys strategy: cannot read LiteLLM cooldowns", exc_info=True)
            return set()
        return {str(entry[0]) for entry in active}

    def pick(self, model: str, request_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
        """The deployment for this attempt of a request for ``model``."""
        deployments: list[dict[str, Any]] = list(self.router.registry().all())
        by_group: dict[str, list[dict[str, Any]]] = {}
        for deployment in deployments:
            by_group.setdefault(str(deployment.get("model_name")), []).append(deployment)
        candidates = [d for group in self._order(model) for d in by_group.get(group, ())]
        if not candidates:
            raise RoutingError(f"No deployment in the Router's model list serves '{model}' or its recsys order.")
        tried = _tried(request_kwargs)
        fresh = [d for d in candidates if _deployment_id(d) not in tried] or candidates
        cooling = self._cooling([i for i in map(_deployment_id, fresh) if i is not None])
        # Every untried deployment cooling down: try the first anyway; availability beats waiting.
        return next((d for d in fresh if _deployment_id(d) not in cooling), fresh[0])

    # --- LiteLLM's hooks (its parameter names). Its base class annotates them as returning None, yet
    # LiteLLM uses what they return as the deployment: hence the override ignores. ------------------

    def get_available_deployment(  # type: ignore[override]
            self, model: str, messages: list[dict[str, str]] | None = None, input: str | list[object] | None = None,
            specific_deployment: bool | None = False,
            request_kwargs: dict[str, object] | None = None) -> dict[str, Any]:
        return self.pick(model, request_kwargs)

    async def async_get_available_deployment(  # type: ignore[override]
            self, model: str, messages: list[dict[str, str]] | None = None, input: str | list[object] | None = None,
            specific_deployment: bool | None = False,
            request_kwargs: dict[str, object] | None = None) -> dict[str, Any]:
        return self.pick(model, request_kwargs)
