"""TelemetryCallback under real LiteLLM calls (``mock_response``): completion, acompletion and a
Router with a fallback fire the real hooks, with real costs from litellm's packaged price table.

Importing litellm is slow here, so every test that needs it lives in this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent
from recommender_core.telemetry.events import TelemetryRecord

# Before the import: otherwise litellm fetches its price table from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

pytestmark = [
    # litellm's own TypedDicts use typing.ReadOnly, which pydantic (building litellm's models)
    # warns about from its schema generator; it is no concern of ours.
    pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning:pydantic"),
    pytest.mark.usefixtures("litellm_event_loop"),
]

SECRET_PROMPT = "PROMPT-TEXT-THAT-MUST-NOT-BE-STORED"
SECRET_ANSWER = "ANSWER-TEXT-THAT-MUST-NOT-BE-STORED"
MESSAGES = [{"role": "user", "content": SECRET_PROMPT}]


@pytest.fixture
def callbacks() -> Iterator[list[Any]]:
    """litellm.callbacks for one test, restored afterwards."""
    saved = list(litellm.callbacks)
    registered: list[Any] = []
    try:
        yield registered
    finally:
        litellm.callbacks = saved
        for callback in registered:
            callback.close(timeout=5)


def _register(callbacks: list[Any], callback: Any) -> Any:
    callbacks.append(callback)
    litellm.callbacks = [callback]
    return callback


def _settle(callback: Any, expected: int, timeout: float = 10.0) -> None:
    """LiteLLM fires sync success hooks from a thread pool: wait for them, then flush."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = callback.stats()
        if stats.written + stats.queued + stats.dropped >= expected:
            break
        time.sleep(0.02)
    assert callback.flush(timeout=timeout)


def _events(store: Store) -> list[TelemetryEvent]:
    with store.session() as session:
        return list(session.execute(sa.select(TelemetryEvent).order_by(TelemetryEvent.id)).scalars())


def test_public_name_resolves_lazily() -> None:
    import recommender_core
    from recommender_core.telemetry.callback import TelemetryCallback

    assert recommender_core.TelemetryCallback is TelemetryCallback
    assert issubclass(TelemetryCallback, litellm.integrations.custom_logger.CustomLogger)


