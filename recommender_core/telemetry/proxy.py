"""The callback a LiteLLM proxy loads from its config, by module path::

    litellm_settings:
      callbacks: ["recommender_core.telemetry.proxy.telemetry"]

The proxy imports this module and registers ``telemetry``, a ``TelemetryCallback`` on the store that
``RECSYS_DATABASE_URL`` names in the proxy's environment. Unlike every other recsys module, importing
this one does something (it builds the callback and starts its writer thread): being imported by the
proxy is its only purpose. Pending events are flushed when the proxy exits.
"""

from __future__ import annotations

from .callback import TelemetryCallback

__all__ = ["telemetry"]

telemetry = TelemetryCallback()
