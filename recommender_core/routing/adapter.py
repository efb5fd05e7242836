"""``RecommenderRouter``: a small wrapper over ``litellm.Router`` that routes each call by task.

For a task it asks ``route()`` for the order, then lets LiteLLM call the primary with the fallbacks
in that order. When no candidate qualifies, or the store cannot be read, it uses the policy's static
order and counts the event (``static_fallbacks``), because availability beats optimality on the
request path. Given a ``store`` and no ``scores``, the current scoring run is loaded once and again
every ``refresh_seconds`` (not on every call); a failed refresh keeps the table it had. Telemetry is
recorded by the LiteLLM callbacks passed as ``callbacks=`` (``TelemetryCallback``) or registered
already; each call carries
``metadata.recsys_task`` so the callback can attribute it to the task.

    router = RecommenderRouter(model_list=[...], scores=table)
    response = router.completion("coding", messages=[{"role": "user", "content": "..."}])
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import NoCandidateError, StoreError
from ..policy import Policy
from .decision import FLAG_ENV, RouteDecision, parse_flag, route
from .table import UtilityTable, load_current_table

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # the cost-map switch above must be set before this import
from litellm.router import Router

__all__ = ["RecommenderRouter"]

log = logging.getLogger("recsys.routing")


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
        refresh_seconds: float = 60.0,
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
        self.refresh_seconds = refresh_seconds
        # No table given but a store: load its current run here, not once per call inside route().
        self._from_store = scores is None and table_loader is None and store is not None
        self._loaded_at: float | None = None
        self._load_error: StoreError | None = None

    def reload(self) -> None:
        """Load a fresh utility table through ``table_loader``, or from the store on the next call."""
        if self._loader is not None:
            self.scores = self._loader()
        with self._lock:
            self._loaded_at = None

    def _table(self, v2_enabled: bool) -> UtilityTable | None:
        """``scores``; with a ``store`` and no table given, the current run, reloaded every ``refresh_seconds``."""
        if not v2_enabled or not self._from_store:
            return self.scores
        now = time.monotonic()
        with self._lock:
            due = self._loaded_at is None or now - self._loaded_at >= self.refresh_seconds
            if due:
                self._loaded_at = now
        if due:
            try:
                table = load_current_table(self.store)
            except StoreError as exc:
                self._load_error = exc
                if self.scores is None:
                    raise
                log.warning("recsys router: keeping the loaded scores; the store did not answer: %s", exc)
            else:
                self._load_error = None
                self.scores = table if table is not None else UtilityTable.build({}, origin="no current scoring run")
        elif self.scores is None and self._load_error is not None:
            # Still within refresh_seconds of a failed load: do not hit the store on every call.
            raise StoreError(self._load_error.message)
        return self.scores

    def decide(self, task: str, **constraints: Any) -> RouteDecision:
        """The decision for ``task``; when no candidate qualifies or the store fails, the static order, counted."""
        v2 = self.v2_enabled if self.v2_enabled is not None else parse_flag(os.environ.get(FLAG_ENV))
        try:
            return route(task, scores=self._table(v2), policy=self.policy, v2_enabled=v2, store=self.store,
                         **constraints)
        except (NoCandidateError, StoreError) as exc:
            with self._lock:
                self.static_fallbacks += 1
            if isinstance(exc, StoreError):
                log.warning("recsys router: routing '%s' by the policy's static order: %s", task, exc)
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
