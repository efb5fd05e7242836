"""``recsys serve``: a small read-only HTTP endpoint for debugging and scraping.

``GET /snapshot`` (the snapshot document; ``?task=`` and ``?top=``), ``GET /healthz`` (200 when the
store answers, 503 with the reason otherwise: the readiness probe), ``GET /livez`` (200 while the
process serves requests, whatever the store does: the liveness probe, so a database outage takes the
pods out of the Service instead of restarting them) and ``GET /metrics`` (Prometheus text format).
The standard library's ``ThreadingHTTPServer`` is enough: responses come from a short cache, so
the store sees at most one snapshot query per (task, top) per ``cache_seconds``. An expired entry is
rebuilt by a background thread while requests keep getting the previous copy, so no request waits
for a rebuild (only the very first request for a key, which has no copy yet, builds it).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError, RecsysError, StoreError, UsageError
from ..policy import Policy
from ..redact import redact_text
from ..store import Store
from .metrics import METRICS
from .snapshot import (
    TELEMETRY_WINDOW_HOURS,
    build_snapshot,
    current_scoring_run,
    selection_counts,
    source_status,
)

__all__ = ["DEFAULT_CACHE_SECONDS", "DEFAULT_IDLE_TIMEOUT_SECONDS", "MAX_TASK_LENGTH", "MAX_TOP", "DiagnosticsApp",
           "Response", "make_server"]

log = logging.getLogger("recsys.serve")

DEFAULT_CACHE_SECONDS = 5.0
# A connection that sends nothing for this long is closed, so idle clients cannot each hold a thread.
DEFAULT_IDLE_TIMEOUT_SECONDS = 30.0
JSON_TYPE = "application/json"
_SNAPSHOT_PARAMS = frozenset({"task", "top"})
# Bounds of the query parameters (anything outside is a 400): a task name fits its column, and no
# policy has more models than this.
MAX_TASK_LENGTH = 128
MAX_TOP = 10_000
_MAX_QUERY_FIELDS = 8


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


def _json(status: int, document: Any) -> Response:
    return Response(status, JSON_TYPE, json.dumps(document, default=str, allow_nan=False).encode())


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": HTTPStatus(status).phrase, "message": redact_text(message)})


class DiagnosticsApp:
    """The request logic of ``recsys serve``, independent of the socket server (testable directly)."""

    def __init__(self, *, store: Store, policy: Policy, v2_enabled: bool, stale_after_hours: float = 26.0,
                 version: str, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.policy = policy
        self.v2_enabled = v2_enabled
        self.stale_after_hours = stale_after_hours
        self.version = version
        self.cache_seconds = cache_seconds
        # The cache expires on monotonic time (an interval); "now" in documents is the store's clock.
        self._monotonic = monotonic
        self._cache: dict[tuple[str, ...], tuple[float, Response]] = {}
        # One builder at a time: concurrent misses wait for the first and reuse its result.
        self._build_lock = threading.Lock()
        # Keys being rebuilt in the background, and a condition to wait for them (tests, shutdown).
        self._refreshing: set[tuple[str, ...]] = set()
        self._refresh_done = threading.Condition()

    # --- routing ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str) -> Response:
        """Answer one request; never raises."""
        parts = urlsplit(target)
        routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/snapshot": self._snapshot, "/healthz": self._healthz, "/livez": self._livez, "/metrics": self._metrics,
        }
        route = routes.get(parts.path)
        if route is None:
            return _error(404, f"No such path {parts.path!r}. Paths: {', '.join(sorted(routes))}.")
        if method not in ("GET", "HEAD"):
            return _error(405, f"{method} is not allowed; use GET.")
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                             max_num_fields=_MAX_QUERY_FIELDS)
        except ValueError:
            shown = parts.query if len(parts.query) <= 200 else parts.query[:200] + "..."
            return _error(400, f"Malformed query string {shown!r}.")
        try:
            return route(query)
        except UsageError as exc:
            return _error(400, exc.message)
        except StoreError as exc:
            return _error(503, exc.message)
        except RecsysError as exc:
            return _error(500, exc.message)
        except Exception:
            log.exception("unexpected error serving %s", parts.path)
            return _error(500, "Unexpected server error; see the server log.")

    def _cached(self, key: tuple[str, ...], build: Callable[[], Response]) -> Response:
        """Fresh from the cache; an expired copy while a background thread rebuilds it; else built now.

        On a large store a rebuild takes seconds: requests never wait for one while a copy exists
        (stale while revalidate, with the revalidation off the request's thread). A key never built
        has nothing to give, so its first request builds it (concurrent ones wait and reuse it).
        """
        if self.cache_seconds <= 0:  # caching off: every request builds (the uncached benchmark)
            return build()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] <= self._monotonic():
                self._refresh_in_background(key, build)
            return hit[1]
        with self._build_lock:
            fresh = self._cache.get(key)  # we may have waited for another builder of this very key
            if fresh is not None:
                return fresh[1]
            return self._build_into_cache(key, build)

    def _build_into_cache(self, key: tuple[str, ...], build: Callable[[], Response]) -> Response:
        response = build()
        if response.status == 200:
            self._cache[key] = (self._monotonic() + self.cache_seconds, response)
        return response

    def _refresh_in_background(self, key: tuple[str, ...], build: Callable[[], Response]) -> None:
        with self._refresh_done:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def refresh() -> None:
            try:
                with self._build_lock:
                    self._build_into_cache(key, build)
            except Exception:  # the expired copy stays; the next request after expiry tries again
                log.warning("recsys serve: could not refresh %s in the background", "/".join(key), exc_info=True)
            finally:
                with self._refresh_done:
                    self._refreshing.discard(key)
                    self._refresh_done.notify_all()

        threading.Thread(target=refresh, name="recsys-serve-refresh", daemon=True).start()

    def wait_for_refreshes(self, timeout: float = 30.0) -> bool:
        """Wait until no background rebuild is running; False when ``timeout`` seconds passed first."""
        with self._refresh_done:
            return self._refresh_done.wait_for(lambda: not self._refreshing, timeout)

    # --- endpoints --------------------------------------------------------------------------------

    def _snapshot(self, query: dict[str, list[str]]) -> Response:
        unknown = sorted(set(query) - _SNAPSHOT_PARAMS)
        if unknown:
            raise UsageError(f"Unknown query parameter {unknown[0]!r}; /snapshot takes task and top.")
        for name, values in query.items():
            if len(values) != 1:
                raise UsageError(f"Query parameter {name!r} given {len(values)} times; give it once.")
        task = query["task"][0] if "task" in query else None
        if task is not None and not task:
            raise UsageError("Query parameter 'task' is empty; give a task name or leave it out.")
        if task is not None and (len(task) > MAX_TASK_LENGTH or not task.isprintable()):
            raise UsageError(f"Query parameter 'task' must be a task name: printable characters, at most "
                             f"{MAX_TASK_LENGTH} of them.")
        top: int | None = None
        if "top" in query:
            raw = query["top"][0]
            # ASCII digits only (str.isdigit also takes '²'), and few enough to read as a number.
            if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_TOP))) \
                    or not 1 <= int(raw) <= MAX_TOP:
                shown = raw if len(raw) <= 20 else raw[:20] + "..."
                raise UsageError(f"Query parameter 'top' must be a whole number from 1 to {MAX_TOP}, "
                                 f"got {shown!r}.")
            top = int(raw)

        def build() -> Response:
            snapshot = build_snapshot(self.store, self.policy, v2_enabled=self.v2_enabled,
                                      stale_after_hours=self.stale_after_hours, task=task, top=top)
            return _json(200, snapshot.document)

        return self._cached(("snapshot", task or "", str(top or "")), build)

    def _healthz(self, query: dict[str, list[str]]) -> Response:
        if query:
            raise UsageError("/healthz takes no query parameters.")
        try:
            self.store.ping()
            self.store.ensure_ready()
        except RecsysError as exc:
            return _json(503, {"status": "unavailable", "reason": redact_text(exc.message)})
        return _json(200, {"status": "ok"})

    def _livez(self, query: dict[str, list[str]]) -> Response:
        # Answering at all is the check: this thread was accepted, parsed the request and runs. The
        # store is deliberately not touched (a database outage is /healthz's business, not a reason
        # to restart the process).
        if query:
            raise UsageError("/livez takes no query parameters.")
        return _json(200, {"status": "alive"})

    def _metrics(self, query: dict[str, list[str]]) -> Response:
        if query:
            raise UsageError("/metrics takes no query parameters.")
        return self._cached(("metrics",), self._build_metrics)

    def _build_metrics(self) -> Response:
        from prometheus_client import CollectorRegistry, Gauge, generate_latest

        # generate_latest writes the classic 0.0.4 text format, which every Prometheus version scrapes.
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

        registry = CollectorRegistry()

        def gauge(name: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, METRICS[name].help, list(labels), registry=registry)

        gauge("recsys_build_info", ("version",)).labels(version=self.version).set(1)
        up = gauge("recsys_store_up")
        now = self.store.clock.now()
        try:
            sources = source_status(self.store, now, timedelta(hours=self.stale_after_hours))
            run = current_scoring_run(self.store, now)
            selections = selection_counts(self.store, since=now - timedelta(hours=TELEMETRY_WINDOW_HOURS))
        except RecsysError as exc:
            # Still a valid scrape: build info and store_up 0 say what is wrong.
            log.warning("metrics: the store did not answer: %s", redact_text(exc.message))
            up.set(0)
        else:
            up.set(1)
            age = gauge("recsys_source_age_seconds", ("source",))
            stale = gauge("recsys_source_stale", ("source",))
            for source in sources:
                if source["age_seconds"] is not None:
                    age.labels(source=source["source"]).set(source["age_seconds"])
                stale.labels(source=source["source"]).set(1 if source["stale"] else 0)
            if run is not None:
                gauge("recsys_scoring_run_age_seconds").set(run["age_seconds"])
            selected = gauge("recsys_model_selected_calls", ("task", "model"))
            for (task, model), calls in sorted(selections.items()):
                selected.labels(task=task, model=model).set(calls)
        body = generate_latest(registry)
        # Cache a store outage too, briefly, so a scrape storm cannot pile onto a failing database.
        return Response(200, CONTENT_TYPE_PLAIN_0_0_4, body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "recsys"

    def setup(self) -> None:
        # Every read and write on the connection times out: an idle keep-alive client (or one that
        # sends a request a byte a minute) is dropped after idle_timeout and its thread freed.
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)

    def _respond(self, head_only: bool) -> None:
        response = self.server.app.handle(self.command, self.path)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head_only:
            self.wfile.write(response.body)

    def do_GET(self) -> None:
        self._respond(head_only=False)

    def do_HEAD(self) -> None:
        self._respond(head_only=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


# How long closing the server waits for a background rebuild to end (one takes a second or two).
_REBUILD_WAIT_AT_CLOSE = 10.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Load tests open many short connections at once; the default backlog of 5 refuses some.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: DiagnosticsApp, idle_timeout: float) -> None:
        self.app = app
        self.idle_timeout = idle_timeout
        super().__init__(address, _Handler)

    def server_close(self) -> None:
        """Stop listening and wait for the request threads (socketserver's ``block_on_close``), then for
        a background rebuild still running, for at most ``_REBUILD_WAIT_AT_CLOSE`` seconds: its daemon
        thread compiling SQL while the interpreter exits races the exit handlers (CI saw
        ``RuntimeError: dictionary changed size during iteration`` from ``weakref.finalize`` at exit)."""
        super().server_close()
        self.app.wait_for_refreshes(timeout=_REBUILD_WAIT_AT_CLOSE)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or went quiet is one debug line, not the traceback socketserver prints."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client %s went away: %s", client_address[0] if client_address else "?", type(exc).__name__)
            return
        log.error("unexpected error serving %s: %s: %s", client_address[0] if client_address else "?",
                  type(exc).__name__, redact_text(str(exc)))
        log.debug("the unexpected error's traceback", exc_info=exc)


def make_server(app: DiagnosticsApp, *, host: str = "127.0.0.1", port: int = 8080,
                idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS) -> ThreadingHTTPServer:
    """Bind (port 0 picks a free one; see ``server_address``); call ``serve_forever()`` to serve.

    A connection idle for ``idle_timeout`` seconds (no request, or a request or response stalled) is
    closed.
    """
    if idle_timeout <= 0:
        raise ValueError("idle_timeout must be positive")
    try:
        return _Server((host, port), app, idle_timeout)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}. "
                          "Choose another host or port.") from exc
