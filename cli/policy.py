"""``recsys policy check``: validate a policy and show what its names map to."""

from typing import Annotated

import typer

from ._base import JsonOption, RecsysTyper, print_json, state
from ._render import console, plural, print_table, unmapped_tasks_line

app = RecsysTyper()


@app.command("check")
def check(
    ctx: typer.Context,
    path: Annotated[str | None, typer.Argument(
        help="Policy file to check (default: RECSYS_POLICY, else the packaged default).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Validate a policy file and show what each candidate's evidence maps to."""
    from recommender_core.policy_check import check_policy

    app_state = state(ctx, json_output=json_output)
    policy = app_state.policy(path)
    report = check_policy(app_state.store(), policy)
    if app_state.json_output:
        print_json(report.to_json())
        return
    console().print(f"Policy {policy.source_path} is valid: {plural(len(policy.candidates), 'candidate')}, "
                    f"{plural(len(policy.tasks), 'task')} (hash {policy.hash[:12]}).", markup=False)
    print_table("Candidates", ["candidate", "kind", "evidence names"],
                ([c.name, c.kind, ", ".join(c.evidence_names) or "(none stored)"] for c in report.candidates),
                names=("candidate", "evidence names"), no_wrap=("kind",))
    print_table("Evidence names that match no candidate", ["source", "name", "nearest candidates"],
                ([u.source, u.name, ", ".join(u.suggestions)] for u in report.unmatched),
                names=("name", "nearest candidates"))
    for ref in report.unmatched_references:
        typer.echo(f"Warning: task {ref.task}: evidence {ref.reference} matches nothing in the current evidence; "
                   f"nearest: {', '.join(ref.nearest) or '(none)'}.", err=True)
    if report.unmapped_tasks:
        typer.echo(unmapped_tasks_line(report.unmapped_tasks, shown=len(report.unmapped_tasks)))
