"""``recsys snapshot`` and ``recsys serve``."""

import sys
from typing import Annotated, Any

import typer

from ._base import JsonOption, PolicyOption, cronjob, print_json, state
from ._render import console, fold_name, format_score, format_value, one_line, unmapped_tasks_line

# How many of each task's top models the snapshot job pushes as recsys_utility_score (unless --top).
PUSHED_TOP = 3
# Model names in the task tables fold to this width, so eight columns fit 80.
SNAPSHOT_NAME_WIDTH = 20
# Error rates above this are highlighted in the telemetry table.
HIGH_ERROR_RATE = 0.05


def register(app: typer.Typer) -> None:
    app.command("snapshot")(cronjob("snapshot")(snapshot_command))
    app.command("serve")(serve_command)


def snapshot_command(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Only the top N models per task.")] = None,
    summary: Annotated[bool, typer.Option(
        "--summary", help="Only the top pick per task and the one component that decided it (no tables).")] = False,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show freshness, current rankings and telemetry health: can the recommender be trusted now?"""
    from recommender_core.diagnostics.snapshot import build_snapshot

    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    if summary and not app_state.json_output:
        render_summary(app_state, policy_path)
        return
    store = app_state.store()
    snapshot = build_snapshot(store, app_state.policy(policy_path),
                              v2_enabled=settings.enable_model_recommender_v2,
                              stale_after_hours=settings.stale_after_hours, task=task, top=top)
    if app_state.report is not None and settings.pushgateway_url:
        app_state.report.record_snapshot(snapshot.document, top=top or PUSHED_TOP)
    if app_state.json_output:
        # Compact, unlike print_json: json's C encoder only runs without indent, and a full snapshot
        # (every ranked model of every task) is large enough for that to matter (bench_snapshot).
        import json

        sys.stdout.write(json.dumps(snapshot.document, allow_nan=False) + "\n")
        return
    render_snapshot(snapshot.document, stale_after_hours=settings.stale_after_hours, verbose=app_state.verbose)


def _num(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return format_value(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def render_summary(app_state: Any, policy_path: str | None) -> None:
    """A few lines: per task, the top pick and the component that decided it over the runner-up."""
    from recommender_core.routing.summary import top_picks
    from recommender_core.routing.table import load_current_table

    v2 = bool(app_state.settings().enable_model_recommender_v2)
    table = load_current_table(app_state.store())
    policy = app_state.policy(policy_path)
    out = console()
    origin = table.origin if table is not None else "no scoring run yet"
    out.print(f"Top pick per task ({origin}; V2 {'on' if v2 else 'off: static order'}):", markup=False)
    picks = top_picks(policy, table, v2_enabled=v2)
    width = max(len(p.task) for p in picks)
    for p in picks:
        if p.component is None:
            out.print(f"  {p.task:<{width}}  {p.model or '-'} ({p.reason})", markup=False)
            continue
        # two lines per task: the pick, then what decided it (the runner-up named when it fits)
        out.print(f"  {p.task:<{width}}  {p.model}", markup=False)
        why = f"decided by {p.component}: {format_score(p.pick_value)} vs {format_score(p.runner_up_value)}"
        named = f"{why} for {p.runner_up}"
        indent = " " * (width + 4)
        out.print(indent + (named if len(indent + named) <= out.width else f"{why} for the runner-up"), markup=False)


def render_snapshot(doc: dict[str, Any], *, stale_after_hours: float, width: int | None = None,
                    verbose: int = 0) -> None:
    """Rich tables for an 80-column terminal; stale sources and failed runs in red.

    Names fold at separators only, figures never wrap, and a last error is cut to one line
    (whole under ``-v``).
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from recommender_core.printable import printable_doc

    doc = printable_doc(doc)  # every name and message with its control characters escaped
    console = Console(width=width, highlight=False, markup=False)

    def table(title: str, *columns: str, names: tuple[str, ...] = (), widths: dict[str, int] | None = None,
              wrap: tuple[str, ...] = ()) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold", expand=False, pad_edge=False)
        for column in columns:
            if column in names:
                t.add_column(column, overflow="fold", min_width=(widths or {}).get(column))
            elif column in wrap:
                t.add_column(column, overflow="fold")
            else:
                t.add_column(column, no_wrap=True)
        return t

    def longest(texts: list[str]) -> int:
        return max((len(line) for text in texts for line in text.split("\n")), default=0)

    flag = Text("on (scores route)", style="green") if doc["v2_enabled"] else Text(
        "off (static order routes)", style="yellow")
    console.print(Text.assemble("recsys snapshot at ", (str(doc["generated_at"]), "bold")))
    console.print(Text.assemble("ENABLE_MODEL_RECOMMENDER_V2: ", flag))

    if doc["sources"]:
        sources = table(f"Sources (stale after {stale_after_hours:g} h)", "source", "last run", "age",
                        "version", "rows", "rej.", names=("source",))
        problems = []
        for s in doc["sources"]:
            failed = s["last_status"] in ("failed", "abandoned")
            status = Text(s["last_status"], style="bold red" if failed else "")
            age = Text(_age(s["age_seconds"]) + (" STALE" if s["stale"] else ""),
                       style="bold red" if s["stale"] else "green")
            sources.add_row(s["source"], status, age, one_line(format_value(s["source_version"]), 12),
                            str(s["rows"]),
                            Text(str(s["rejected_rows"]), style="yellow" if s["rejected_rows"] else ""))
            if s["last_error"]:
                # the error usually starts with the source's name already: say it once
                error = str(s["last_error"])
                problems.append(error if error.startswith(f"{s['source']}:") else f"{s['source']}: {error}")
        console.print(sources)
        for problem in problems:
            line = f"Last error of {problem}"
            console.print(Text(line if verbose else one_line(line, console.width), style="red"))
    else:
        console.print("Sources: no ingest has run yet")

    run = doc["scoring_run"]
    if run is None:
        console.print("Scoring run: none yet")
    else:
        computed = str(run["computed_at"])[:16].replace("T", " ")
        console.print(f"Scoring run {run['id']}: {computed} UTC ({_age(run.get('age_seconds'))} ago), "
                      f"policy {str(run['policy_hash'])[:12]}")
    if doc.get("policy_hash") and run is not None and run["policy_hash"] != doc["policy_hash"]:
        console.print(Text("The policy changed since this scoring run: run 'recsys score'.", style="yellow"))

    for task, models in doc["tasks"].items():
        folded = [fold_name(m["model"], SNAPSHOT_NAME_WIDTH) for m in models]
        ranked = table(f"Task {task}", "#", "model", "util.", "qual.", "cost", "lat.", "rel.", "evid.",
                       names=("model",), widths={"model": longest(folded)})
        sources_of: list[str] = []
        for m, name in zip(models, folded, strict=True):
            values = m.get("evidence_values") or []
            # the first stored value behind the quality; every value and its upstream name under -v
            shown = format_value(values[0]["value"]) + ("+" if len(values) > 1 else "") if values else "-"
            ranked.add_row(str(m["rank"]), name, *(format_score(m[k]) for k in ("utility", "quality", "cost",
                                                                                 "latency", "reliability")),
                           shown)
            sources_of.append(f"  {m['model']}: " + ("; ".join(f"{format_value(v['value'])} {v['model']}"
                                                              for v in values) or ", ".join(m["evidence"]) or "-"))
        console.print(ranked)
        if verbose:
            console.print("  evidence behind each quality (value, upstream name):")
            for line in sources_of:
                console.print(line, highlight=False)
        excluded = doc.get("excluded", {}).get(task, [])
        if excluded:
            reasons = "; ".join(f"{e['model']} ({e['reason']})" for e in excluded)
            console.print(Text(f"  excluded: {reasons}", style="dim"))

    tele = doc["telemetry"]
    if tele["models"]:
        folded = [fold_name(m["model"]) for m in tele["models"]]
        health = table(f"Telemetry, last {tele['window_hours']} h", "model", "calls", "errors", "p50 ms", "p95 ms",
                       names=("model",), widths={"model": longest(folded)})
        for m, name in zip(tele["models"], folded, strict=True):
            high = m["error_rate"] > HIGH_ERROR_RATE
            health.add_row(name, str(m["calls"]),
                           Text(f"{m['errors']} ({m['error_rate']:.1%})", style="bold red" if high else ""),
                           _num(m["latency_p50_ms"], 0), _num(m["latency_p95_ms"], 0))
        console.print(health)
    else:
        console.print(f"Telemetry, last {tele['window_hours']} h: no calls recorded")

    if doc["unmatched_models"]:
        shown = ", ".join(doc["unmatched_models"][:5])
        more = len(doc["unmatched_models"]) - 5
        console.print(Text(f"Evidence names matching no candidate ({len(doc['unmatched_models'])}): {shown}"
                           + (f" and {more} more" if more > 0 else "") + "; see 'recsys policy check'.",
                           style="yellow"))
    if doc.get("unmapped_tasks"):
        console.print(Text(unmapped_tasks_line(doc["unmapped_tasks"]), style="yellow"))
    if doc.get("next_steps"):
        console.print(Text("Next: run " + ", then ".join(doc["next_steps"]), style="bold"))


def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to bind (0: any free port).")] = 8080,
    policy_path: PolicyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Serve /snapshot, /metrics, /healthz (readiness) and /livez (liveness) over HTTP."""
    from recommender_core import __version__
    from recommender_core.diagnostics.server import DiagnosticsApp, make_server

    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    app = DiagnosticsApp(store=app_state.store(), policy=app_state.policy(policy_path),
                         v2_enabled=settings.enable_model_recommender_v2,
                         stale_after_hours=settings.stale_after_hours, version=__version__)
    server = make_server(app, host=host, port=port, idle_timeout=settings.serve_idle_timeout_seconds)
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host!s}:{bound_port}/"
    typer.echo(f"recsys serve: {url} (/snapshot, /metrics, /healthz, /livez); Ctrl-C stops", err=True)
    if app_state.json_output:
        # docs/json.md: one JSON document on stdout, here where the server listens (useful with --port 0).
        print_json({"url": url, "host": str(bound_host), "port": int(bound_port),
                    "endpoints": ["/snapshot", "/metrics", "/healthz", "/livez"]})
        sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
