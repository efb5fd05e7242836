"""Shared CLI plumbing: the error handler, the global state, and option aliases.

Nothing heavy is imported at module level: ``recsys --help`` must stay as cheap as importing typer.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from recommender_core.clock import Clock
    from recommender_core.config import Settings
    from recommender_core.diagnostics.metrics import JobReport
    from recommender_core.policy import Policy
    from recommender_core.store import Store

F = TypeVar("F", bound=Callable[..., Any])

# The flags that go with an error's ``option`` (the core names settings, never flags).
FLAG_HINTS: dict[str, str] = {
    "mirror": "The mirror is set with --source.",
    "all_models": "Run --all without --source.",
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def handle_errors(func: F) -> F:
    """The single place where library errors become an exit code and one line on stderr."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recommender_core.errors import RecsysError
        from recommender_core.printable import printable
        from recommender_core.redact import redact_text

        try:
            return func(*args, **kwargs)
        except RecsysError as exc:
            hint = FLAG_HINTS.get(exc.option or "")
            message = exc.message + (f" {hint}" if hint else "")
            typer.echo(f"{type(exc).__name__}: {printable(_one_line(redact_text(message)))}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


class RecsysTyper(typer.Typer):
    """A Typer whose every command goes through ``handle_errors``."""

    def __init__(self, **kwargs: Any) -> None:
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
    """Mark a command as a CronJob: one metrics push when it ends, success or failure (DESIGN.md 9).

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


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    import json

    sys.stdout.write(json.dumps(document, indent=2, default=str, allow_nan=False) + "\n")


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
PolicyOption = Annotated[
    str | None, typer.Option("--policy", help="Policy file (default: RECSYS_POLICY, else the packaged one).")
]
