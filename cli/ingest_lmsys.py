"""``recsys ingest lmsys``: LMArena ratings into evidence."""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recommender_core.printable import printable

from ._base import JsonOption, PolicyOption, cronjob, print_json, state
from .ingest import app

if TYPE_CHECKING:
    from recommender_core.sources.base import IngestResult


@contextmanager
def download_progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int | None], None]] | None]:
    """A rich progress bar on stderr when it is a terminal; ``None`` (no progress) otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as progress:

        def factory(label: str) -> Callable[[int, int | None], None]:
            task = progress.add_task(label, total=None)

            def update(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            return update

        yield factory


def render(result: "IngestResult") -> None:
    """One summary for people: what happened, how many rows, why rows were rejected or skipped."""
    if result.status == "unchanged":
        typer.echo(f"lmsys: source version {printable(result.source_version)} is already ingested; nothing to do "
                   "(use --force to ingest it again).")
        return
    verb = {"success": "ingested", "dry-run": "validated (dry run, nothing written)"}.get(result.status,
                                                                                          result.status)
    typer.echo(f"lmsys: {verb} {result.rows_accepted} rows from version {printable(result.source_version)}"
               + (f" as run {result.run_id}" if result.run_id is not None else "") + ".")
    for title, counts in (("rejected", result.rejected_reasons), ("skipped", result.skipped)):
        if counts:
            typer.echo(f"  {title}: " + ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())))
    typer.echo("  LMArena data: CC BY 4.0, lmarena-ai/leaderboard-dataset (https://lmarena.ai).")


@app.command("lmsys")
@cronjob("ingest-lmsys")
def ingest_lmsys(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="Read a mirror (URL or path) instead of the Hugging Face dataset; env RECSYS_LMSYS_URL."
    )] = None,
    force: Annotated[bool, typer.Option("--force", help="Ingest even if the source version is unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Parse and validate; write nothing.")] = False,
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="Dataset config to ingest (repeatable; default: those the policy references, else text)."
    )] = None,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest LMArena (Chatbot Arena) ratings into the evidence store."""
    from dataclasses import asdict

    from recommender_core.sources.base import IngestOptions
    from recommender_core.sources.lmsys import LmsysSource

    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    options = IngestOptions(mirror=source or settings.lmsys_url, force=force, dry_run=dry_run,
                            keep_runs=settings.keep_runs)
    with download_progress(not app_state.json_output) as progress:
        plugin = LmsysSource(settings=settings, policy=app_state.policy(policy_path), progress=progress,
                             configs=config or None)
        try:
            result = plugin.run(app_state.store(), options)
        finally:
            plugin.close()
    if app_state.report is not None and result.status != "dry-run":
        app_state.report.record_ingest("lmsys", rows=result.rows_accepted, rejected=result.rows_rejected)
    if app_state.json_output:
        document: dict[str, Any] = asdict(result)
        print_json(document)
    else:
        render(result)
