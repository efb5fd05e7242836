"""``recsys ingest outcomes``: a team's own per-item eval results into evidence."""

from typing import Annotated

import typer

from ._base import JsonOption, PolicyOption, cronjob, print_json, state
from .ingest import app


@app.command("outcomes")
@cronjob("ingest-outcomes")
def ingest_outcomes(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="An outcomes file (task, item, model, score[, cost_usd, split]): CSV, JSONL or parquet.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Ingest even if the file is unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Parse and validate; write nothing.")] = False,
    policy: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest per-item outcomes (your own evals) as evidence per (task, model)."""
    from recommender_core.sources.base import IngestOptions
    from recommender_core.sources.outcomes import OutcomesSource

    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    options = IngestOptions(mirror=source, force=force, dry_run=dry_run, keep_runs=settings.keep_runs)
    result = OutcomesSource(settings=settings, policy=app_state.policy(policy)).run(app_state.store(), options)
    if app_state.report is not None:
        app_state.report.record_ingest("outcomes", rows=result.rows_accepted, rejected=result.rows_rejected)
    if app_state.json_output:
        print_json({"source": result.source, "status": result.status, "source_version": result.source_version,
                    "run_id": result.run_id, "rows_accepted": result.rows_accepted,
                    "rows_rejected": result.rows_rejected, "rejected": dict(result.rejected_reasons),
                    "details": dict(result.details)})
        return
    if result.status == "unchanged":
        typer.echo(f"outcomes: {result.source_version[:19]}... is already ingested; nothing to do "
                   "(use --force to ingest it again).")
        return
    what = f"as run {result.run_id}" if result.run_id is not None else "(dry run, nothing written)"
    typer.echo(f"outcomes: {result.status}, {result.rows_accepted} (task, model) rows from "
               f"{result.details.get('rows_read', 0)} file rows, {result.rows_rejected} rejected {what}.")
    for reason, count in result.rejected_reasons.items():
        typer.echo(f"  rejected {reason}: {count}")
