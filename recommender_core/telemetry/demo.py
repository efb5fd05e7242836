"""Demo telemetry: a few ``mock_response`` calls through ``TelemetryCallback`` into the configured store.

``python -m recommender_core.telemetry.demo`` (what ``make demo`` runs) makes no network call:
LiteLLM answers every request from ``mock_response``, and prices come from its packaged price
table, so the stored costs are real figures for the mocked token counts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["DEMO_TASKS", "run_demo"]

# (task, model group) pairs, using names of the default policy's candidates.
DEMO_TASKS = (("chat", "gpt-4o-mini"), ("coding", "claude-haiku-4-5"), ("math", "gemini/gemini-2.5-flash"))
CALLS_PER_TASK = 5


def _seen(callback: Any) -> int:
    stats = callback.stats()
    return int(stats.written + stats.queued + stats.dropped + sum(callback.rejected.values()))


def run_demo(*, database_url: str | None = None, calls_per_task: int = CALLS_PER_TASK) -> int:
    """Make the demo calls (one failing deployment falls back to another) and return the events written."""
    from ..litellm_import import local_cost_map

    with local_cost_map():
        import litellm
        from litellm.router import Router

    from .callback import TelemetryCallback

    callback = TelemetryCallback(database_url)
    previous = list(litellm.callbacks)
    litellm.callbacks = [*previous, callback]
    try:
        model_list: list[dict[str, Any]] = [
            {"model_name": group, "litellm_params": {"model": group, "mock_response": "A demo answer."}}
            for _, group in DEMO_TASKS
        ]
        # A deployment that always fails, with a fallback: the snapshot shows its errors.
        model_list.append({"model_name": "gpt-5-mini", "litellm_params": {
            # The Router deep-copies its parameters, so a plain exception (a mapped one is not copyable).
            "model": "gpt-5-mini", "mock_response": Exception("demo: deployment down")}})
        router = Router(model_list=model_list, fallbacks=[{"gpt-5-mini": ["gpt-4o-mini"]}], num_retries=0)
        messages = [{"role": "user", "content": "demo"}]
        for task, group in DEMO_TASKS:
            for _ in range(calls_per_task):
                router.completion(model=group, messages=messages, metadata={"tags": [f"task:{task}"]})
        router.completion(model="gpt-5-mini", messages=messages, metadata={"tags": ["task:chat"]})

        expected = len(DEMO_TASKS) * calls_per_task + 3

        async def _async_calls() -> None:
            await router.acompletion(model="gpt-4o-mini", messages=messages, metadata={"tags": ["task:chat"]})
            # LiteLLM runs async hooks from a background worker on this loop, and sync ones on a
            # thread pool: keep the loop alive until every attempt has reached the queue.
            deadline = time.monotonic() + 10.0
            while _seen(callback) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

        asyncio.run(_async_calls())
        callback.flush(timeout=10.0)
        return callback.stats().written
    finally:
        litellm.callbacks = previous
        callback.close()


if __name__ == "__main__":  # pragma: no cover - exercised by `make demo`
    written = run_demo()
    print(f"telemetry demo: {written} events recorded through TelemetryCallback")
