"""One telemetry event in memory, and how LiteLLM's records map onto it.

Both the in-process callback (``standard_logging_object``) and the proxy importer
(``LiteLLM_SpendLogs`` rows) produce ``TelemetryRecord`` values, so the two paths store the same
fields the same way. Only these fields are ever copied: no prompt, response or error message text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..clock import SYSTEM_CLOCK
from ..errors import RejectedRow
from .validate import check_record, epoch_time, figure, token_count

__all__ = [
    "STANDARD_LOGGING_FIELDS_READ",
    "STANDARD_LOGGING_METADATA_READ",
    "TASK_ALIAS_PREFIX",
    "TASK_TAG_PREFIX",
    "TaskSource",
    "TelemetryRecord",
    "attempt_event_id",
    "attempt_position",
    "attribute_task",
    "clean_tags",
    "clean_text",
    "record_from_standard_logging",
    "task_from",
]

TASK_TAG_PREFIX = "task:"
# The model group alias `recsys export litellm-router` writes for each task, and clients call.
TASK_ALIAS_PREFIX = "task/"
# Keys of LiteLLM's StandardLoggingPayload and of its `metadata` (StandardLoggingMetadata) that the
# callback reads; a test checks them against the installed litellm's TypedDicts.
STANDARD_LOGGING_FIELDS_READ: tuple[str, ...] = (
    "id", "litellm_call_id", "trace_id", "model", "model_group", "custom_llm_provider", "status",
    "error_information", "request_tags", "startTime", "endTime", "completionStartTime", "stream",
    "prompt_tokens", "completion_tokens", "response_cost", "cache_hit", "metadata",
)
STANDARD_LOGGING_METADATA_READ: tuple[str, ...] = ("spend_logs_metadata", "requester_metadata")
# Column widths of TelemetryEvent: values are cut to fit rather than failing a whole batch.
_MAX_NAME = 256
_MAX_ID = 128
_MAX_TAGS = 32


@dataclass(frozen=True, slots=True)
class TelemetryRecord:
    """One LiteLLM call attempt, as stored in ``telemetry_event`` (no message text)."""

    event_id: str
    model: str
    status: str  # success | failure
    started_at: datetime
    origin: str = "callback"  # callback | spend_logs
    trace_id: str | None = None
    model_group: str | None = None
    provider: str | None = None
    task: str | None = None
    task_source: str | None = None  # which TaskSource rule gave the task
    error_class: str | None = None
    ended_at: datetime | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    cache_hit: bool = False
    tags: tuple[str, ...] = ()

    def as_row(self) -> dict[str, Any]:
        """The column values of a ``TelemetryEvent`` row."""
        row = asdict(self)
        row["tags"] = list(self.tags)
        return row


def clean_text(value: object, limit: int = _MAX_NAME) -> str | None:
    """A text field stripped and cut to its column's width; None when absent, empty or not text."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:limit] if text else None


class TaskSource:
    """Which rule gave an event its task (stored in ``telemetry_event.task_source``), in order of precedence."""

    SPEND_LOGS_METADATA = "spend_logs_metadata"  # metadata {"spend_logs_metadata": {"task": ...}}: documented
    REQUEST_TAG = "request_tag"  # a "task:<name>" request tag
    METADATA = "metadata"  # the request metadata's "task" key (SDK callers)
    ROUTER = "router"  # "recsys_task", set by RecommenderRouter on the calls it routes
    REQUESTER_METADATA = "requester_metadata"  # the proxy client's metadata, seen by callbacks only
    MODEL_GROUP_ALIAS = "model_group_alias"  # the "task/<name>" alias the client called (or fell back from)


def _task_name(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:_MAX_ID]
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _after_prefix(values: Iterable[object], prefix: str) -> Iterator[str]:
    """What follows ``prefix`` in each string of ``values`` that starts with it."""
    return (v[len(prefix):] for v in values if isinstance(v, str) and v.startswith(prefix))


