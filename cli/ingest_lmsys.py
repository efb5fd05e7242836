"""``recsys ingest lmsys``: LMArena ratings into evidence."""

from __future__ import annotations

from typing import Annotated

import typer

from ._base import JsonOption, cronjob, not_available, state
from .ingest import app


@app.command("lmsys")
@cronjob("ingest-lmsys")
def ingest_lmsys(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="Read a mirror (URL or path) instead of the Hugging Face dataset; env RECSYS_LMSYS_URL."
    )] = None,
    force: Annotated[bool, typer.Option("--force", help="Ingest even if the source version is unchanged.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Parse and validate; write nothing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Ingest LMArena (Chatbot Arena) ratings into the evidence store."""
    state(ctx, json_output=json_output)
    not_available("ingest lmsys")
