"""``RecommenderRouter``: a small wrapper over ``litellm.Router`` that routes each call by task.

For a task it asks ``route()`` for the order, then lets LiteLLM call the primary with the fallbacks
in that order. When no candidate qualifies it uses the policy's static order and counts the event
(``static_fallbacks``), because availability beats optimality on the request path. Telemetry is
recorded by the LiteLLM callbacks passed as ``callbacks=`` (``TelemetryCallback``) or registered
already; each call carries
``metadata.recsys_task`` so the callback can attribute it to the task.

    router = RecommenderRouter(model_list=[...], scores=table)
    response = router.completion("coding", messages=[{"role": "user", "content": "..."}])
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import NoCandidateError
from ..policy import Policy
from .decision import RouteDecision, route
from .table import UtilityTable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # the cost-map switch above must be set before this import
from litellm.router import Router

__all__ = ["RecommenderRouter"]


class RecommenderRouter:
    """Routes LiteLLM calls by task through recsys, over a ``litellm.Router``.

    ``scores``/``policy``/``v2_enabled``/``store`` are passed to ``route()``; ``table_loader`` (if given)
    is called to refresh ``scores`` (for example from the store) by ``reload()``.
    """

    def __init__(
        self,
        *,
        model_list: Sequence[dict[str, Any]],
        policy: Policy | None = None,
        scores: UtilityTable | None = None,
        v2_enabled: bool | None = None,
        store: Any = None,
        table_loader: Callable[[], UtilityTable | None] | None = None,
        router: Any = None,
        callbacks: Sequence[Any] = (),
        **router_kwargs: Any,
    ) -> None:
        # LiteLLM's callbacks are process-wide (``litellm.callbacks``): register each given one once,
        # e.g. ``TelemetryCallback()``, so every call and fallback attempt is recorded.
        for callback in callbacks:
            if callback not in litellm.callbacks:
                litellm.callbacks.append(callback)
        self.router = router if router is not None else Router(model_list=list(model_list), **router_kwargs)
        self.policy = policy
        self.scores = scores
        self.v2_enabled = v2_enabled
        self.store = store
        self._loader = table_loader
        self._lock = threading.Lock()
        self.static_fallbacks = 0

    def reload(self) -> None:
        """Load a fresh utility table through ``table_loader`` (a new scoring run takes effect)."""
        if self._loader is not None:
            self.scores = self._loader()

    def decide(self, task: str, **constraints: Any) -> RouteDecision:
        """The decision for ``task``; on ``NoCandidateError`` the policy's static order, counted."""
        try:
            return route(task, scores=self.scores, policy=self.policy, v2_enabled=self.v2_enabled,
                         store=self.store, **constraints)
        except NoCandidateError:
            with self._lock:
                self.static_fallbacks += 1
            return route(task, policy=self.policy, v2_enabled=False)

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
