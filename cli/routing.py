"""Scoring and routing commands: ``score``, ``route``, ``route-test``, ``export litellm-router``."""

from __future__ import annotations

from typing import Annotated

import typer

from ._base import JsonOption, PolicyOption, RecsysTyper, cronjob, not_available, state

export_app = RecsysTyper()


def register(app: typer.Typer) -> None:
    app.command("score")(cronjob("score")(score_command))
    app.command("route")(route_command)
    app.command("route-test")(cronjob("route-test")(route_test_command))


def score_command(
    ctx: typer.Context,
    policy_path: PolicyOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and show; store nothing.")] = False,
    activate: Annotated[str | None, typer.Option(
        "--activate", help="Make an earlier scoring run current again (roll back).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Compute and store a new utility table from the current evidence, telemetry and prices."""
    state(ctx, json_output=json_output)
    not_available("score")


def route_command(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task name from the policy, e.g. coding.")],
    max_cost_per_1k: Annotated[float | None, typer.Option("--max-cost-per-1k", min=0)] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", min=0)] = None,
    min_quality: Annotated[float | None, typer.Option("--min-quality", min=0, max=1)] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="utility or cascade.")] = "utility",
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Decide the model and fallback order for one task, with the explanation."""
    state(ctx, json_output=json_output)
    not_available("route")


def route_test_command(
    ctx: typer.Context,
    cases: Annotated[str, typer.Argument(help="YAML file of routing expectations.")],
    scores: Annotated[str | None, typer.Option(
        "--scores", help="A saved 'recsys snapshot --json' to route from (no database).")] = None,
    junit_xml: Annotated[str | None, typer.Option("--junit-xml", help="Write JUnit XML here.")] = None,
    update_golden: Annotated[bool, typer.Option("--update-golden", help="Rewrite golden decision files.")] = False,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check routing expectations (for CI): exit 0 when all pass, 3 when any fails."""
    state(ctx, json_output=json_output)
    not_available("route-test")


@export_app.command("litellm-router")
def export_litellm_router(
    ctx: typer.Context,
    output: Annotated[str | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a LiteLLM Router config with task aliases and ordered fallbacks."""
    state(ctx, json_output=json_output)
    not_available("export litellm-router")
