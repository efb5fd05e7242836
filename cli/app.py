"""The root ``recsys`` command: global options and the command tree of DESIGN.md section 3."""

from typing import Annotated

import typer

from . import db, diagnostics, evidence, ingest, policy, routing, telemetry
from ._base import AppState, RecsysTyper

app = RecsysTyper(
    name="recsys",
    help="Evidence-guided LLM model recommender for LiteLLM: ingest evidence, score, route.",
)


def _version(value: bool) -> None:
    if value:
        from recommender_core import __version__

        typer.echo(f"recsys {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="Database URL (default: RECSYS_DATABASE_URL, DATABASE_URL, else embedded SQLite)."
    )] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More logging (-vv: debug).")] = 0,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit."
    )] = False,
) -> None:
    """Global options apply to every command."""
    # A caller may seed the state (a test passing a clock); the options parsed here fill in the rest.
    seeded = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    ctx.obj = AppState(database_url=database_url, json_output=json_output, verbose=verbose, clock=seeded.clock)
    ctx.call_on_close(ctx.obj.close)
    if ctx.resilient_parsing:
        return
    from recommender_core.config import Settings
    from recommender_core.errors import ConfigError
    from recommender_core.logs import configure_logging

    # The log format alone, so that even a bad setting elsewhere can still be reported in the format
    # the log stack expects (and a bad log format itself falls back to text).
    try:
        log_format = str(Settings.read("log_format"))
    except ConfigError:
        log_format = "text"
    configure_logging(verbosity=verbose, log_format=log_format)


app.add_typer(db.app, name="db", help="Database migrations.")
app.add_typer(ingest.app, name="ingest", help="Ingest evidence and telemetry from their sources.")
app.add_typer(telemetry.app, name="telemetry", help="Telemetry maintenance.")
app.add_typer(policy.app, name="policy", help="Inspect and validate policy files.")
app.add_typer(routing.export_app, name="export", help="Export routing configs for other tools.")
evidence.register(app)
routing.register(app)
diagnostics.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
