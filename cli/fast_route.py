"""The fast way to ``recsys route``: the plain, common invocation without Typer, SQLAlchemy or pydantic.

``recsys route TASK [--json] [--strategy S] [--max-cost-per-1k X] [--max-latency-ms X]
[--min-quality Q] [--policy PATH]`` (with ``--json`` or ``--database-url URL`` also before ``route``)
is served here when everything it needs is at hand:

- the settings it reads (``RECSYS_DATABASE_URL``/``DATABASE_URL``, ``RECSYS_POLICY``,
  ``ENABLE_MODEL_RECOMMENDER_V2``, ``RECSYS_CACHE_DIR``) are set plainly, through ``environ`` (the
  table ``Settings`` reads them from), and every other variable ``Settings`` would read is one that
  cannot fail its validation (``FREE``) or ``RECSYS_LOG_FORMAT`` with a valid value;
- the policy's compiled form is in the cache (``policy_cache.load_compiled``: the same bytes, parsed
  and validated by an earlier full run, which wrote it);
- with the V2 flag on, the store is an existing SQLite file or a Postgres URL, at the schema version
  of this recsys (``store.revision.head_revision``, compared as ``Store.ensure_ready`` does), and its
  current scoring run has rows for the task of which at least one qualifies.

It reads that one task's rows with the bare driver (``sqlite3`` or ``psycopg``) in one indexed query,
decides with ``routing.rank`` (the rules ``route()`` applies), and prints with ``route_text`` or the
``--json`` document of ``RouteDecision.to_json``: the same bytes as the Typer command (tests run both).
Anything else (``--help``, another option, any error, a missing cache, the embedded default store,
which may need migrating) returns None and the caller runs the Typer CLI, so every message and exit
code stays in one place.
"""

from __future__ import annotations

import math
import os
import sys

# typing's import costs milliseconds of the fast ``recsys route`` path: the names are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["FREE", "Request", "serve", "try_route"]

# Settings whose every value validates (free text, or a secret): their presence changes nothing here.
FREE = frozenset({"recsys_pushgateway_url", "recsys_pushgateway_username", "recsys_pushgateway_password",
                  "recsys_lmsys_url", "recsys_mteb_url", "recsys_spend_logs_url", "hf_token", "github_token"})
_READ = {"RECSYS_DATABASE_URL", "DATABASE_URL", "RECSYS_POLICY", "ENABLE_MODEL_RECOMMENDER_V2", "RECSYS_CACHE_DIR"}
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_VALUED = {"--strategy": "strategy", "--max-cost-per-1k": "max_cost", "--max-latency-ms": "max_latency",
           "--min-quality": "min_quality", "--policy": "policy"}
# (lowest, highest) of each number option, as the Typer command declares them.
_BOUNDS = {"max_cost": (0.0, math.inf), "max_latency": (0.0, math.inf), "min_quality": (0.0, 1.0)}


class Request:
    """One parsed ``recsys route`` invocation."""

    __slots__ = ("database_url", "json_output", "max_cost", "max_latency", "min_quality", "policy", "strategy",
                 "task")

    def __init__(self) -> None:
        self.task = ""
        self.json_output = False
        self.database_url: str | None = None
        self.strategy = "utility"
        self.policy: str | None = None
        self.max_cost: float | None = None
        self.max_latency: float | None = None
        self.min_quality: float | None = None


def parse(argv: Sequence[str]) -> Request | None:
    """The request, or None for anything this path does not serve exactly as Typer would."""
    request = Request()
    args = list(argv)
    seen: set[str] = set()
    while args and args[0] != "route":  # the root's options
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if arg == "--json":
            request.json_output = True
        elif name == "--database-url" and "database_url" not in seen:
            if not eq:
                if not args:
                    return None
                value = args.pop(0)
            seen.add("database_url")
            request.database_url = value
        else:
            return None
    if not args:
        return None
    args.pop(0)
    task = None
    while args:
        arg = args.pop(0)
        if not arg.startswith("-"):
            if task is not None:
                return None
            task = arg
            continue
        name, eq, value = arg.partition("=")
        if arg == "--json":
            request.json_output = True
            continue
        field = _VALUED.get(name)
        if field is None or field in seen:
            return None
        if not eq:
            if not args:
                return None
            value = args.pop(0)
        seen.add(field)
        if field in _BOUNDS:
            try:
                number = float(value)
            except ValueError:
                return None
            low, high = _BOUNDS[field]
            if not (math.isfinite(number) and low <= number <= high):
                return None
            setattr(request, field, number)
        else:
            setattr(request, field, value)
    if not task:
        return None
    request.task = task
    return request


def _settings() -> dict[str, str] | None:
    """The plainly set settings this path reads, by name; None when the environment needs the full path."""
    from recommender_core.environ import settings_environment

    found: dict[str, str] = {}
    for lowered, entries in settings_environment().items():
        if len(entries) > 1:
            return None  # the same name in several cases: pydantic-settings would pick one
        name, value = entries[0]
        if lowered in FREE:
            continue
        if name == "RECSYS_LOG_FORMAT" and value in ("text", "json"):
            continue
        if name not in _READ or not value.strip() or value != value.strip():
            return None
        found[name] = value
    return found


# The stored schema version and the current run's rows of one task, in one indexed query (the unique
# index on run_id, task, model); what routing.table.load_task_table reads through SQLAlchemy.
_SELECT = ("SELECT (SELECT version_num FROM alembic_version), r.id, s.model, s.utility, s.quality, s.cost, "
           "s.latency, s.reliability, s.cost_per_1k_tokens, s.latency_p95_ms, s.excluded, s.reason "
           "FROM scoring_run r LEFT JOIN utility_score s ON s.run_id = r.id AND ")