def test_design_names_and_the_configured_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/api.md: TelemetryCallback(database_url=None) writes to the configured store; flush(timeout=10.0)."""
    import inspect
    from datetime import UTC, datetime

    from recommender_core import TelemetryCallback

    assert inspect.signature(TelemetryCallback).parameters["database_url"].default is None
    assert inspect.signature(TelemetryCallback.flush).parameters["timeout"].default == 10.0
    url = f"sqlite:///{tmp_path / 'configured.db'}"
    migrated = Store(url)
    migrated.upgrade()
    migrated.dispose()
    monkeypatch.setenv("RECSYS_DATABASE_URL", url)
    callback = TelemetryCallback()
    try:
        callback.record_many([TelemetryRecord(event_id="cfg-1", model="gpt-4o-mini", status="success",
                                              started_at=datetime.now(UTC))])
        assert callback.flush()
    finally:
        assert callback.close()
    store = Store(url)
    try:
        assert [e.event_id for e in _events(store)] == ["cfg-1"]
    finally:
        store.dispose()


def test_completion_success_and_failure(store: Store, callbacks: list[Any]) -> None:
    from recommender_core import TelemetryCallback

    callback = _register(callbacks, TelemetryCallback(store=store, flush_interval=0.05))
    response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=SECRET_ANSWER,
                                  metadata={"tags": ["task:coding"]})
    assert response.choices[0].message.content == SECRET_ANSWER
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(model="gpt-4o-mini", messages=MESSAGES, metadata={"tags": ["task:coding"]},
                           mock_response=litellm.RateLimitError("slow down", llm_provider="openai",
                                                                model="gpt-4o-mini"))
    with pytest.raises(litellm.InternalServerError):
        litellm.completion(model="claude-haiku-4-5", messages=MESSAGES, mock_response=Exception("boom"))
    _settle(callback, 3)
    events = _events(store)
    assert len(events) == 3
    ok = next(e for e in events if e.status == "success")
    assert (ok.model, ok.provider, ok.task, ok.origin) == ("gpt-4o-mini", "openai", "coding", "callback")
    assert ok.cost is not None and ok.cost > 0
    assert ok.prompt_tokens and ok.prompt_tokens > 0 and ok.completion_tokens and ok.completion_tokens > 0
    assert ok.latency_ms is not None and ok.latency_ms >= 0 and ok.cache_hit is False
    failures = {e.model: e for e in events if e.status == "failure"}
    assert failures["gpt-4o-mini"].error_class == "RateLimitError"
    assert failures["gpt-4o-mini"].task == "coding"
    assert failures["claude-haiku-4-5"].error_class == "InternalServerError"
    assert failures["claude-haiku-4-5"].task is None  # untagged: counted under the model only
    _assert_no_text(store)


def test_streamed_call_records_time_to_first_token(store: Store, callbacks: list[Any]) -> None:
    from recommender_core import TelemetryCallback

    callback = _register(callbacks, TelemetryCallback(store=store, flush_interval=0.05))
    stream = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="several words of answer",
                                stream=True, mock_delay=0.01, metadata={"tags": ["task:chat"]})
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "several words of answer"
    _settle(callback, 1)
    (event,) = _events(store)
    assert event.status == "success" and event.task == "chat"
    assert event.ttft_ms is not None and event.latency_ms is not None
    assert 0 <= event.ttft_ms < event.latency_ms


def test_acompletion_success_and_failure(store: Store, callbacks: list[Any]) -> None:
    from recommender_core import TelemetryCallback

    callback = _register(callbacks, TelemetryCallback(store=store, flush_interval=0.05))

    async def calls() -> None:
        await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=SECRET_ANSWER,
                                  metadata={"tags": ["task:math"]})
        with pytest.raises(litellm.InternalServerError):
            await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=Exception("down"),
                                      metadata={"tags": ["task:math"]})
        deadline = time.monotonic() + 10
        while callback.stats().written + callback.stats().queued < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # async hooks run on this loop's logging worker

    asyncio.run(calls())
    _settle(callback, 2)
    events = _events(store)
    assert sorted(e.status for e in events) == ["failure", "success"]
    assert all(e.task == "math" and e.model == "gpt-4o" for e in events)
    ok = next(e for e in events if e.status == "success")
    assert ok.cost is not None and ok.cost > 0
    assert next(e for e in events if e.status == "failure").error_class == "InternalServerError"
    _assert_no_text(store)


def test_router_fallback_shares_the_trace_id(store: Store, callbacks: list[Any]) -> None:
    from recommender_core import TelemetryCallback

    callback = _register(callbacks, TelemetryCallback(store=store, flush_interval=0.05))
    router = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {"model": "gpt-4o-mini", "mock_response": Exception("x")}},
            {"model_name": "backup", "litellm_params": {"model": "gpt-4o", "mock_response": SECRET_ANSWER}},
        ],
        fallbacks=[{"primary": ["backup"]}], num_retries=0)
    response = router.completion(model="primary", messages=MESSAGES, metadata={"tags": ["task:chat"]})
    assert response.choices[0].message.content == SECRET_ANSWER
    _settle(callback, 2)
    events = _events(store)
    by_group = {e.model_group: e for e in events}
    assert set(by_group) == {"primary", "backup"}
    assert by_group["primary"].status == "failure" and by_group["primary"].model == "gpt-4o-mini"
    assert by_group["backup"].status == "success" and by_group["backup"].model == "gpt-4o"
    assert by_group["backup"].cost is not None and by_group["backup"].cost > 0
    assert by_group["primary"].trace_id is not None
    assert by_group["primary"].trace_id == by_group["backup"].trace_id
    assert {e.task for e in events} == {"chat"}
    _assert_no_text(store)


def _assert_no_text(store: Store) -> None:
    with store.session() as session:
        dump = json.dumps([e.model_dump(mode="json") for e in session.execute(sa.select(TelemetryEvent)).scalars()])
    assert SECRET_PROMPT not in dump and SECRET_ANSWER not in dump


def test_a_broken_store_or_full_queue_never_breaks_the_caller(callbacks: list[Any]) -> None:
    from recommender_core import TelemetryCallback

    def broken(batch: Sequence[TelemetryRecord]) -> int:
        raise RuntimeError("store exploded")

    callback = _register(callbacks, TelemetryCallback(sink=broken, queue_size=3, batch_size=100,
                                                      flush_interval=0.01, backoff_max=0.05))
    for _ in range(6):
        response = litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="fine")
        assert response.choices[0].message.content == "fine"
    deadline = time.monotonic() + 10
    while callback.stats().queued + callback.dropped < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = callback.stats()
    assert stats.queued == 3 and stats.dropped == 3 and stats.written == 0
    assert not callback.flush(timeout=0.2)
    assert not callback.close(timeout=0.2)  # it reports the events it could not write, within its deadline


@pytest.mark.parametrize("call", ["sync", "async"])
def test_pending_events_are_flushed_at_interpreter_exit(tmp_path: Path, call: str) -> None:
    """Async: the hook is still in LiteLLM's logging queue at exit, and LiteLLM runs that queue from
    an exit handler that would run after the callback's (so it ran into a closed writer)."""
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    code = (
        "import asyncio, litellm, time\n"
        "from recommender_core import TelemetryCallback\n"
        f"cb = TelemetryCallback({url!r}, flush_interval=3600)\n"
        "litellm.callbacks = [cb]\n"
        "kwargs = dict(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'x'}], mock_response='y')\n"
    )
    if call == "sync":
        code += (
            "litellm.completion(**kwargs)\n"
            "deadline = time.monotonic() + 10\n"
            "while cb.stats().queued < 1 and time.monotonic() < deadline:\n"
            "    time.sleep(0.02)\n"
        )
    else:
        code += (
            "asyncio.run(litellm.acompletion(**kwargs))\n"
            "from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER\n"
            "assert GLOBAL_LOGGING_WORKER.pending_count == 1 and cb.stats().queued == 0\n"
        )
    code += "assert cb.stats().written == 0\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
    store = Store(url, auto_migrate=True)
    try:
        events = _events(store)
    finally:
        store.dispose()
    assert len(events) == 1 and events[0].model == "gpt-4o-mini" and events[0].status == "success"


