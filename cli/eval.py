"""``recsys eval``: import published routing data, replay recsys's decisions on outcomes, calibrate the cost weight."""

from pathlib import Path
from typing import Annotated, Any

import typer

from ._base import JsonOption, PolicyOption, RecsysTyper, print_json, state
from ._render import print_table

app = RecsysTyper()

OutcomesArg = Annotated[list[Path], typer.Argument(
    help="Outcomes files in the long format (task, item, model, score[, cost_usd, split]): CSV, JSONL or parquet.",
    show_default=False)]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the evidence/outcome hash split and the bootstrap.")]
PointsOption = Annotated[int, typer.Option("--points", help="Cost weights in the sweep (at least 32).")]
RepeatsOption = Annotated[int, typer.Option("--repeats", help="Bootstrap repeats for the 95% intervals (0: none).")]
CascadeOption = Annotated[float, typer.Option("--cascade-error", help="Evaluator error rate of recsys-cascade.")]
FormOption = Annotated[str, typer.Option(
    "--cost-form", help="How cost enters the utility: wtp (quality - weight x USD per call) or relative.")]
StoreOption = Annotated[str, typer.Option(
    "--store", help="Where the evidence half is scored: memory, or sqlite (a temporary file; never your store).")]


def _options(seed: int, points: int, repeats: int, cascade_error: float, cost_form: str,
             store: str) -> dict[str, Any]:
    from recommender_core.errors import UsageError

    if cost_form not in ("wtp", "relative"):
        raise UsageError(f"--cost-form {cost_form!r}: use wtp or relative.")
    if store not in ("memory", "sqlite"):
        raise UsageError(f"--store {store!r}: use memory or sqlite.")
    return {"seed": seed, "points": points, "repeats": repeats, "cascade_error": cascade_error,
            "cost_form": cost_form, "backend": store}


def _ci(value: Any) -> str:
    return "-" if not value else f"[{value[0]:.3f}, {value[1]:.3f}]"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command("import")
