"""Evidence sources: a Source base class and a registry of plugins (lmsys, mteb, litellm)."""

from __future__ import annotations

__all__: list[str] = []
