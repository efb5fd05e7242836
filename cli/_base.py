"""Shared CLI plumbing: the error handler, the global state, and option aliases.

Nothing heavy is imported at module level: ``recsys --help`` must stay as cheap as importing typer.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.core

if TYPE_CHECKING:
    from recommender_core.clock import Clock
    from recommender_core.config import Settings
    from recommender_core.diagnostics.metrics import JobReport
    from recommender_core.policy import Policy
    from recommender_core.store import Store

F = TypeVar("F", bound=Callable[..., Any])

# The flags that go with an error's ``option`` (the core names settings, never flags).
# ``unreachable`` is the hint for a network failure (no route, DNS, timeout: ``SourceError.unreachable``).
FLAG_HINTS: dict[str, str] = {
    "mirror": "The mirror is set with --source.",
    "all_models": "Run --all without --source.",
    "unreachable": ("Without network access, read a local mirror: pass --source PATH|URL or set the mirror "
                    "variables ({variables})."),
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _root_state(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = kwargs.get("ctx") or next((a for a in args if isinstance(a, typer.Context)), None)
    return ctx.find_root().obj if ctx is not None else None


def _json_requested(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether the failing command runs with --json (before or after the subcommand)."""
    return bool(kwargs.get("json_output") or getattr(_root_state(args, kwargs), "json_output", False))


def cli_hint(exc: BaseException) -> str:
    """The remediation that names a CLI flag or setting (FLAG_HINTS): it belongs here, not in the core."""
    from recommender_core.errors import RecsysError, SourceError

    hints = []
    option = exc.option if isinstance(exc, RecsysError) else None
    if option and option in FLAG_HINTS:
        hints.append(FLAG_HINTS[option])
    if isinstance(exc, SourceError) and exc.unreachable:
        from recommender_core.sources import available_sources

        # The failing source's own variable when the error names it; else every source's.
        names = [exc.source] if exc.source in available_sources() else list(available_sources())
        variables = ", ".join(f"RECSYS_{name.upper()}_URL" for name in names)
        hints.append(FLAG_HINTS["unreachable"].format(variables=variables))
    return "".join(f" {hint}" for hint in hints)


def error_document(exc: BaseException, *, exit_code: int, message: str) -> dict[str, Any]:
    """The JSON document a failure prints on stdout under --json (docs/json.md, error.schema.json)."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": message, "exit_code": exit_code}
    excluded = getattr(exc, "excluded", None)
    if excluded:
        error["excluded"] = [{"model": model, "reason": reason} for model, reason in excluded]
    return {"error": error}


def report_failure(exc: BaseException, *, exit_code: int, message: str, as_json: bool, verbose: int = 0) -> None:
    """One line on stderr (a few for NoCandidateError; its detail under -v), and under --json the
    error document on stdout as well."""
    lines = [_one_line(line) for line in message.splitlines() if line.strip()] or [""]
    if not getattr(exc, "multiline", False):
        lines = [" ".join(lines)]
    lines[0] = f"{type(exc).__name__}: {lines[0]}"
    from recommender_core.printable import printable

    # Escaped for the terminal (a hostile name cannot rewrite it); the JSON document stays exact.
    for line in lines:
        typer.echo(printable(line), err=True)
    detail = getattr(exc, "detail", None)
    if detail and verbose > 0:
        for line in str(detail).splitlines():
            typer.echo(printable(line), err=True)
    if as_json:
        print_json(error_document(exc, exit_code=exit_code, message="\n".join(lines)[len(type(exc).__name__) + 2:]))


def handle_errors(func: F) -> F:
    """The single place where library errors become an exit code and one line on stderr."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recommender_core.errors import RecsysError
        from recommender_core.redact import redact_text

        try:
            return func(*args, **kwargs)
        except RecsysError as exc:
            report_failure(exc, exit_code=exc.exit_code, message=redact_text(exc.message + cli_hint(exc)),
                           as_json=_json_requested(args, kwargs),
                           verbose=int(getattr(_root_state(args, kwargs), "verbose", 0) or 0))
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


class RecsysGroup(typer.core.TyperGroup):
    """The root group: under --json a usage error (exit 2) also prints the error document on stdout."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        # typer vendors click (typer._click): its exceptions are the ones raised while parsing.
        from typer._click.exceptions import ClickException, UsageError

        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        try:
            result = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except ClickException as exc:
            exc.show()
            print_json({"error": {"type": "UsageError" if isinstance(exc, UsageError) else type(exc).__name__,
                                  "message": _one_line(exc.format_message()), "exit_code": exc.exit_code}})
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


class RecsysTyper(typer.Typer):
    """A Typer whose every command goes through ``handle_errors``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", RecsysGroup)
        kwargs.setdefault("no_args_is_help", True)
        # Plain (click) help and errors: fast to start, and errors end in one "Error: ..." line.
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(func: F) -> F:
            register(handle_errors(func))
            return func

        return decorator


