"""``RecommenderRouter``: a small wrapper over ``litellm.Router`` that routes each call by task.

For a task it asks recsys for the order, then lets LiteLLM call the primary with the fallbacks in
that order. Where the scores come from (``Recommender``):

- ``store=``: a ``Store`` or a database URL; the current scoring run is loaded once and again every
  ``refresh_seconds`` (not on every call); a failed refresh keeps the table it had;
- ``scores=``: a ``UtilityTable``, or the path of a saved ``recsys snapshot --json``;
- neither: the configured store with ``ENABLE_MODEL_RECOMMENDER_V2`` on, the static order with it off.

When no candidate qualifies, or the store cannot be read, it uses the policy's static order and
counts it (``static_fallbacks``), because availability beats optimality on the request path.
Anything else passed as ``store=`` or ``scores=`` is a ``TypeError`` at construction. Telemetry is
recorded by the LiteLLM callbacks passed as ``callbacks=`` (``TelemetryCallback``) or registered
already; each call carries ``metadata.recsys_task`` so the callback can attribute it to the task.

    router = RecommenderRouter(model_list=[...], store="postgresql://recsys@db/recsys")
    response = router.completion("coding", messages=[{"role": "user", "content": "..."}])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..policy import Policy
from .decision import RouteDecision
from .recommender import Recommender
from .table import UtilityTable

if TYPE_CHECKING:
    from ..store import Store

from ..litellm_import import local_cost_map

with local_cost_map():
    import litellm
    from litellm.router import Router

__all__ = ["RecommenderRouter"]


class RecommenderRouter:
    """Routes LiteLLM calls by task through recsys, over a ``litellm.Router``.

    ``store`` is a ``Store`` or a database URL; ``scores`` a ``UtilityTable`` or a snapshot path;
    ``policy``/``v2_enabled`` are passed to ``route()``; ``table_loader`` (if given) is called to
    refresh ``scores`` by ``reload()``. ``router`` replaces the ``litellm.Router`` built from
    ``model_list`` and ``router_kwargs``.
    """

    def __init__(
        self,
        *,
        model_list: Sequence[dict[str, Any]],
        policy: Policy | None = None,
        scores: UtilityTable | str | os.PathLike[str] | None = None,
        v2_enabled: bool | None = None,
        store: Store | str | None = None,
        table_loader: Callable[[], UtilityTable | None] | None = None,
        router: Any = None,
        callbacks: Sequence[Any] = (),
        refresh_seconds: float = 60.0,
        **router_kwargs: Any,
    ) -> None:
        # First, so a wrong store= or scores= fails before anything is registered or built.
        self.recommender = Recommender(policy=policy, scores=scores, store=store, v2_enabled=v2_enabled,
                                       table_loader=table_loader, refresh_seconds=refresh_seconds)
        # LiteLLM's callbacks are process-wide (``litellm.callbacks``): register each given one once,
        # e.g. ``TelemetryCallback()``, so every call and fallback attempt is recorded.
        for callback in callbacks:
            if callback not in litellm.callbacks:
                litellm.callbacks.append(callback)
        self.router = router if router is not None else Router(model_list=list(model_list), **router_kwargs)

    @property
    def static_fallbacks(self) -> int:
        """Decisions that used the static order because nothing qualified or the store failed."""
        return self.recommender.static_fallbacks

    @property
    def scores(self) -> UtilityTable | None:
        """The utility table decisions are made from (None before a store's first load)."""
        return self.recommender.scores

    def reload(self) -> None:
        """Load a fresh utility table through ``table_loader``, or from the store on the next call."""
        self.recommender.reload()

    def close(self) -> None:
        """Release the store opened from a ``store=`` URL."""
        self.recommender.close()

    def decide(self, task: str, **constraints: Any) -> RouteDecision:
        """The decision for ``task``; when no candidate qualifies or the store fails, the static order, counted."""
        return self.recommender.decide(task, **constraints)

    def _call_kwargs(self, decision: RouteDecision, kwargs: dict[str, Any]) -> dict[str, Any]:
        metadata = dict(kwargs.pop("metadata", None) or {})
        metadata.setdefault("recsys_task", decision.task)
        return {**kwargs, "model": decision.primary, "fallbacks": list(decision.fallbacks), "metadata": metadata}

    def completion(self, task: str, messages: list[dict[str, Any]], *, constraints: dict[str, Any] | None = None,
                   **kwargs: Any) -> Any:
        """``litellm.Router.completion`` on the task's primary, with its fallbacks in recsys order."""
        decision = self.decide(task, **(constraints or {}))
        return self.router.completion(messages=messages, **self._call_kwargs(decision, kwargs))

    async def acompletion(self, task: str, messages: list[dict[str, Any]], *,
                          constraints: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        decision = self.decide(task, **(constraints or {}))
        return await self.router.acompletion(messages=messages, **self._call_kwargs(decision, kwargs))

    def embedding(self, task: str, input: list[str], *, constraints: dict[str, Any] | None = None,
                  **kwargs: Any) -> Any:
        """``litellm.Router.embedding`` for an embedding task, with recsys fallbacks."""
        decision = self.decide(task, **(constraints or {}))
        return self.router.embedding(input=input, **self._call_kwargs(decision, kwargs))