def attribute_task(
    *,
    spend_logs_metadata: object = None,
    tags: Iterable[object] = (),
    metadata: object = None,
    requester_metadata: object = None,
    model_groups: Iterable[object] = (),
) -> tuple[str | None, str | None]:
    """``(task, rule)`` of one call, by the first rule that names a task (``TaskSource`` order); (None, None).

    The callback and the SpendLogs importer both call this, so a call gets the same task either way.
    ``model_groups`` are the group the call was made to and the one the client asked for before any
    fallback; a ``task/<name>`` alias among them names the task.

    >>> attribute_task(spend_logs_metadata={"task": "math"}, tags=["task:coding"])
    ('math', 'spend_logs_metadata')
    >>> attribute_task(tags=["team:a", "task:coding"])
    ('coding', 'request_tag')
    >>> attribute_task(metadata={"recsys_task": "chat"})
    ('chat', 'router')
    >>> attribute_task(model_groups=["gpt-4o", "task/long_context"])
    ('long_context', 'model_group_alias')
    """
    rules: tuple[tuple[str, Iterable[object]], ...] = (
        (TaskSource.SPEND_LOGS_METADATA, (_mapping(spend_logs_metadata).get("task"),)),
        (TaskSource.REQUEST_TAG, _after_prefix(tags, TASK_TAG_PREFIX)),
        (TaskSource.METADATA, (_mapping(metadata).get("task"),)),
        (TaskSource.ROUTER, (_mapping(metadata).get("recsys_task"),)),
        (TaskSource.REQUESTER_METADATA, (_mapping(requester_metadata).get("task"),)),
        (TaskSource.MODEL_GROUP_ALIAS, _after_prefix(model_groups, TASK_ALIAS_PREFIX)),
    )
    for source, names in rules:
        for name in names:
            task = _task_name(name)
            if task:
                return task, source
    return None, None


def task_from(tags: Iterable[object], metadata: Mapping[str, Any] | None = None) -> str | None:
    """The task of a call from its tags and request metadata alone (see ``attribute_task``).

    >>> task_from(["team:a", "task:coding"])
    'coding'
    >>> task_from([], {"task": "math"})
    'math'
    """
    return attribute_task(tags=tags, metadata=metadata)[0]


# A cache hit's id is the cached response's id plus "_cache_hit<time>", and the callback and the
# proxy's SpendLogs writer each stamp their own time on it.
_CACHE_HIT_SUFFIX = re.compile(r"_cache_hit\d+(?:\.\d+)?$")


def attempt_event_id(logged_id: str, *, call_id: str | None, fallback_depth: int = 0, retry: int = 0) -> str:
    """The event id of one call attempt: the same from ``TelemetryCallback`` and from SpendLogs.

    ``logged_id`` is what LiteLLM logs as the attempt's id: ``standard_logging_object["id"]`` for a
    callback, ``request_id`` for a SpendLogs row. Both are the response's id, else the
    ``litellm_call_id`` (a failure has no response). Two cases need more than that id:

    - a LiteLLM proxy gives every attempt of one request (retries, fallbacks) the same call id, so
      attempts without a response id are told apart by ``fallback_depth`` and ``retry``
      (``attempted_fallbacks`` / ``attempted_retries`` in the request metadata);
    - a cache hit's id carries a time stamped separately by each writer: the time is replaced by
      the call id.

    >>> attempt_event_id("chatcmpl-1", call_id="c-1", fallback_depth=1)
    'chatcmpl-1'
    >>> attempt_event_id("c-1", call_id="c-1", fallback_depth=1, retry=0)
    'c-1#1.0'
    >>> attempt_event_id("chatcmpl-1_cache_hit1795855623.87", call_id="c-2")
    'chatcmpl-1#cache:c-2'
    """
    base, hits = _CACHE_HIT_SUFFIX.subn("", logged_id)
    suffix = ""
    if hits:
        if not call_id:
            return logged_id[:_MAX_ID]  # nothing to tell two cache hits apart by but their own ids
        suffix = f"#cache:{call_id}"
    if call_id and (hits or base == call_id) and (fallback_depth or retry):
        suffix += f"#{fallback_depth}.{retry}"
    # Cut to the column's width (a hostile call id could make the suffix alone too long); both
    # writers cut the same way, so they still agree.
    return (base[: max(_MAX_ID - len(suffix), 0)] + suffix)[:_MAX_ID]


# More attempts than this is no real request: the position is treated as malformed.
_MAX_ATTEMPT = 10_000


