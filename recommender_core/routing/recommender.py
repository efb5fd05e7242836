"""Decisions on the request path, shared by both LiteLLM adapters (``RecommenderRouter`` and
``RecommenderRoutingStrategy``).

``Recommender.decide(task)`` routes from one of three sources, chosen at construction:

- ``store=``: a ``Store`` or a database URL; its current scoring run is loaded on the first call and
  again every ``refresh_seconds`` (never once per call), and a failed refresh keeps the table it had;
- ``scores=``: a ``UtilityTable``, or the path of a saved ``recsys snapshot --json``;
- neither: with the V2 flag on, the configured store (``RECSYS_DATABASE_URL``), loaded like ``store=``;
  with it off, the policy's static order.

When no candidate qualifies, or the store cannot be read, it answers the policy's static order and
counts it in ``static_fallbacks``: availability beats optimality on the request path. Anything but
the types above is a ``TypeError`` at construction (a programming error, not a ``RecsysError``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NoCandidateError, StoreError
from ..policy import Policy
from .decision import RouteDecision, route
from .table import UtilityTable, load_current_table, table_from_snapshot

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Recommender", "as_store", "as_table"]

log = logging.getLogger("recsys.routing")


def as_store(store: object) -> tuple[Store | None, bool]:
    """``(store, owned)`` from a ``Store`` or a database URL; ``owned`` when this call opened it."""
    from ..store import Store

    if store is None or isinstance(store, Store):
        return store, False
    if isinstance(store, str):
        return Store(store), True
    raise TypeError(f"store= takes a recommender_core Store or a database URL such as "
                    f"'postgresql://user@host/recsys', not {type(store).__name__}.")


def as_table(scores: object) -> UtilityTable | None:
    """A ``UtilityTable`` as given, or the one in a saved snapshot file (``str`` or path)."""
    if scores is None or isinstance(scores, UtilityTable):
        return scores
    if isinstance(scores, str | os.PathLike):
        return table_from_snapshot(Path(scores))
    raise TypeError(f"scores= takes a UtilityTable or the path of a 'recsys snapshot --json' file, "
                    f"not {type(scores).__name__}.")


class Recommender:
    """Route decisions for the adapters: a table from scores, a snapshot or a store, refreshed, with a
    counted static fallback. Thread-safe; ``decide`` never raises ``NoCandidateError`` or ``StoreError``.
    """

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        scores: UtilityTable | str | os.PathLike[str] | None = None,
        store: Store | str | None = None,
        v2_enabled: bool | None = None,
        table_loader: Callable[[], UtilityTable | None] | None = None,
        refresh_seconds: float = 60.0,
    ) -> None:
        self.policy = policy
        self.scores = as_table(scores)
        self.store, self._owns_store = as_store(store)
        self.v2_enabled = v2_enabled
        self.refresh_seconds = refresh_seconds
        self.static_fallbacks = 0
        self._loader = table_loader
        self._lock = threading.Lock()
        # No table given: load a store's current run here, not once per call inside route().
        self._from_store = self.scores is None and table_loader is None
        self._loaded_at: float | None = None
        self._load_error: StoreError | None = None

    def close(self) -> None:
        """Release the store this recommender opened from a URL (a given ``Store`` is the caller's)."""
        if self._owns_store and self.store is not None:
            self.store.dispose()

    def reload(self) -> None:
        """Load a fresh utility table through ``table_loader``, or from the store on the next call."""
        if self._loader is not None:
            self.scores = self._loader()
        with self._lock:
            self._loaded_at = None

    def _v2(self) -> bool:
        from ..config import Settings

        return self.v2_enabled if self.v2_enabled is not None else bool(Settings.read("enable_model_recommender_v2"))

    def _configured_store(self) -> Store:
        if self.store is None:
            from ..config import Settings
            from ..store import Store

            with self._lock:
                if self.store is None:
                    self.store, self._owns_store = Store.from_settings(Settings.load()), True
        assert self.store is not None  # noqa: S101 - set above
        return self.store

    def _table(self, v2_enabled: bool) -> UtilityTable | None:
        """``scores``; with no table given, the store's current run, reloaded every ``refresh_seconds``."""
        if not v2_enabled or not self._from_store:
            return self.scores
        now = time.monotonic()
        with self._lock:
            due = self._loaded_at is None or now - self._loaded_at >= self.refresh_seconds
            if due:
                self._loaded_at = now
        if due:
            try:
                table = load_current_table(self._configured_store())
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
        v2 = self._v2()
        try:
            return route(task, scores=self._table(v2), policy=self.policy, v2_enabled=v2, store=self.store,
                         **constraints)
        except (NoCandidateError, StoreError) as exc:
            with self._lock:
                self.static_fallbacks += 1
            if isinstance(exc, StoreError):
                log.warning("recsys router: routing '%s' by the policy's static order: %s", task, exc)
            return route(task, policy=self.policy, v2_enabled=False)
