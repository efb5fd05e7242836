"""``recsys db``: migrations."""

from typing import Annotated

import typer

from ._base import JsonOption, RecsysTyper, print_json, state

app = RecsysTyper()


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option(
        "--wait", min=0, help="Seconds to wait for a concurrent upgrade before giving up (exit 75)."
    )] = 60.0,
    json_output: JsonOption = False,
) -> None:
    """Apply database migrations (Alembic), idempotently, under a lock."""
    app_state = state(ctx, json_output=json_output)
    store = app_state.store()
    result = store.upgrade(wait_seconds=wait)
    if app_state.json_output:
        print_json({"database": store.display_url, "from_revision": result.from_revision,
                    "to_revision": result.to_revision, "changed": result.changed})
    elif result.changed:
        typer.echo(f"Upgraded {store.display_url} from {result.from_revision or 'empty'} "
                   f"to {result.to_revision}.")
    else:
        typer.echo(f"{store.display_url} is already at {result.to_revision}; nothing to do.")
