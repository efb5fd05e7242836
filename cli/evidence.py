"""``recsys evidence`` and ``recsys runs``: read the store."""

from __future__ import annotations

from typing import Annotated

import typer

from ._base import JsonOption, PolicyOption, print_json, state
from ._render import print_table


def register(app: typer.Typer) -> None:
    app.command("evidence")(evidence_command)
    app.command("runs")(runs_command)


def evidence_command(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", help="Only this source (lmsys, mteb).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Only this model: its upstream name or the candidate it maps to.")] = None,
    category: Annotated[str | None, typer.Option(
        "--category", help="Only this category (Arena: text/coding; MTEB: a task name).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows.")] = None,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the current evidence: one row per model and category, with bounds and sample sizes."""
    from recommender_core.evidence import list_evidence

    app_state = state(ctx, json_output=json_output)
    rows = list_evidence(app_state.store(), app_state.policy(policy_path), source=source, model=model,
                         category=category, limit=limit)
    if app_state.json_output:
        print_json([row.to_json() for row in rows])
        return
    print_table(
        "Evidence", ["source", "model", "candidate", "category", "value", "lower", "upper", "samples"],
        ([r.source, r.model, r.candidate, r.category, r.value, r.lower, r.upper, r.samples] for r in rows),
        empty="no evidence stored yet; run 'recsys ingest lmsys' or 'recsys ingest mteb'",
    )


def runs_command(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="Only runs of this source (lmsys, mteb, litellm, or score).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """List ingest and scoring runs, newest first, with status and row counts."""
    from dataclasses import asdict

    from recommender_core.store.runs import list_runs

    app_state = state(ctx, json_output=json_output)
    runs = list_runs(app_state.store(), source=source, limit=limit)
    if app_state.json_output:
        print_json([asdict(r) for r in runs])
        return
    print_table(
        "Runs", ["id", "source", "status", "started", "version", "rows", "rejected", "error"],
        ([r.id, r.source, r.status, r.started_at.strftime("%Y-%m-%d %H:%M:%SZ"), r.source_version,
          r.rows_accepted, r.rows_rejected, r.error] for r in runs),
        empty="no runs recorded yet",
    )
