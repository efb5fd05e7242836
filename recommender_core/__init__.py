"""recsys core library: evidence-guided LLM model recommendation for LiteLLM users.

Importing this package is cheap: it never imports litellm, SQLAlchemy or httpx. Names that need
litellm (``TelemetryCallback``, ``RecommenderRouter``) and the routing entry points resolve lazily.

    >>> import recommender_core
    >>> issubclass(recommender_core.RecsysError, Exception)
    True
"""

from __future__ import annotations

# Nothing is imported here: every public name resolves on first use (PEP 562), so a light module of the
# package (``recommender_core.environ``, ``routing.rank``) costs only itself. ``typing`` too is left out.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = [
    "RecommenderRouter",
    "RecsysError",
    "RouteDecision",
    "TelemetryCallback",
    "__version__",
    "route",
]

# name -> (module, attribute); resolved on first access so `import recommender_core` stays light.
_LAZY: dict[str, tuple[str, str]] = {
    "RecsysError": ("recommender_core.errors", "RecsysError"),
    "TelemetryCallback": ("recommender_core.telemetry.callback", "TelemetryCallback"),
    "RecommenderRouter": ("recommender_core.routing.adapter", "RecommenderRouter"),
    "route": ("recommender_core.routing.decision", "route"),
    "RouteDecision": ("recommender_core.routing.decision", "RouteDecision"),
}

if TYPE_CHECKING:  # pragma: no cover - what type checkers see for the lazy names above
    from .errors import RecsysError
    from .routing.adapter import RecommenderRouter
    from .routing.decision import RouteDecision, route
    from .telemetry.callback import TelemetryCallback


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'recommender_core' has no attribute {name!r}")
    import importlib

    module_name, attribute = target
    module = importlib.import_module(module_name)
    value = getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