def _rows(url: str, task: str) -> tuple[str | None, list[tuple[Any, ...]]] | None:
    """(stored schema version, the current run's rows of ``task``), or None to take the full path."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:" or path.startswith("~") or "?" in path or "%" in path:
            return None
        if not os.path.isfile(path):
            return None  # the full path creates and migrates a missing store, or says why it cannot
        import sqlite3

        conn = sqlite3.connect(path, timeout=30)
        try:
            fetched = conn.execute(_SELECT + "s.task = ? WHERE r.is_current IS 1", (task,)).fetchall()
        finally:
            conn.close()
    elif sep and scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        import psycopg

        with psycopg.connect(f"postgresql://{rest}", autocommit=True, connect_timeout=5,
                             application_name="recsys") as server:
            fetched = server.execute(_SELECT + "s.task = %s WHERE r.is_current IS TRUE", (task,)).fetchall()
    else:
        return None
    if not fetched:
        return None
    return fetched[0][0], [tuple(row[1:]) for row in fetched]


def _decide(request: Request, compiled: dict[str, Any], fetched: list[tuple[Any, ...]]
            ) -> tuple[tuple[str, ...], list[tuple[Any, ...]], tuple[tuple[str, str], ...]] | None:
    """(order, shown candidates, exclusions) as ``route()`` decides them; None where it raises."""
    from recommender_core.routing.rank import decide, exclusions, ranked

    spec = compiled["tasks"][request.task]
    if len({row[0] for row in fetched}) != 1:
        return None  # more than one current run: the full path reports it
    rows: dict[str, tuple[Any, ...]] = {}
    excluded: list[tuple[str, str]] = []
    for _, model, utility, quality, cost, latency, reliability, cost_per_1k, p95, is_excluded, reason in fetched:
        if model is None:
            continue
        if is_excluded or utility is None:
            excluded.append((model, reason or "excluded by the scoring run"))
        elif model in rows:
            return None  # a model twice: the full path's ConfigError
        else:
            rows[model] = (model, utility, quality or 0.0, cost or 0.0, latency or 0.0, reliability or 0.0,
                           cost_per_1k or 0.0, p95 or 0.0)
    if not rows:
        return None
    defaults = spec["limits"]
    limits = (request.max_cost if request.max_cost is not None else defaults[0],
              request.max_latency if request.max_latency is not None else defaults[1],
              request.min_quality if request.min_quality is not None else defaults[2])
    by_utility = ranked(rows.values())
    try:
        chosen = decide(by_utility, limits, request.strategy)
    except KeyError:
        return None  # another strategy: the full path names the available ones
    if not chosen:
        return None  # NoCandidateError, worded by the full path
    left_out = exclusions(sorted(set(excluded)), ((r[0], r[6], r[7], r[2]) for _, r in by_utility), chosen, limits,
                          compiled["kinds"].get(spec["kind"], ()), rows)
    return chosen, [rows[m][:6] for m in chosen], left_out


def serve(request: Request) -> str | None:
    """The whole output of the request, or None to take the full path."""
    from recommender_core import environ, policy_cache

    settings = _settings()
    if settings is None:
        return None
    flag = settings.get("ENABLE_MODEL_RECOMMENDER_V2", "false").lower()
    if flag not in _TRUE | _FALSE:
        return None
    v2 = flag in _TRUE
    policy = request.policy if request.policy is not None else settings.get("RECSYS_POLICY")
    if policy is not None and not policy.strip():
        return None
    compiled = policy_cache.load_compiled(policy, environ.cache_dir())
    if compiled is None or request.task not in compiled["tasks"]:
        return None
    shown: list[tuple[Any, ...]]
    left_out: tuple[tuple[str, str], ...]
    if not v2:
        static = compiled["tasks"][request.task]["static_order"]
        chosen, shown, left_out = tuple(static), [], ()  # the static order explains nothing
    else:
        url = request.database_url if request.database_url is not None else (
            settings.get("RECSYS_DATABASE_URL") or settings.get("DATABASE_URL"))
        if not url or not url.strip():
            return None  # the embedded default store: created and migrated by the full path
        from recommender_core.store.revision import head_revision

        found = _rows(url, request.task)
        if found is None or found[0] != head_revision():
            return None
        decided = _decide(request, compiled, found[1])
        if decided is None:
            return None
        chosen, shown, left_out = decided
    if request.json_output:
        import json

        document = {"task": request.task, "strategy": request.strategy, "v2_enabled": v2, "primary": chosen[0],
                    "fallbacks": list(chosen[1:]),
                    "candidates": [{"model": m, "utility": u, "quality": q, "cost": c, "latency": lat,
                                    "reliability": r} for m, u, q, c, lat, r in shown],
                    "excluded": [{"model": m, "reason": reason} for m, reason in left_out]}
        return json.dumps(document, indent=2, allow_nan=False) + "\n"
    from .route_text import route_text, terminal_width

    source = "scores" if v2 else "the policy's static order (ENABLE_MODEL_RECOMMENDER_V2 is off)"
    return route_text(request.task, chosen[0], chosen[1:], strategy=request.strategy, source=source,
                      candidates=shown, excluded=list(left_out), width=terminal_width())


def try_route(argv: Sequence[str]) -> bool:
    """Serve ``recsys route`` here when it is the plain case; False when the full CLI must run it."""
    request = parse(argv)
    if request is None:
        return False
    try:
        text = serve(request)
    except Exception:  # any surprise (a driver error, a damaged store): the full path reports it properly
        return False
    if text is None:
        return False
    sys.stdout.write(text)
    return True
