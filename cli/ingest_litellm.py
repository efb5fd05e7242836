"""``recsys ingest litellm``: a LiteLLM proxy's SpendLogs into telemetry."""

from __future__ import annotations

from typing import Annotated

import typer

from ._base import JsonOption, cronjob, not_available, state
from .ingest import app


@app.command("litellm")
@cronjob("ingest-litellm")
def ingest_litellm(
    ctx: typer.Context,
    spend_logs_url: Annotated[str, typer.Option(
        "--spend-logs-url", help="DSN of the LiteLLM proxy database holding LiteLLM_SpendLogs."
    )],
    since: Annotated[str | None, typer.Option(
        "--since", help="Import requests that started at or after this ISO 8601 time."
    )] = None,
    json_output: JsonOption = False,
) -> None:
    """Import a LiteLLM proxy's spend logs as telemetry, incrementally."""
    state(ctx, json_output=json_output)
    not_available("ingest litellm")
