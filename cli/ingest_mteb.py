"""``recsys ingest mteb``: MTEB results into evidence."""

from typing import Annotated

import typer

from recommender_core.printable import printable

from ._base import JsonOption, PolicyOption, cronjob, print_json, state
from ._render import unmapped_tasks_line
from .ingest import app


@app.command("mteb")
@cronjob("ingest-mteb")
def ingest_mteb(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="A local folder: a clone or mirror of embeddings-benchmark/results (not a URL); "
        "env RECSYS_MTEB_URL."
    )] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model, from the bulk mteb/results dataset.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Ingest even if the source version is unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Parse and validate; write nothing.")] = False,
    policy: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest MTEB embedding benchmark results into the evidence store."""
    from recommender_core.sources.base import IngestOptions
    from recommender_core.sources.mteb import MtebSource, summarise
    from recommender_core.sources.mteb_constants import UNMAPPED_TASK, UNMAPPED_TASKS

    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    options = IngestOptions(mirror=source, force=force, dry_run=dry_run, all_models=all_models,
                            keep_runs=settings.keep_runs)
    ingester = MtebSource(settings=settings, policy=app_state.policy(policy))
    try:
        result = ingester.run(app_state.store(), options)
    finally:
        ingester.close()
    if app_state.report is not None:
        app_state.report.record_ingest("mteb", rows=result.rows_accepted, rejected=result.rows_rejected)
    summary = summarise(result)
    if app_state.json_output:
        print_json(summary)
        return
    if result.status == "unchanged":
        typer.echo(f"mteb: source version {printable(result.source_version)} is already ingested; nothing to do "
                   "(use --force to ingest it again).")
        return
    what = (f"as run {result.run_id}" if result.run_id is not None else "(dry run, nothing written)")
    typer.echo(f"mteb: {result.status}, version {printable(result.source_version)}, {result.rows_accepted} rows, "
               f"{result.rows_rejected} rejected {what}.")
    for reason, count in summary["rejected"].items():
        typer.echo(f"  rejected {reason}: {count}")
    for reason, count in result.skipped.items():
        typer.echo(f"  skipped {reason}: {count}")
    if summary.get(UNMAPPED_TASK):
        typer.echo(f"  {UNMAPPED_TASK}: {summary[UNMAPPED_TASK]} (stored, task_type null)")
        typer.echo("  " + unmapped_tasks_line(summary[UNMAPPED_TASKS]))
