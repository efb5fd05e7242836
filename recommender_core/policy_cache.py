"""The parsed policy, once per file version; and its compiled form on disk for ``recsys route``.

Parsing and validating a policy of 500 candidates takes a noticeable fraction of a ``route`` or
``score`` command, and several parts of one process ask for it (the command, ``route``,
``decision_seconds``, ``serve``). ``cached_policy`` parses a file once per identity: its path and
the digest of its bytes (reading 50 KB costs microseconds; modification times alone can miss an
edit that keeps the size within the file system's timestamp granularity), and it parses exactly the
bytes it hashed. An edited or replaced file is parsed again on the next call.

Across processes, ``save_compiled`` writes what routing reads from a validated policy (each task's
kind, static order and constraints; the candidates of each kind) as JSON named by the SHA-256 of the
policy file's bytes, in the cache folder (``RECSYS_CACHE_DIR``, ``environ.cache_dir``).
``load_compiled`` finds it again for the same bytes, without YAML or pydantic: the CLI's fast
``recsys route`` reads it. The file is only ever written from a policy that parsed and validated,
so a compiled form always stands for a valid policy; any doubt about it (another format, another
recsys version, a damaged file) reads as a miss. This module imports the policy parser only when it
parses.
"""

from __future__ import annotations

import _thread
import os

# typing's import costs milliseconds of the fast ``recsys route`` path: the names are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .policy import Policy

__all__ = ["COMPILED_FORMAT", "cached_policy", "clear_policy_cache", "compiled_file", "load_compiled",
           "policy_digest", "save_compiled"]

# Bump when the compiled document changes shape or meaning: older files then read as a miss.
COMPILED_FORMAT = 1
_MAX_ENTRIES = 8
_cache: dict[tuple[str, str], Policy] = {}
_lock = _thread.allocate_lock()  # threading.Lock, without importing threading
_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "default_policy.yaml")


def _sha256_hex(data: bytes) -> str:
    try:  # the built-in implementation: hashlib's import loads OpenSSL (a few ms of a fast command)
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - an interpreter built without it
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def _read(path: Path | str | None) -> bytes | None:
    try:
        with open(_DEFAULT if path is None else path, "rb") as handle:
            return handle.read()
    except OSError:
        return None  # load_policy reports the missing or unreadable file


def policy_digest(path: Path | str | None) -> str | None:
    """SHA-256 of the policy file's bytes (the packaged default when ``path`` is None); None if unreadable."""
    data = _read(path)
    return None if data is None else _sha256_hex(data)


def _parse(data: bytes, path: Path | str) -> Policy:
    """``load_policy(path)`` of exactly these bytes (decoded and newline-translated as it reads them)."""
    from pathlib import Path

    from .policy import load_policy, parse_policy

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return load_policy(path)  # the same error, worded once, in load_policy
    return parse_policy(text.replace("\r\n", "\n").replace("\r", "\n"), path=str(Path(path)))


def _cached(path: Path | str | None, data: bytes | None) -> Policy:
    from .policy import load_policy

    if path is None:
        key: tuple[str, str] = ("<default>", "")
    elif data is None:
        return load_policy(path)
    else:
        key = (os.path.abspath(path), _sha256_hex(data))
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    policy = load_policy(None) if path is None or data is None else _parse(data, path)
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.pop(next(iter(_cache)))
        _cache[key] = policy
    return policy


def cached_policy(path: Path | str | None = None) -> Policy:
    """``load_policy(path)``, parsed once per version of the file (the packaged default: once)."""
    return _cached(path, None if path is None else _read(path))


def clear_policy_cache() -> None:
    """Forget every parsed policy (tests)."""
    with _lock:
        _cache.clear()


def compiled_file(cache_dir: str, digest: str) -> str:
    return os.path.join(cache_dir, f"policy-{digest}.json")


def _compile(policy: Policy, digest: str) -> dict[str, Any]:
    from . import __version__

    kinds: dict[str, list[str]] = {}
    for name, candidate in policy.candidates.items():
        kinds.setdefault(candidate.kind, []).append(name)
    return {"format": COMPILED_FORMAT, "recsys": __version__, "sha256": digest, "kinds": kinds,
            "tasks": {name: {"kind": task.kind, "static_order": list(task.static_order),
                             "limits": [task.constraints.max_cost_per_1k, task.constraints.max_latency_ms,
                                        task.constraints.min_quality]}
                      for name, task in policy.tasks.items()}}


def save_compiled(path: Path | str | None, cache_dir: str) -> bool:
    """Write the compiled form of the policy at ``path`` (parsed and validated first, as ``cached_policy``
    does) into ``cache_dir``; True when it is there. A folder that cannot be written is no error: the
    fast path then misses and the command takes the full path."""
    import json

    data = _read(path)
    if data is None:
        return False
    digest = _sha256_hex(data)
    target = compiled_file(cache_dir, digest)
    if os.path.exists(target):
        return True
    document = _compile(_cached(path, data), digest)
    partial = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"), allow_nan=False)
        os.replace(partial, target)  # atomic: a reader sees the whole file or none
    except (OSError, ValueError):
        try:
            os.unlink(partial)
        except OSError:
            pass
        return False
    return True


def _valid(document: Any, digest: str) -> bool:
    from . import __version__

    if not (isinstance(document, dict) and document.get("format") == COMPILED_FORMAT
            and document.get("recsys") == __version__ and document.get("sha256") == digest):
        return False
    kinds, tasks = document.get("kinds"), document.get("tasks")
    if not (isinstance(kinds, dict) and isinstance(tasks, dict)):
        return False
    if not all(isinstance(names, list) and all(isinstance(n, str) for n in names) for names in kinds.values()):
        return False
    for task in tasks.values():
        if not (isinstance(task, dict) and isinstance(task.get("kind"), str)):
            return False
        order, limits = task.get("static_order"), task.get("limits")
        if not (isinstance(order, list) and order and all(isinstance(n, str) for n in order)):
            return False
        if not (isinstance(limits, list) and len(limits) == 3 and all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in limits)):
            return False
    return True


def load_compiled(path: Path | str | None, cache_dir: str) -> dict[str, Any] | None:
    """The compiled form of the policy file's current bytes, or None (no cache yet, or any doubt).

    ``{"kinds": {kind: [candidate, ...]}, "tasks": {task: {"kind", "static_order", "limits":
    [max_cost_per_1k, max_latency_ms, min_quality]}}}``, candidates in the policy's order.
    """
    import json

    digest = policy_digest(path)
    if digest is None:
        return None
    try:
        with open(compiled_file(cache_dir, digest), encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if _valid(document, digest) else None
