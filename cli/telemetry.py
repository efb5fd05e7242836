"""``recsys telemetry``: maintenance of raw telemetry."""

from typing import Annotated

import typer

from ._base import JsonOption, RecsysTyper, cronjob, print_json, state

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
    """Delete raw telemetry events older than the retention (Postgres: whole days by dropping their
    partitions), the rest in bounded batches."""
    from recommender_core.clock import iso_utc
    from recommender_core.config import MAX_RETENTION_DAYS
    from recommender_core.errors import UsageError
    from recommender_core.telemetry.retention import prune_events

    app_state = state(ctx, json_output=json_output)
    if older_than is not None and older_than > MAX_RETENTION_DAYS:
        raise UsageError(f"--older-than {older_than if older_than < 10**30 else 'of over 30 digits'} is more "
                         f"than {MAX_RETENTION_DAYS} days (100 years); give a number of days from 1 to "
                         f"{MAX_RETENTION_DAYS}.")
    days = older_than if older_than is not None else app_state.settings().telemetry_retention_days
    result = prune_events(app_state.store(), older_than_days=days)
    if app_state.report is not None:
        app_state.report.set_gauge("recsys_telemetry_pruned_events", result.deleted)
    if app_state.json_output:
        print_json({"cutoff": iso_utc(result.cutoff), "deleted": result.deleted, "batches": result.batches,
                    "partitions_dropped": result.partitions_dropped})
    else:
        dropped = f", {result.partitions_dropped} day partitions dropped" if result.partitions_dropped else ""
        typer.echo(f"Deleted {result.deleted} telemetry events that started before {iso_utc(result.cutoff)} "
                   f"({result.batches} batches{dropped}).")
