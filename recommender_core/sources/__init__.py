"""Evidence sources: a Source base class and a registry of plugins.

Plugin modules pull in httpx and pyarrow, so they are imported on demand: ``get_source(name)``
loads one, ``load_sources()`` loads all and returns the registry every user-facing list comes from.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UnknownSourceError

if TYPE_CHECKING:
    from .base import Source

__all__ = ["PLUGIN_MODULES", "available_sources", "check_source_name", "get_source", "load_sources"]

# source name -> the module that registers it with @register_source
PLUGIN_MODULES: dict[str, str] = {
    "lmsys": "recommender_core.sources.lmsys",
    "mteb": "recommender_core.sources.mteb",
}


def available_sources() -> tuple[str, ...]:
    """Names of every evidence source, without importing any plugin."""
    return tuple(PLUGIN_MODULES)


def check_source_name(name: str | None, *, also: tuple[str, ...] = (), option: str = "--source") -> None:
    """Raise ``UnknownSourceError`` (a usage error, exit 2) unless ``name`` is None, an evidence source or
    one of ``also`` (e.g. ``litellm`` telemetry, ``score`` runs), naming every valid choice."""
    valid = (*available_sources(), *also)
    if name is not None and name not in valid:
        raise UnknownSourceError(f"{option} {name!r} is not a known source; use one of: {', '.join(valid)}.",
                                 source=name)


def get_source(name: str) -> type[Source]:
    """The registered Source class called ``name``."""
    from .base import SOURCES

    module = PLUGIN_MODULES.get(name)
    if module is None:
        raise UnknownSourceError(f"Unknown source '{name}'. Available sources: {', '.join(available_sources())}.",
                                 source=name)
    importlib.import_module(module)
    return SOURCES[name]


def load_sources() -> dict[str, type[Source]]:
    """Import every plugin and return the registry."""
    return {name: get_source(name) for name in PLUGIN_MODULES}