def _system_clock() -> Clock:
    from recommender_core.clock import SYSTEM_CLOCK

    return SYSTEM_CLOCK


@dataclass
class AppState:
    """What the root callback parsed; commands read it through ``state(ctx)``.

    ``clock`` is where every command gets "now" (through the store it opens). An embedding program
    or a test seeds it: ``app(obj=AppState(clock=FixedClock(...)))`` or ``CliRunner().invoke(app, args,
    obj=...)``; the root callback keeps the seeded clock.
    """

    database_url: str | None = None
    json_output: bool = False
    verbose: int = 0
    clock: Clock = field(default_factory=_system_clock)
    _settings: Settings | None = None

    def settings(self, **overrides: object) -> Settings:
        from recommender_core.config import Settings

        if self._settings is None or overrides:
            settings = Settings.load(database_url=self.database_url, **overrides)
            if overrides:
                return settings
            self._settings = settings
        return self._settings

    _stores: list[Store] = field(default_factory=list)
    # Set by @cronjob commands; they add ingest counts and gauges to it while they run.
    report: JobReport | None = None

    def store(self) -> Store:
        """The configured store; closed with the command (``close``)."""
        from recommender_core.store import Store

        store = Store.from_settings(self.settings(), clock=self.clock)
        self._stores.append(store)
        return store

    def close(self) -> None:
        """Release every connection the command opened."""
        while self._stores:
            self._stores.pop().dispose()

    def policy(self, path: str | None = None) -> Policy:
        from recommender_core.policy_cache import cached_policy

        chosen = path or self.settings().policy
        return cached_policy(chosen)  # parsed once per file version, however often a command asks


def state(ctx: typer.Context, *, json_output: bool = False) -> AppState:
    """The app state; a command's own ``--json`` turns JSON output on as well."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
        root.call_on_close(root.obj.close)
    if json_output:
        root.obj.json_output = True
    return root.obj


def cronjob(command: str) -> Callable[[F], F]:
    """Mark a command as a CronJob: one metrics push when it ends, success or failure (docs/metrics.md).

    Apply it under ``@app.command``. The command reads ``state(ctx).report`` to add ingest counts
    and gauges. Usage errors (exit 2) never reach the command, so they push nothing; neither does
    a run with ``--dry-run`` (a ``dry_run`` parameter that is true). A run that found its job's
    lock held (exit 75) did nothing: it pushes only its skip timestamp, no failure.
    """

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from recommender_core.diagnostics.metrics import JobReport, push_job_report
            from recommender_core.errors import EXIT_LOCKED, EXIT_OK, EXIT_RUNTIME, RecsysError

            ctx = kwargs.get("ctx") or next((a for a in args if isinstance(a, typer.Context)), None)
            app_state = state(ctx) if ctx is not None else AppState()
            report = app_state.report = JobReport(command=command, clock=app_state.clock)
            exit_code = EXIT_RUNTIME
            try:
                result = func(*args, **kwargs)
                exit_code = EXIT_OK
                return result
            except (typer.Exit, RecsysError) as exc:
                # RecsysError becomes its exit code in handle_errors, which wraps this wrapper.
                exit_code = exc.exit_code
                raise
            finally:
                report.finish(success=exit_code == EXIT_OK, skipped=exit_code == EXIT_LOCKED)
                try:
                    settings = app_state.settings()
                except Exception:
                    settings = None
                # A dry run changes nothing, so it must not overwrite the last real run's metrics.
                if settings is not None and settings.pushgateway_url and not kwargs.get("dry_run"):
                    password = settings.pushgateway_password
                    push_job_report(report, gateway_url=settings.pushgateway_url,
                                    username=settings.pushgateway_username,
                                    password=password.get_secret_value() if password else None,
                                    timeout=settings.pushgateway_timeout_seconds)

        return wrapper  # type: ignore[return-value]

    return decorator


def _json_default(value: Any) -> Any:
    """Times as ISO 8601 UTC with ``Z`` (docs/json.md); anything else JSON cannot hold as its text."""
    from datetime import datetime

    if isinstance(value, datetime):
        from recommender_core.clock import iso_utc

        return iso_utc(value)
    return str(value)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    import json

    sys.stdout.write(json.dumps(document, indent=2, default=_json_default, allow_nan=False) + "\n")


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
PolicyOption = Annotated[
    str | None, typer.Option("--policy", help="Policy file (default: RECSYS_POLICY, else the packaged one).")
]
