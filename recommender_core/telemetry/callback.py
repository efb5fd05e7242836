"""``TelemetryCallback``: the LiteLLM ``CustomLogger`` that records every call (docs/api.md).

Register it once and every call through the SDK, a ``litellm.Router`` or the proxy is recorded::

    import litellm
    from recommender_core import TelemetryCallback

    litellm.callbacks = [TelemetryCallback()]          # the configured store
    litellm.completion(model="gpt-4o-mini", messages=[...], metadata={"tags": ["task:coding"]})

The hooks only map ``kwargs["standard_logging_object"]`` to a small record and append it to a
bounded queue; a background thread takes batches (``recommender_core.telemetry.writer``) and hands
them to a writer process (``recommender_core.telemetry.writer_process``), so the database work never
competes with the caller for the interpreter lock. A hook never raises into LiteLLM, and no prompt,
response or error message text is ever kept.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import RejectedRow
from .events import TelemetryRecord, record_from_standard_logging
from .validate import check_record
from .writer import BatchWriter, WriterStats, write_records
from .writer_process import WriterProcess

if TYPE_CHECKING:
    from ..store import Store

from ..litellm_import import local_cost_map

with local_cost_map():
    from litellm.integrations.custom_logger import CustomLogger

__all__ = ["TelemetryCallback"]

log = logging.getLogger("recsys.telemetry")


def _run_litellms_queued_hooks() -> None:
    """Run the logging hooks LiteLLM still has queued (async calls: a proxy's, or the SDK's).

    LiteLLM runs them from its own exit handler, registered when litellm is imported, so after
    this callback's (exit handlers run last-registered first): they would reach a closed writer and
    be dropped. Running them first keeps the promise that pending events are written at exit.
    LiteLLM has no public call for it; without this one, the events are dropped and counted as before.
    """
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        GLOBAL_LOGGING_WORKER._flush_on_exit()  # type: ignore[no-untyped-call]  # litellm leaves it unannotated
    except Exception:  # best effort at exit; never raise from an exit handler
        log.debug("telemetry: could not run LiteLLM's queued logging hooks at exit", exc_info=True)


def _close_at_exit(ref: weakref.ReferenceType[TelemetryCallback]) -> None:
    callback = ref()
    if callback is not None:
        if not callback._closed:
            _run_litellms_queued_hooks()
        callback.close(callback.exit_timeout)


def _unregister(callback: CustomLogger) -> None:
    """Remove ``callback`` from LiteLLM's callback lists, so a closed callback is not called."""
    try:
        import litellm

        manager = getattr(litellm, "logging_callback_manager", None)
        drop = getattr(manager, "drop_callbacks", None)
        if drop is not None:
            drop([callback])
        else:  # older litellm: the lists are plain module attributes
            for name in ("callbacks", "input_callback", "success_callback", "failure_callback",
                         "_async_success_callback", "_async_failure_callback"):
                current = getattr(litellm, name, None)
                if isinstance(current, list) and callback in current:
                    setattr(litellm, name, [c for c in current if c is not callback])
    except Exception:  # unregistering is best effort; the closed writer drops and counts events
        log.debug("telemetry: could not unregister the callback from litellm", exc_info=True)


