"""``recsys snapshot`` and ``recsys serve``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._base import JsonOption, PolicyOption, cronjob, not_available, print_json, state
from ._render import print_table


def register(app: typer.Typer) -> None:
    app.command("snapshot")(cronjob("snapshot")(snapshot_command))
    app.command("serve")(serve_command)


def snapshot_command(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Only the top N models per task.")] = None,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show freshness, current rankings and telemetry health: can the recommender be trusted now?"""
    from recommender_core.diagnostics.snapshot import build_snapshot

    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    snapshot = build_snapshot(app_state.store(), app_state.policy(policy_path),
                              v2_enabled=settings.enable_model_recommender_v2,
                              stale_after_hours=settings.stale_after_hours, task=task, top=top)
    if app_state.json_output:
        print_json(snapshot.document)
        return
    _render_snapshot(snapshot.document)


def _render_snapshot(doc: dict[str, Any]) -> None:
    typer.echo(f"recsys snapshot at {doc['generated_at']}  (V2 recommender "
               f"{'on' if doc['v2_enabled'] else 'off'})")
    print_table("Sources", ["source", "status", "age (h)", "stale", "version", "rows", "rejected", "error"],
                ([s["source"], s["last_status"],
                  None if s["age_seconds"] is None else round(s["age_seconds"] / 3600, 1),
                  "STALE" if s["stale"] else "ok", s["source_version"], s["rows"], s["rejected_rows"],
                  s["last_error"]] for s in doc["sources"]),
                empty="no ingest has run yet")
    run = doc["scoring_run"]
    typer.echo("Scoring run: none yet" if run is None else
               f"Scoring run {run['id']} computed {run['computed_at']} (policy {str(run['policy_hash'])[:12]})")
    for task, models in doc["tasks"].items():
        print_table(f"Task {task}", ["#", "model", "utility", "quality", "cost", "latency", "reliab."],
                    ([m["rank"], m["model"], m["utility"], m["quality"], m["cost"], m["latency"],
                      m["reliability"]] for m in models))
    tele = doc["telemetry"]
    print_table(f"Telemetry, last {tele['window_hours']} h", ["model", "calls", "error rate", "p50 ms", "p95 ms"],
                ([m["model"], m["calls"], m["error_rate"], m["latency_p50_ms"], m["latency_p95_ms"]]
                 for m in tele["models"]),
                empty="no calls recorded")
    if doc["unmatched_models"]:
        typer.echo(f"Evidence names matching no candidate: {len(doc['unmatched_models'])} "
                   "(see 'recsys policy check')")
    if doc.get("next_steps"):
        typer.echo("Next: " + "; then ".join(doc["next_steps"]))


def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to bind.")] = 8080,
) -> None:
    """Serve /snapshot, /metrics and /healthz over HTTP for debugging and scraping."""
    state(ctx)
    not_available("serve")