# --- one call, one event: the callback and the SpendLogs importer share the attempt key ----------

def test_the_keys_read_exist_in_the_installed_litellm_types() -> None:
    """The fields of LiteLLM's logging payloads that recsys reads; a litellm upgrade that drops one fails here."""
    from litellm.proxy._types import SpendLogsMetadata, SpendLogsPayload
    from litellm.types.utils import (
        StandardLoggingMetadata,
        StandardLoggingPayload,
        StandardLoggingPayloadErrorInformation,
    )

    from recommender_core.telemetry.events import STANDARD_LOGGING_FIELDS_READ, STANDARD_LOGGING_METADATA_READ
    from recommender_core.telemetry.spend_logs import COLUMNS_READ, METADATA_READ

    def keys(typed_dict: Any) -> set[str]:
        return {k for cls in typed_dict.__mro__ for k in getattr(cls, "__annotations__", {})}

    assert set(STANDARD_LOGGING_FIELDS_READ) <= keys(StandardLoggingPayload), (
        set(STANDARD_LOGGING_FIELDS_READ) - keys(StandardLoggingPayload))
    assert set(STANDARD_LOGGING_METADATA_READ) <= keys(StandardLoggingMetadata)
    # The importer: every column is in the payload the proxy writes, every metadata path starts
    # with a key the proxy keeps (SpendLogsMetadata; `requester_metadata` is not one of them).
    assert set(COLUMNS_READ) <= keys(SpendLogsPayload)
    metadata_keys = keys(SpendLogsMetadata)
    assert "requester_metadata" not in metadata_keys
    for alias, path in METADATA_READ.items():
        assert path[0] in metadata_keys, f"{alias}: SpendLogsMetadata has no {path[0]!r}"
    assert METADATA_READ["error_class"][1] in keys(StandardLoggingPayloadErrorInformation)
    assert "dict" in str(SpendLogsMetadata.__annotations__["spend_logs_metadata"])  # {"task": ...} fits


