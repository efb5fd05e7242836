"""Evidence sources: a Source base class and a registry of plugins.

Plugin modules pull in httpx and pyarrow, so they are imported on demand: ``get_source(name)``
loads one, ``load_sources()`` loads all and returns the registry every user-facing list comes from.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Source

__all__ = ["PLUGIN_MODULES", "available_sources", "get_source", "load_sources"]

# source name -> the module that registers it with @register_source
PLUGIN_MODULES: dict[str, str] = {
    "lmsys": "recommender_core.sources.lmsys",
    "mteb": "recommender_core.sources.mteb",
    "outcomes": "recommender_core.sources.outcomes",
}


def available_sources() -> tuple[str, ...]:
    """Names of every evidence source, without importing any plugin."""
    return tuple(PLUGIN_MODULES)


def get_source(name: str) -> type[Source]:
    """The registered Source class called ``name``."""
    from .base import SOURCES

    module = PLUGIN_MODULES.get(name)
    if module is None:
        raise ConfigError(f"Unknown source '{name}'. Available sources: {', '.join(available_sources())}.")
    importlib.import_module(module)
    return SOURCES[name]


def load_sources() -> dict[str, type[Source]]:
    """Import every plugin and return the registry."""
    return {name: get_source(name) for name in PLUGIN_MODULES}
