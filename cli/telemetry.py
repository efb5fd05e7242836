"""``recsys telemetry``: maintenance of raw telemetry."""

from __future__ import annotations

from typing import Annotated

import typer

from ._base import JsonOption, RecsysTyper, cronjob, not_available, state

app = RecsysTyper()


@app.command("prune")
@cronjob("telemetry-prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[int | None, typer.Option(
        "--older-than", min=1, help="Days of raw events to keep (default RECSYS_TELEMETRY_RETENTION_DAYS)."
    )] = None,
    json_output: JsonOption = False,
) -> None:
    """Delete raw telemetry events older than the retention, in bounded batches."""
    state(ctx, json_output=json_output)
    not_available("telemetry prune")
