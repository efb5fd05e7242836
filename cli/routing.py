"""Scoring and routing commands: ``score``, ``route``, ``route-test``, ``export litellm-router``."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recommender_core.printable import printable
from recommender_core.routing.strategies import STRATEGIES

from ._base import JsonOption, PolicyOption, RecsysTyper, cronjob, print_json, state
from ._render import print_table
from .route_text import route_text, terminal_width

if TYPE_CHECKING:
    from recommender_core.routing.table import UtilityTable

export_app = RecsysTyper()
# The --strategy choices come from the registry (a light import: no database or litellm behind it).
STRATEGY_NAMES = tuple(STRATEGIES)


def register(app: typer.Typer) -> None:
    app.command("score")(cronjob("score")(score_command))
    app.command("route")(route_command)
    app.command("route-test")(cronjob("route-test")(route_test_command))


def score_command(
    ctx: typer.Context,
    policy_path: PolicyOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and show; store nothing.")] = False,
    activate: Annotated[int | None, typer.Option(
        "--activate", help="Make an earlier scoring run current again (roll back).", min=1)] = None,
    json_output: JsonOption = False,
) -> None:
    """Compute and store a new utility table from the current evidence, telemetry and prices."""
    from recommender_core.errors import UsageError
    from recommender_core.scoring import activate_run, run_scoring

    app_state = state(ctx, json_output=json_output)
    if activate is not None and dry_run:
        raise UsageError("--activate and --dry-run cannot be used together.")
    store = app_state.store()
    if activate is not None:
        result = activate_run(store, activate)
    else:
        result = run_scoring(store, app_state.policy(policy_path), dry_run=dry_run,
                             keep_runs=app_state.settings().keep_runs)
    doc = result.to_json()
    if app_state.report is not None:
        from recommender_core.routing.decision import decision_seconds
        from recommender_core.routing.table import table_from_scored

        # The decisions this run makes possible, timed once per task: the recommendation latency histogram.
        table = table_from_scored(result.scores, origin="this scoring run")
        for task, seconds in decision_seconds(app_state.policy(policy_path), table).items():
            app_state.report.observe_recommendation_latency(seconds, task=task)
        scored = sum(t["scored"] for t in doc["tasks"].values())
        excluded = sum(len(t["excluded"]) for t in doc["tasks"].values())
        app_state.report.set_gauge("recsys_scored_models", scored)
        app_state.report.set_gauge("recsys_excluded_models", excluded)
    if app_state.json_output:
        print_json(doc)
        return
    if result.activated:
        typer.echo(f"Scoring run {result.run_id} is current again.")
    elif result.run_id is None:
        typer.echo("Dry run: nothing stored.")
    else:
        typer.echo(f"Scoring run {result.run_id} is now current.")
    print_table("Tasks", ["task", "scored", "excluded"],
                ([task, t["scored"], len(t["excluded"])] for task, t in doc["tasks"].items()))
    print_table("Excluded", ["task", "model", "reason"],
                ([task, e["model"], e["reason"]] for task, t in doc["tasks"].items() for e in t["excluded"]),
                names=("task", "model"))


def _write(path: str, text: str, option: str) -> None:
    """Write an output file; a path that cannot be written is one line and exit 1, not a traceback."""
    from recommender_core.errors import RecsysError

    try:
        Path(path).write_text(text, "utf-8")
    except OSError as exc:
        raise RecsysError(f"Cannot write {option} {path}: {exc.strerror or exc}. "
                          "Give a path in an existing, writable directory.") from exc


def _v2(app_state: Any) -> bool:
    return bool(app_state.settings().enable_model_recommender_v2)


def route_command(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(help="Task name from the policy, e.g. coding.")],
    max_cost_per_1k: Annotated[float | None, typer.Option(
        "--max-cost-per-1k", min=0, help="Leave out models costing more than this many USD per 1,000 tokens "
        "(default: the task's constraints in the policy).")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(
        "--max-latency-ms", min=0, help="Leave out models whose p95 latency is above this many milliseconds "
        "(default: the task's constraints).")] = None,
    min_quality: Annotated[float | None, typer.Option(
        "--min-quality", min=0, max=1, help="Leave out models whose quality score (0 to 1) is below this "
        "(default: the task's constraints).")] = None,
    strategy: Annotated[str, typer.Option("--strategy", help=f"One of: {', '.join(STRATEGY_NAMES)}.")] = "utility",
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Decide the model and fallback order for one task, with the explanation."""
    from recommender_core.routing.decision import route

    app_state = state(ctx, json_output=json_output)
    v2 = _v2(app_state)
    decision = route(task, max_cost_per_1k=max_cost_per_1k, max_latency_ms=max_latency_ms,
                     min_quality=min_quality, strategy=strategy, v2_enabled=v2,
                     store=app_state.store() if v2 else None, policy=app_state.policy(policy_path))
    if app_state.json_output:
        print_json(decision.to_json())  # the explanation is built here, when it is printed
    else:
        source = "scores" if v2 else "the policy's static order (ENABLE_MODEL_RECOMMENDER_V2 is off)"
        sys.stdout.write(route_text(
            task, decision.primary, decision.fallbacks, strategy=strategy, source=source,
            candidates=[(c.model, c.utility, c.quality, c.cost, c.latency, c.reliability) for c in decision.candidates],
            excluded=[(e.model, e.reason) for e in decision.excluded], width=terminal_width()))
    # The compiled policy the next call's fast path reads (recsys_cli.fast_route); best effort.
    from recommender_core.policy_cache import save_compiled

    save_compiled(policy_path or app_state.settings().policy, app_state.settings().resolved_cache_dir)


