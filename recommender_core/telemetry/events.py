"""One telemetry event in memory, and how LiteLLM's records map onto it.

Both the in-process callback (``standard_logging_object``) and the proxy importer
(``LiteLLM_SpendLogs`` rows) produce ``TelemetryRecord`` values, so the two paths store the same
fields the same way. Only these fields are ever copied: no prompt, response or error message text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "TASK_TAG_PREFIX",
    "TelemetryRecord",
    "clean_tags",
    "record_from_standard_logging",
    "task_from",
]

TASK_TAG_PREFIX = "task:"
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


def _text(value: object, limit: int = _MAX_NAME) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no figure


def _count(value: object) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _epoch(value: object) -> datetime | None:
    number = _number(value)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(number, UTC)


def task_from(tags: Iterable[object], metadata: Mapping[str, Any] | None = None) -> str | None:
    """The task of a call: a ``task:<name>`` request tag, else a ``task`` metadata key, else the
    ``recsys_task`` key that ``RecommenderRouter`` sets on the calls it routes, else None.

    >>> task_from(["team:a", "task:coding"])
    'coding'
    >>> task_from([], {"task": "math"})
    'math'
    >>> task_from([], {"recsys_task": "chat"})
    'chat'
    """
    for tag in tags:
        if isinstance(tag, str) and tag.startswith(TASK_TAG_PREFIX):
            name = tag[len(TASK_TAG_PREFIX):].strip()
            if name:
                return name[:_MAX_ID]
    if metadata:
        for key in ("task", "recsys_task"):
            task = metadata.get(key)
            if isinstance(task, str) and task.strip():
                return task.strip()[:_MAX_ID]
    return None


def clean_tags(raw: object) -> tuple[str, ...]:
    """Request tags as a bounded tuple of short strings (anything else is ignored)."""
    if not isinstance(raw, list | tuple):
        return ()
    return tuple(str(t)[:_MAX_NAME] for t in raw[:_MAX_TAGS] if isinstance(t, str | int | float))


def record_from_standard_logging(
    payload: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None
) -> TelemetryRecord | None:
    """Map LiteLLM's ``standard_logging_object`` to a record; None when it has no id or model.

    ``metadata`` is the caller's request metadata (``litellm_params["metadata"]``), read only for
    a ``task`` key. Latency is ``endTime - startTime``; time to first token is
    ``completionStartTime - startTime`` and is kept only for streamed calls, where it differs from
    the end of the call.
    """
    event_id = _text(payload.get("id"), _MAX_ID)
    model = _text(payload.get("model"))
    if event_id is None or model is None:
        return None
    started = _epoch(payload.get("startTime"))
    ended = _epoch(payload.get("endTime"))
    first = _epoch(payload.get("completionStartTime"))
    if started is None:
        return None
    status = "failure" if payload.get("status") == "failure" else "success"
    error_class = None
    if status == "failure":
        info = payload.get("error_information") or {}
        error_class = _text(info.get("error_class") if isinstance(info, Mapping) else None, _MAX_ID)
        error_class = error_class or "UnknownError"
    tags = clean_tags(payload.get("request_tags"))
    requester = None
    logged_meta = payload.get("metadata")
    if isinstance(logged_meta, Mapping):
        requester = logged_meta.get("requester_metadata")
    task = task_from(tags, metadata) or task_from((), requester if isinstance(requester, Mapping) else None)
    latency = (ended - started).total_seconds() * 1000 if ended is not None else None
    ttft = None
    if payload.get("stream") and first is not None and (ended is None or first < ended):
        ttft = max((first - started).total_seconds() * 1000, 0.0)
    prompt_tokens = _count(payload.get("prompt_tokens"))
    completion_tokens = _count(payload.get("completion_tokens"))
    return TelemetryRecord(
        event_id=event_id,
        trace_id=_text(payload.get("trace_id"), _MAX_ID),
        origin="callback",
        model_group=_text(payload.get("model_group")),
        model=model,
        provider=_text(payload.get("custom_llm_provider"), 64),
        task=task,
        status=status,
        error_class=error_class,
        started_at=started,
        ended_at=ended,
        latency_ms=max(latency, 0.0) if latency is not None else None,
        ttft_ms=ttft,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=_number(payload.get("response_cost")),
        cache_hit=payload.get("cache_hit") is True,
        tags=tags,
    )