class TelemetryCallback(CustomLogger):
    """Records latency, errors, tokens and cost of every LiteLLM call into the recsys store.

    ``TelemetryCallback(database_url=None)`` writes to the configured store (``RECSYS_DATABASE_URL``,
    else the embedded default) when no URL is given. ``flush(timeout=10.0)`` writes everything
    queued; ``close()`` flushes and stops the writer; pending events are also flushed at exit.

    ``queue_size`` defaults to ``RECSYS_TELEMETRY_QUEUE_SIZE``. ``store`` or ``sink`` replace the
    database (a ``sink`` receives each batch of ``TelemetryRecord``), for tests and embedding.
    ``exit_timeout`` bounds the flush at interpreter exit (seconds): with the store away, exit is
    delayed by at most that much, and the events still queued are lost (and logged as such).

    Every event is checked against ``telemetry.validate``'s rules ("now" from ``clock``, default
    the store's): one that breaks a rule (a NaN cost, negative tokens, a start in the future, ...)
    is not stored and is counted per reason in ``rejected``.

    ``writer`` says where batches are written: ``"process"`` (a child process fed through a pipe:
    the default for a store opened from a URL or the settings) or ``"thread"`` (the batch writer
    thread writes through the store itself: the default with ``store=``, which may carry its own
    engine, and for in-memory SQLite, which another process cannot open).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        store: Store | None = None,
        sink: Callable[[Sequence[TelemetryRecord]], int] | None = None,
        queue_size: int | None = None,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        backoff_max: float = 30.0,
        exit_timeout: float = 10.0,
        clock: Clock | None = None,
        writer: str | None = None,
    ) -> None:
        super().__init__()
        if exit_timeout < 0:
            raise ValueError("exit_timeout must be at least 0")
        self.exit_timeout = exit_timeout
        # LiteLLM treats two loggers of one class with equal public str/int/bool attributes as the
        # same logger and keeps only the first; a per-instance name keeps each registration real.
        self.recsys_instance = f"recsys-telemetry-{uuid.uuid4().hex[:12]}"
        from ..config import Settings

        settings = Settings.load(database_url=database_url) if queue_size is None or sink is None else None
        if writer not in (None, "process", "thread"):
            raise ValueError(f"writer must be 'process' or 'thread', not {writer!r}")
        self._store: Store | None = None
        self._process: WriterProcess | None = None
        if sink is None:
            from ..store import Store

            default = "thread" if store is not None else "process"
            if store is None:
                assert settings is not None  # noqa: S101 - loaded above whenever sink is None
                store = Store.from_settings(settings)
            self._store = store
            if (writer or default) == "process" and store.sqlite_path is None and store.url.startswith("sqlite"):
                writer = "thread"  # an in-memory database lives in this process only
            if (writer or default) == "process":
                # One lane: two sessions side by side measured no faster here (docs/performance.md).
                self._process = WriterProcess(store.url, auto_migrate=store.auto_migrate)
                sink = self._process
            else:
                sink = functools.partial(write_records, store, durable=False)
        size = queue_size if queue_size is not None else settings.telemetry_queue_size  # type: ignore[union-attr]
        self._writer = BatchWriter(sink=sink, queue_size=size, batch_size=batch_size,
                                   flush_interval=flush_interval, backoff_max=backoff_max)
        self._clock = clock if clock is not None else (store.clock if store is not None else SYSTEM_CLOCK)
        self._rejected: Counter[str] = Counter()
        self._rejected_lock = threading.Lock()
        self._closed = False
        atexit.register(_close_at_exit, weakref.ref(self))

    # --- public controls ----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued so far; False when ``timeout`` seconds passed first."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Unregister from LiteLLM, flush, stop the writer and release the store; idempotent.

        Returns within ``timeout`` seconds (plus the store's own release), whether or not the store
        answers; False when events were left unwritten.
        """
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout
        _unregister(self)
        flushed = self._writer.close(timeout)
        if not flushed:
            stats = self._writer.stats()
            log.warning("telemetry: %d events could not be written before close (%s)",
                        stats.queued, stats.last_error)
        if self._process is not None:
            # The writer thread has stopped (or given up): the child gets what is left of the
            # deadline to finish the batch it may be writing, then is killed.
            self._process.close(timeout=max(deadline - time.monotonic(), 0.0))
        if self._store is not None:
            self._store.dispose()
        return flushed

    def stats(self) -> WriterStats:
        """Queued, written and dropped counts since start."""
        return self._writer.stats()

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id while it runs (None with ``writer="thread"`` or before the first batch)."""
        return self._process.pid if self._process is not None else None

    @property
    def dropped(self) -> int:
        """Events dropped because the queue was full."""
        return self._writer.dropped

    @property
    def rejected(self) -> dict[str, int]:
        """Events rejected by ``telemetry.validate``'s rules (never stored), per reason."""
        with self._rejected_lock:
            return dict(self._rejected)

    # --- the hooks (parameter names are LiteLLM's) ---------------------------------------------

    def _reject(self, reason: str) -> None:
        with self._rejected_lock:
            self._rejected[reason] += 1
        log.debug("telemetry: a call's event was rejected: %s", reason)

    def _record(self, kwargs: Mapping[str, Any]) -> None:
        try:
            payload = kwargs.get("standard_logging_object")
            if not isinstance(payload, Mapping):
                return
            params = kwargs.get("litellm_params")
            metadata = params.get("metadata") if isinstance(params, Mapping) else None
            call_id = kwargs.get("litellm_call_id")
            record = record_from_standard_logging(
                payload, metadata=metadata if isinstance(metadata, Mapping) else None,
                call_id=call_id if isinstance(call_id, str) else None, now=self._clock.now())
        except RejectedRow as exc:  # a value breaking telemetry.validate's rules: never stored
            self._reject(exc.reason)
            return
        except Exception:  # a telemetry bug must never break the caller's request
            log.debug("telemetry: could not record a call", exc_info=True)
            return
        self._writer.enqueue(record)  # never blocks, never raises

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._record(kwargs)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._record(kwargs)

    def record_many(self, records: Sequence[TelemetryRecord]) -> None:
        """Queue already-built records (benchmarks use the same path), each checked against
        ``telemetry.validate``'s rules first: one that breaks a rule is counted in ``rejected``."""
        now = self._clock.now()
        accepted = []
        for record in records:
            try:
                accepted.append(check_record(record, now=now))
            except RejectedRow as exc:
                self._reject(exc.reason)
        self._writer.enqueue_many(accepted)