def _table(app_state: Any, scores: str | None) -> "tuple[UtilityTable | None, Any]":
    """(table, store): from a snapshot file (no database), else the store's current run."""
    from recommender_core.routing.snapshot_file import table_from_snapshot
    from recommender_core.routing.table import load_current_table

    if scores is not None:
        return table_from_snapshot(scores), None
    if not _v2(app_state):
        return None, None
    store = app_state.store()
    return load_current_table(store), store


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
    from recommender_core.errors import RouteTestFailed
    from recommender_core.routing.route_test import load_cases, run_cases

    app_state = state(ctx, json_output=json_output)
    load_cases(cases)  # an invalid file fails (exit 1) before any database is opened
    policy = app_state.policy(policy_path)
    table, store = _table(app_state, scores)
    report = run_cases(cases, policy=policy, scores=table, v2_enabled=_v2(app_state), store=store,
                       update_golden=update_golden)
    if junit_xml is not None:
        _write(junit_xml, report.junit_xml(), "--junit-xml")
    if app_state.report is not None:
        app_state.report.set_gauge("recsys_route_test_cases", len(report.results))
        app_state.report.set_gauge("recsys_route_test_failures", report.failed)
        for result in report.results:
            app_state.report.observe_recommendation_latency(result.seconds, task=result.task)
    if app_state.json_output:
        print_json(report.to_json())
    else:
        for r in report.results:
            typer.echo(printable(f"{'PASS' if r.passed else 'FAIL'}  {r.name}  [{r.task}]"))
            for failure in r.failures:
                typer.echo("      " + "\n      ".join(printable(line) for line in failure.split("\n")))
        typer.echo(f"{len(report.results) - report.failed} passed, {report.failed} failed")
    if report.failed:
        raise RouteTestFailed(f"{report.failed} of {len(report.results)} route-test cases failed in {cases}.")


@export_app.command("litellm-router")
def export_litellm_router(
    ctx: typer.Context,
    output: Annotated[str | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
    scores: Annotated[str | None, typer.Option(
        "--scores", help="A saved 'recsys snapshot --json' to route from (no database).")] = None,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a LiteLLM Router config with task aliases and ordered fallbacks (YAML; JSON with --json)."""
    import json

    import yaml

    from recommender_core.routing.export import litellm_router_config

    app_state = state(ctx, json_output=json_output)
    table, _ = _table(app_state, scores)
    if table is None and _v2(app_state):
        from recommender_core.routing.table import UtilityTable

        table = UtilityTable.build({}, origin="no current scoring run")
    config = litellm_router_config(app_state.policy(policy_path), scores=table, v2_enabled=_v2(app_state))
    text = (json.dumps(config, indent=2) + "\n" if app_state.json_output
            else yaml.safe_dump(config, sort_keys=False))
    if output is None:
        typer.echo(text, nl=False)
    else:
        _write(output, text, "--output")
        typer.echo(f"Wrote {output}", err=True)