def attempt_position(value: object) -> int:
    """``attempted_fallbacks`` / ``attempted_retries`` as a count (absent or malformed: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return 0
    return int(number) if 1 <= number <= _MAX_ATTEMPT and number.is_integer() else 0


def clean_tags(raw: object) -> tuple[str, ...]:
    """Request tags as a bounded tuple of short strings (anything else is ignored)."""
    if not isinstance(raw, list | tuple):
        return ()
    tags = []
    for tag in raw[:_MAX_TAGS]:
        if isinstance(tag, bool) or not isinstance(tag, str | int | float):
            continue
        if isinstance(tag, int) and abs(tag) >= 10**18:
            continue  # no tag, and too long to spell out cheaply
        tags.append(str(tag)[:_MAX_NAME])
    return tuple(tags)


def record_from_standard_logging(
    payload: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None, call_id: str | None = None,
    now: datetime | None = None,
) -> TelemetryRecord:
    """Map LiteLLM's ``standard_logging_object`` to a record checked by ``validate.check_record``
    against ``now`` (default: the system clock); ``RejectedRow`` names the rule it breaks.

    ``metadata`` is the caller's request metadata (``litellm_params["metadata"]``): its task keys,
    the model group asked for before any fallback and the attempt's position (retries, fallbacks).
    ``call_id`` is the ``litellm_call_id`` of the attempt. The event id is ``attempt_event_id``, the
    key the SpendLogs importer computes for the same attempt. Latency is ``endTime - startTime``;
    time to first token is ``completionStartTime - startTime`` and is kept only for streamed calls,
    where it differs from the end of the call.
    """
    logged_id = clean_text(payload.get("id"), _MAX_ID)
    if logged_id is None:
        raise RejectedRow("no event id", field="event_id", source="telemetry")
    started = epoch_time(payload.get("startTime"), "started_at")
    ended = epoch_time(payload.get("endTime"), "ended_at")
    first = epoch_time(payload.get("completionStartTime"), "ttft_ms")
    if started is None:
        raise RejectedRow("no started_at", field="started_at", source="telemetry")
    request = metadata or {}
    event_id = attempt_event_id(
        logged_id, call_id=clean_text(call_id or payload.get("litellm_call_id"), _MAX_ID),
        fallback_depth=attempt_position(request.get("attempted_fallbacks")),
        retry=attempt_position(request.get("attempted_retries")))
    status = "failure" if payload.get("status") == "failure" else "success"
    error_class = None
    if status == "failure":
        info = payload.get("error_information") or {}
        error_class = clean_text(info.get("error_class") if isinstance(info, Mapping) else None, _MAX_ID)
        error_class = error_class or "UnknownError"
    tags = clean_tags(payload.get("request_tags"))
    logged_meta = _mapping(payload.get("metadata"))
    model_group = clean_text(payload.get("model_group"))
    task, task_source = attribute_task(
        spend_logs_metadata=logged_meta.get("spend_logs_metadata") or request.get("spend_logs_metadata"),
        tags=tags, metadata=request, requester_metadata=logged_meta.get("requester_metadata"),
        model_groups=(model_group, request.get("original_model_group")))
    latency = (ended - started).total_seconds() * 1000 if ended is not None else None
    ttft = None
    if payload.get("stream") and first is not None and (ended is None or first < ended):
        ttft = max((first - started).total_seconds() * 1000, 0.0)
    record = TelemetryRecord(
        event_id=event_id,
        trace_id=clean_text(payload.get("trace_id"), _MAX_ID),
        origin="callback",
        model_group=model_group,
        model=clean_text(payload.get("model")) or "",
        provider=clean_text(payload.get("custom_llm_provider"), 64),
        task=task,
        task_source=task_source,
        status=status,
        error_class=error_class,
        started_at=started,
        ended_at=ended,
        latency_ms=latency,
        ttft_ms=ttft,
        prompt_tokens=token_count(payload.get("prompt_tokens"), "prompt_tokens"),
        completion_tokens=token_count(payload.get("completion_tokens"), "completion_tokens"),
        cost=figure(payload.get("response_cost"), "cost"),
        cache_hit=payload.get("cache_hit") is True,
        tags=tags,
    )
    return check_record(record, now=now if now is not None else SYSTEM_CLOCK.now())
