"""Evidence sources: a Source base class and a registry of plugins.

A plugin is a sub-package of this package (``sources/<name>/``) whose ``__init__`` defines and
registers (``@register_source``) one ``Source`` subclass named ``<name>``. Plugins are found by
listing this package, so adding a source is adding its package: the CLI (``recsys ingest <name>``),
the policy (its evidence references) and scoring (its quality) ask the registry.

A plugin's ``__init__`` stays light (no httpx, SQLAlchemy or pyarrow at import): its reading code
lives in modules it imports when a run loads data.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Source

__all__ = ["available_sources", "get_source", "load_sources"]


@cache
def available_sources() -> tuple[str, ...]:
    """Names of every evidence source (its package names), sorted, without importing any plugin."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_")))


def get_source(name: str) -> type[Source]:
    """The registered Source class called ``name``."""
    from .base import SOURCES

    if name not in available_sources():
        raise ConfigError(f"Unknown source '{name}'. Available sources: {', '.join(available_sources())}.")
    importlib.import_module(f"{__name__}.{name}")
    found = SOURCES.get(name)
    if found is None:
        raise RuntimeError(f"the package {__name__}.{name} registers no Source named {name!r}")
    return found


def load_sources() -> dict[str, type[Source]]:
    """Import every plugin and return the registry (name -> Source class), in name order."""
    return {name: get_source(name) for name in available_sources()}
