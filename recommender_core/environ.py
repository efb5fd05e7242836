"""The environment variables recsys reads, and the one light reader of them.

``Settings`` (``config.py``, pydantic-settings) reads every setting from the environment, and
``Settings.read`` reads one of them through ``value`` here. The CLI's fast ``recsys route`` path
(``recsys_cli.fast_route``) must not import pydantic, so it reads its few settings through this
module as well: the names come from one table (``ALIASES``, which ``Settings`` declares its aliases
from), and no other module of recsys touches ``os.environ`` (a test checks).
"""

from __future__ import annotations

import os

__all__ = ["ALIASES", "PREFIX", "cache_dir", "env_names", "settings_environment", "value"]

PREFIX = "RECSYS_"
# Settings fields read from variables other than RECSYS_<FIELD>, in priority order.
ALIASES: dict[str, tuple[str, ...]] = {
    "database_url": ("RECSYS_DATABASE_URL", "DATABASE_URL"),
    "policy": ("RECSYS_POLICY",),
    "enable_model_recommender_v2": ("ENABLE_MODEL_RECOMMENDER_V2",),
    "hf_token": ("HF_TOKEN",),
    "github_token": ("GITHUB_TOKEN",),
}


def env_names(field: str) -> tuple[str, ...]:
    """Every environment variable a Settings field reads, in priority order."""
    return ALIASES.get(field) or (f"{PREFIX}{field.upper()}",)


def value(field: str) -> str | None:
    """The first of ``field``'s variables that is set and not blank (None: unset)."""
    return next((os.environ[name] for name in env_names(field) if os.environ.get(name, "").strip()), None)


def settings_environment() -> dict[str, list[tuple[str, str]]]:
    """Every variable ``Settings`` may read, by lower-cased name (pydantic-settings matches names
    case-insensitively): each as (name as set, value), more than one when a name is set in several cases."""
    aliases = {name.lower() for names in ALIASES.values() for name in names}
    prefix = PREFIX.lower()
    found: dict[str, list[tuple[str, str]]] = {}
    for name, text in os.environ.items():
        lowered = name.lower()
        if lowered.startswith(prefix) or lowered in aliases:
            found.setdefault(lowered, []).append((name, text))
    return found


def cache_dir() -> str:
    """Where recsys keeps files it can rebuild (the compiled policy): ``RECSYS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/recsys``, else ``~/.cache/recsys``."""
    configured = value("cache_dir")
    if configured is not None:
        return configured.strip()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
    return os.path.join(base, "recsys")
