"""``recsys evidence`` and ``recsys runs``: read the store."""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._base import JsonOption, PolicyOption, print_json, state
from ._render import Escaped, console, format_time, format_value, one_line, print_table

# A version (a sha, a policy hash) in the runs table: enough to tell versions apart.
VERSION_WIDTH = 8

if TYPE_CHECKING:
    from recommender_core.evidence import EvidenceRow


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
    from recommender_core.sources import check_source_name

    app_state = state(ctx, json_output=json_output)
    check_source_name(source)
    rows = list_evidence(app_state.store(), app_state.policy(policy_path), source=source, model=model,
                         category=category, limit=limit)
    if app_state.json_output:
        print_json([row.to_json() for row in rows])
        return
    if not rows:
        filtered = any(v is not None for v in (source, model, category)) and bool(
            list_evidence(app_state.store(), app_state.policy(policy_path), limit=1))
        typer.echo("Evidence: " + ("no current evidence matches these filters" if filtered else
                                   "no evidence stored yet; run 'recsys ingest lmsys' or 'recsys ingest mteb'"))
        return
    for name in sorted({r.source for r in rows}):
        headers, cells = _COLUMNS.get(name, _COLUMNS[""])
        print_table(f"Evidence: {name}", headers, (cells(r) for r in rows if r.source == name),
                    names=headers[:1], no_wrap=headers[1:])


def _who(row: "EvidenceRow") -> str:
    """The upstream name, and the candidate it maps to on a line of its own (saves a column at 80)."""
    from recommender_core.printable import printable

    if row.candidate is None or row.candidate.lower() == row.model.lower():
        return printable(row.model)
    return Escaped(f"{printable(row.model)}\n\u2192{printable(row.candidate)}")


def _bounds(row: "EvidenceRow") -> str | None:
    if row.lower is None and row.upper is None:
        return None
    return f"{format_value(row.lower)}..{format_value(row.upper)}"


# Per source, the columns a person needs (the JSON output has every field): at most five, so a table
# fits an 80-column terminal with only long model names wrapping.
_COLUMNS: "dict[str, tuple[list[str], Callable[[EvidenceRow], Sequence[Any]]]]" = {
    "lmsys": (["model \u2192 candidate", "category", "rating", "lower..upper", "votes"],
              lambda r: [_who(r), r.category, r.value, _bounds(r), r.samples]),
    "mteb": (["model \u2192 candidate", "task", "type", "score"],
             lambda r: [_who(r), r.category, r.task_type, r.value]),
    "": (["model \u2192 candidate", "category", "value", "lower..upper", "samples"],
         lambda r: [_who(r), r.category, r.value, _bounds(r), r.samples]),
}


def runs_command(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--source", help="Only runs of this source (lmsys, mteb, litellm, or score).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """List ingest and scoring runs, newest first, with status and row counts."""
    from recommender_core.sources import check_source_name
    from recommender_core.store.runs import RUN_SOURCES_BESIDES_EVIDENCE, list_runs

    app_state = state(ctx, json_output=json_output)
    check_source_name(source, also=RUN_SOURCES_BESIDES_EVIDENCE)
    runs = list_runs(app_state.store(), source=source, limit=limit)
    if app_state.json_output:
        print_json([r.to_json() for r in runs])
        return
    print_table(
        "Runs (times UTC)", ["id", "source", "status", "started", "version", "rows", "error"],
        ([r.id, r.source, r.status, format_time(r.started_at), one_line(r.source_version or "-", VERSION_WIDTH),
          f"{r.rows_accepted}/{r.rows_rejected}", r.error or ""] for r in runs),
        empty="no runs recorded yet", no_wrap=("id", "status", "started", "version", "rows"),
        names=("source",), clip="error",
    )
    failed = [r for r in runs if r.error]
    if failed and app_state.verbose:
        out = console()
        for r in failed:
            out.print(f"run {r.id} ({r.source}) error: {r.error}", markup=False)
    elif failed:
        typer.echo("Errors are cut to one line: 'recsys -v runs' prints them whole (so does --json).")