# The proxy's own modules (get_logging_payload's imports) declare pydantic fields the deprecated way.
PROXY_MODULE_WARNINGS = "ignore:Using extra keyword arguments on `Field`:DeprecationWarning"


@pytest.mark.postgres
@pytest.mark.filterwarnings(PROXY_MODULE_WARNINGS)
def test_a_proxy_that_calls_back_and_is_imported_stores_each_attempt_once(
        store: Store, spend_logs_dsn: str, callbacks: list[Any], tmp_path: Path) -> None:
    """A Router run logs every attempt through TelemetryCallback and writes a SpendLogs row for each
    (tests/_spend_logs_writer.py, built by the proxy's own get_logging_payload). Importing those rows
    adds nothing, and an import alone gives each attempt the same id, task and rule.

    The run has what makes ids diverge in a proxy: attempts that share one litellm_call_id (the
    proxy gives one to each request), retries and a fallback, a request that fails outright, and a
    cache hit (whose id each writer stamps with its own time). The primary's two deployments
    really fail: they point at a closed loopback port.
    """
    import socket

    from litellm.caching.caching import Cache

    from recommender_core import TelemetryCallback
    from recommender_core.telemetry.spend_logs import ingest_spend_logs

    from ._spend_logs_writer import SpendLogsWriter

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    down = {"api_key": "sk-test", "api_base": closed}
    router = litellm.Router(
        model_list=[
            {"model_name": "primary", "litellm_params": {"model": "openai/primary-a", **down}},
            {"model_name": "primary", "litellm_params": {"model": "openai/primary-b", **down}},
            {"model_name": "backup", "litellm_params": {"model": "gpt-4o-mini", "mock_response": SECRET_ANSWER}},
            {"model_name": "lonely", "litellm_params": {"model": "openai/lonely", **down}},
        ],
        model_group_alias={"task/chat": "primary", "task/math": "lonely"},
        fallbacks=[{"task/chat": ["backup"]}], num_retries=1, retry_after=0)
    callback = TelemetryCallback(store=store, flush_interval=0.05)
    writer = SpendLogsWriter(spend_logs_dsn)
    callbacks.append(callback)
    litellm.callbacks = [callback, writer]
    saved_cache = litellm.cache
    litellm.cache = Cache(type="local")
    try:
        shared = router.completion(model="task/chat", messages=MESSAGES, litellm_call_id="proxy-request-1",
                                   metadata={"spend_logs_metadata": {"task": "chat"}})
        assert shared.choices[0].message.content == SECRET_ANSWER

        async def more() -> None:
            await router.acompletion(model="task/chat", messages=MESSAGES, metadata={"tags": ["task:chat"]})
            with pytest.raises(litellm.InternalServerError):
                await router.acompletion(model="task/math", messages=MESSAGES, litellm_call_id="proxy-request-2")
            await asyncio.sleep(0.5)

        asyncio.run(more())
        for call_id in ("cached-1", "cached-2"):  # the second is served from LiteLLM's cache
            router.completion(model="backup", messages=[{"role": "user", "content": "same"}], caching=True,
                              litellm_call_id=call_id, metadata={"tags": ["task:coding"]})
        _settle_pair(callback, writer)
    finally:
        litellm.cache = saved_cache
    events = {e.event_id: e for e in _events(store)}
    assert len(events) == len(writer.rows), "one event per attempt from the callback"
    assert sum(1 for row in writer.rows if row["cache_hit"] == "True") == 1
    shared_failures = [e for e in events.values() if e.status == "failure" and e.event_id.startswith("proxy-request-1")]
    assert len(shared_failures) >= 2, "attempts sharing a call id stay apart"
    assert {e.task_source for e in events.values()} >= {"spend_logs_metadata", "request_tag", "model_group_alias"}

    result = ingest_spend_logs(store, dsn=spend_logs_dsn)
    assert result.read >= 1 and result.inserted == 0, "every row the proxy wrote is an attempt already called back"
    assert len(_events(store)) == len(events)

    alone = Store(f"sqlite:///{tmp_path / 'import-only.db'}")
    alone.upgrade()
    try:
        ingest_spend_logs(alone, dsn=spend_logs_dsn)
        imported = {e.event_id: e for e in _events(alone)}
    finally:
        alone.dispose()
    assert imported and set(imported) <= set(events)
    for event_id, event in imported.items():
        called_back = events[event_id]
        assert (event.model_group, event.task, event.task_source, event.status, event.cache_hit) == (
            called_back.model_group, called_back.task, called_back.task_source, called_back.status,
            called_back.cache_hit), event_id
    _assert_no_text(store)


