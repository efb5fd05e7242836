"""``recsys ingest litellm``: a LiteLLM proxy's SpendLogs into telemetry."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from ._base import JsonOption, cronjob, print_json, state
from .ingest import app


def _parse_since(value: str | None) -> datetime | None:
    from recommender_core.errors import UsageError

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since '{value}' is not an ISO 8601 time; use e.g. 2026-11-01T00:00:00Z.") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@app.command("litellm")
@cronjob("ingest-litellm")
def ingest_litellm(
    ctx: typer.Context,
    spend_logs_url: Annotated[str | None, typer.Option(
        "--spend-logs-url", help="DSN of the LiteLLM proxy database holding LiteLLM_SpendLogs (for local use: "
                                 "argv is visible to every process; set RECSYS_SPEND_LOGS_URL instead)."
    )] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Import requests that started at or after this ISO 8601 time (UTC unless it has "
                        "an offset); default: from the last import."
    )] = None,
    json_output: JsonOption = False,
) -> None:
    """Import a LiteLLM proxy's spend logs as telemetry, incrementally."""
    from recommender_core.clock import iso_utc
    from recommender_core.errors import UsageError
    from recommender_core.telemetry.spend_logs import SOURCE, ingest_spend_logs

    app_state = state(ctx, json_output=json_output)
    start = _parse_since(since)
    settings = app_state.settings()
    dsn = spend_logs_url or (settings.spend_logs_url.get_secret_value() if settings.spend_logs_url else None)
    if not dsn:
        raise UsageError("No LiteLLM proxy database given: set RECSYS_SPEND_LOGS_URL to its DSN "
                         "(or pass --spend-logs-url for local use).")
    result = ingest_spend_logs(app_state.store(), dsn=dsn, since=start, keep_runs=settings.keep_runs)
    if app_state.report is not None:
        app_state.report.record_ingest(SOURCE, rows=result.inserted, rejected=result.rejected)
    if app_state.json_output:
        from recommender_core.sources.base import IngestResult, ingest_document

        cursor = iso_utc(result.cursor) if result.cursor else None
        print_json(ingest_document(IngestResult(
            source=SOURCE, status="success", source_version=cursor or "", run_id=result.run_id,
            rows_accepted=result.inserted, rows_rejected=result.rejected, rejected_reasons=result.rejected_reasons,
            skipped={"already_stored": result.skipped} if result.skipped else {},
            details={"read": result.read, "cursor": cursor})))
    else:
        rejected = ""
        if result.rejected:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.rejected_reasons.items()))
            rejected = f", {result.rejected} rejected ({reasons})"
        typer.echo(f"Imported {result.inserted} new spend-log rows ({result.read} read, {result.skipped} "
                   f"already stored{rejected}); cursor {iso_utc(result.cursor) if result.cursor else 'unset'}.")