def import_command(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="The published files (or a folder of them).",
                                                show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="routellm, routerbench or arena-bench.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The outcomes file to write (.parquet, .csv, "
                                                                ".jsonl).")],
    keep_contaminated: Annotated[bool, typer.Option(
        "--keep-contaminated", help="Keep prompts RouteLLM lists as contaminated (dropped by default).")] = False,
    per_item_cost: Annotated[bool, typer.Option(
        "--per-item-cost", help="RouteLLM CSVs: price each item by its own prompt (and response) length "
        "instead of the dataset's mean.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Convert published per-prompt routing results into the long outcomes format."""
    from recommender_core.eval.importers import import_files, write_outcomes

    app_state = state(ctx, json_output=json_output)
    result = import_files(fmt, paths, decontaminate=not keep_contaminated, per_item_cost=per_item_cost)
    write_outcomes(result.rows, output)
    doc = {"format": fmt, "output": str(output), "rows": len(result.rows), "items": result.items,
           "tasks": result.tasks, "models": result.models, "decontaminated": result.decontaminated,
           "no_score": result.no_score, "dropped_models": result.dropped_models}
    if app_state.json_output:
        print_json(doc)
        return
    typer.echo(f"{fmt}: {doc['rows']} rows ({doc['items']} items, {doc['tasks']} tasks, {doc['models']} models) "
               f"written to {output}; {doc['decontaminated']} contaminated prompts dropped.")
    if result.no_score:
        typer.echo(f"  judgments without a score, left out: {result.no_score}")
    for model, reason in sorted(result.dropped_models.items()):
        typer.echo(f"  left out {model}: {reason}")


@app.command("replay")
def replay_command(
    ctx: typer.Context,
    outcomes: OutcomesArg,
    seed: SeedOption = 0,
    points: PointsOption = 64,
    repeats: RepeatsOption = 200,
    cascade_error: CascadeOption = 0.1,
    cost_form: FormOption = "wtp",
    store: StoreOption = "memory",
    task_intervals: Annotated[bool, typer.Option(
        "--task-intervals", help="Bootstrap intervals per task too (AIQ of recsys-utility, recsys-cascade and "
        "zero, and the cascade minus zero); slower.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw the curves and hulls (.png or .svg; needs "
                                                               "recsys[plot]).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Replay recsys's decisions on held-out outcomes and measure them with AIQ, APGR and CPT(50%)."""
    from recommender_core.eval.replay import replay_files

    app_state = state(ctx, json_output=json_output)
    result = replay_files(outcomes, **_options(seed, points, repeats, cascade_error, cost_form, store),
                          task_intervals=task_intervals)
    doc = result.document
    if plot is not None:
        from recommender_core.eval.plot import plot_replay

        plot_replay(doc, plot)
    if app_state.json_output:
        print_json(doc)
        return
    routers = doc["routers"]
    print_table(
        f"Replay: {len(doc['tasks'])} tasks, {doc['items']} outcome items, {len(doc['models'])} models",
        ["router", "AIQ", "95%", "APGR", "95%", "CPT50"],
        [[name if len(name) <= 18 else name[:8] + "~" + name[-9:], _num(r["aiq"]), _ci(r["aiq_ci95"]),
          _num(r["apgr"]), _ci(r.get("apgr_ci95")), _num(r["cpt50"])] for name, r in routers.items()],
        no_wrap=("router", "95%"))
    for label, figure in doc["comparisons"].items():
        typer.echo(f"{label}: {_num(figure['value'])} {_ci(figure['ci95'])}")
    sure = f", {len(doc['cascade_beats_zero_ci'])} with the interval above 0" if task_intervals else ""
    typer.echo(f"recsys-cascade beats zero within {len(doc['cascade_beats_zero'])} of {len(doc['per_task'])} "
               f"tasks{sure} (evaluator error {doc['cascade_error']:g}).")
    if plot is not None:
        typer.echo(f"chart written to {plot}")


@app.command("calibrate")
def calibrate_command(
    ctx: typer.Context,
    outcomes: OutcomesArg,
    max_cost_per_call: Annotated[float | None, typer.Option(
        "--max-cost-per-call", help="Budget: the replayed mean cost per call (USD) to stay within.")] = None,
    min_quality: Annotated[float | None, typer.Option(
        "--min-quality", help="Target: the replayed mean score to reach, at the lowest cost.")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write a copy of the policy with that cost weight here.")] = None,
    policy_path: PolicyOption = None,
    seed: SeedOption = 0,
    points: PointsOption = 64,
    cost_form: FormOption = "wtp",
    json_output: JsonOption = False,
) -> None:
    """The cost weight that meets a budget or a quality target on the replay, with its cost and quality."""
    from recommender_core.eval.replay import calibrate, calibrated_policy_text, replay_files

    app_state = state(ctx, json_output=json_output)
    options = _options(seed, points, 0, 0.1, cost_form, "memory")
    # check the target before the replay runs
    calibrate_check = (max_cost_per_call is None) == (min_quality is None)
    if calibrate_check:
        from recommender_core.errors import UsageError

        raise UsageError("Give exactly one of --max-cost-per-call and --min-quality.")
    result = replay_files(outcomes, **options)
    chosen = calibrate(result, max_cost_per_call=max_cost_per_call, min_quality=min_quality)
    if output is not None:
        from recommender_core.policy import default_policy_text, read_config_file

        path = policy_path or (str(app_state.settings().policy) if app_state.settings().policy else None)
        text = read_config_file(path) if path else default_policy_text()
        written, tasks = calibrated_policy_text(text, path=path or "<default policy>",
                                                cost_weight=chosen["cost_weight"], cost_form=chosen["cost_form"],
                                                tasks=result.document["tasks"])
        output.write_text(written, encoding="utf-8")
        chosen["policy_written"] = {"path": str(output), "tasks": tasks}
    if app_state.json_output:
        print_json(chosen)
        return
    typer.echo(f"cost weight {chosen['cost_weight']:.6g} ({chosen['cost_form']}): replayed mean cost "
               f"{chosen['cost']:.6g} USD per call, mean quality {chosen['quality']:.4g}.")
    if output is not None:
        typer.echo(f"policy copy written to {output} (tasks: {', '.join(chosen['policy_written']['tasks'])}).")
