"""``recsys ingest mteb``: MTEB results into evidence."""

from __future__ import annotations

from typing import Annotated

import typer

from ._base import JsonOption, cronjob, not_available, state
from .ingest import app


@app.command("mteb")
@cronjob("ingest-mteb")
def ingest_mteb(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="A local clone or mirror of embeddings-benchmark/results; env RECSYS_MTEB_URL."
    )] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model, from the bulk mteb/results dataset.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Ingest even if the source version is unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Parse and validate; write nothing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Ingest MTEB embedding benchmark results into the evidence store."""
    state(ctx, json_output=json_output)
    not_available("ingest mteb")