def _settle_pair(callback: Any, writer: Any, timeout: float = 15.0) -> None:
    """Wait until both loggers saw the same attempts and nothing new came for half a second."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        stats = callback.stats()
        seen = (len(writer.rows), stats.written + stats.queued)
        if seen[0] != last:
            last, stable_since = seen[0], time.monotonic()
        elif seen[0] == seen[1] and time.monotonic() - stable_since > 0.5:
            break
        time.sleep(0.02)
    assert callback.flush(timeout=10)
    stats = callback.stats()
    assert len(writer.rows) == stats.written and stats.dropped == 0


def test_the_callback_rejects_and_counts_hostile_values_from_real_calls(store: Store, callbacks: list[Any]) -> None:
    """Real litellm calls whose logged figures break telemetry.validate's rules: a negative cost (a
    custom price of -1000 USD per token), prompt_tokens = -2^31 (a response whose usage says so), and
    a call that starts an hour after the store's clock. Each is counted per reason and never stored;
    the good call and the telemetry already stored are untouched."""
    from datetime import UTC, datetime, timedelta

    from recommender_core import TelemetryCallback
    from recommender_core.clock import FixedClock
    from recommender_core.telemetry.writer import write_records

    now = datetime.now(UTC)
    earlier = TelemetryRecord(event_id="before", model="gpt-4o-mini", status="success",
                              started_at=now - timedelta(hours=1), cost=0.001, prompt_tokens=10)
    assert write_records(store, [earlier]) == 1
    before = {e.event_id: e.model_dump() for e in _events(store)}
    clock = FixedClock(now + timedelta(minutes=1))
    callback = _register(callbacks, TelemetryCallback(store=store, flush_interval=0.05, clock=clock))
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=SECRET_ANSWER)
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=SECRET_ANSWER,
                       input_cost_per_token=-1000.0, output_cost_per_token=0.0)
    usage = {"prompt_tokens": -2**31, "completion_tokens": 5, "total_tokens": 5 - 2**31}
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=litellm.ModelResponse(
        choices=[{"message": {"role": "assistant", "content": SECRET_ANSWER}}], usage=usage))
    _settle_with_rejects(callback, 3)
    clock.set(datetime.now(UTC) - timedelta(hours=1))  # the store's clock is an hour behind the calls
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=SECRET_ANSWER)
    _settle_with_rejects(callback, 4)
    assert callback.rejected == {"cost is negative": 1, "prompt_tokens is negative": 1,
                                 "started_at is in the future": 1}
    events = {e.event_id: e for e in _events(store)}
    assert len(events) == 2 and {k: events[k].model_dump() for k in before} == before
    (good,) = (e for k, e in events.items() if k != "before")
    assert good.cost is not None and good.cost > 0 and good.prompt_tokens is not None and good.prompt_tokens > 0
    _assert_no_text(store)


def _settle_with_rejects(callback: Any, expected: int, timeout: float = 10.0) -> None:
    """Wait until ``expected`` calls were written, queued or rejected, then flush."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = callback.stats()
        if stats.written + stats.queued + sum(callback.rejected.values()) >= expected:
            break
        time.sleep(0.02)
    assert callback.flush(timeout=timeout)
