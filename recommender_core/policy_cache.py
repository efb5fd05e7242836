"""The parsed policy, once per file version: a cache keyed by the file's identity.

Parsing and validating a policy of 500 candidates takes a noticeable fraction of a ``route`` or
``score`` command, and several parts of one process ask for it (the command, ``route``,
``decision_seconds``, ``serve``). ``cached_policy`` parses a file once per identity: its path and
the digest of its bytes (reading 50 KB costs microseconds; modification times alone can miss an
edit that keeps the size within the file system's timestamp granularity). An edited or replaced file
is parsed again on the next call.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from .policy import Policy, load_policy

__all__ = ["cached_policy", "clear_policy_cache"]

_MAX_ENTRIES = 8
_cache: dict[tuple[str, str], Policy] = {}
_lock = threading.Lock()


def _identity(path: str) -> tuple[str, str] | None:
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None  # load_policy reports the missing or unreadable file
    return (os.path.abspath(path), digest)


def cached_policy(path: Path | str | None = None) -> Policy:
    """``load_policy(path)``, parsed once per version of the file (the packaged default: once)."""
    key = ("<default>", "") if path is None else _identity(str(path))
    if key is None:
        return load_policy(path)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    policy = load_policy(path)
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.pop(next(iter(_cache)))
        _cache[key] = policy
    return policy


def clear_policy_cache() -> None:
    """Forget every parsed policy (tests)."""
    with _lock:
        _cache.clear()
