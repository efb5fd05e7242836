"""``recsys ingest``: ``litellm`` (telemetry) plus one subcommand per registered evidence source.

The source subcommands are built from the source registry: each gets ``--source``, ``--force``,
``--dry-run``, ``--policy`` and ``--json``, plus the options its plugin declares. Adding a source
adds its command here without touching this file.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from recommender_core.printable import printable

from ._base import JsonOption, PolicyOption, RecsysTyper, cronjob, print_json, state

if TYPE_CHECKING:
    from typer import _click

    from recommender_core.sources.base import IngestResult, Source


class _LazySourceCommands(dict[str, "_click.Command"]):
    """The ``ingest`` group's commands: ``litellm`` at once, the source commands when first looked at,
    so ``recsys --help`` imports no source plugin. (A dict, as click and the tests expect.)"""

    _loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for name, command in _source_commands().items():
                dict.__setitem__(self, name, command)

    def __getitem__(self, name: str) -> _click.Command:
        self._load()
        return dict.__getitem__(self, name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return dict.__contains__(self, name)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load()
        return dict.__len__(self)

    def get(self, name: str, default: Any = None) -> Any:
        self._load()
        return dict.get(self, name, default)

    def keys(self) -> Any:
        self._load()
        return dict.keys(self)

    def items(self) -> Any:
        self._load()
        return dict.items(self)

    def values(self) -> Any:
        self._load()
        return dict.values(self)


class _IngestGroup(TyperGroup):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazySourceCommands(self.commands)


app = RecsysTyper(cls=_IngestGroup)

# Flag hints the core leaves to the CLI (the library knows no flags).
UNCHANGED_HINT = "use --force to ingest it again"


@contextmanager
def download_progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int, int | None], None]] | None]:
    """A rich progress bar on stderr when it is a terminal; ``None`` (no progress) otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as progress:

        def factory(label: str) -> Callable[[int, int | None], None]:
            task = progress.add_task(label, total=None)

            def update(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            return update

        yield factory


def render_ingest(plugin: type[Source], result: IngestResult, *, json_output: bool) -> None:
    """The one rendering of an ingest result: a JSON document, or a summary for people (what happened,
    how many rows, why rows were rejected or skipped, and the source's own notes)."""
    if json_output:
        print_json(plugin.result_document(result))
        return
    if result.status == "unchanged":
        typer.echo(f"{result.source}: source version {printable(result.source_version)} is already ingested; "
                   f"nothing to do ({UNCHANGED_HINT}).")
        return
    verb = {"success": "ingested", "dry-run": "validated (dry run, nothing written)"}.get(result.status,
                                                                                          result.status)
    typer.echo(f"{result.source}: {verb} {result.rows_accepted} rows from version {printable(result.source_version)}"
               + (f" as run {result.run_id}" if result.run_id is not None else "") + ".")
    for title, counts in (("rejected", result.rejected_reasons), ("skipped", result.skipped)):
        if counts:
            typer.echo(f"  {title}: " + ", ".join(f"{reason}: {n}" for reason, n in
                                                  sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))
    for line in plugin.notes(result):
        typer.echo(f"  {printable(line)}")


def _run(name: str, ctx: typer.Context, *, source: str | None, force: bool, dry_run: bool, policy: str | None,
         json_output: bool, params: dict[str, Any]) -> None:
    from recommender_core.sources import get_source
    from recommender_core.sources.base import IngestOptions

    plugin_cls = get_source(name)
    app_state = state(ctx, json_output=json_output)
    settings = app_state.settings()
    options = IngestOptions(mirror=source, force=force, dry_run=dry_run, keep_runs=settings.keep_runs)
    chosen = {key: value for key, value in params.items() if value not in (None, False)}
    with download_progress(not app_state.json_output) as progress:
        plugin = plugin_cls(settings=settings, policy=app_state.policy(policy), progress=progress, **chosen)
        try:
            result = plugin.run(app_state.store(), options)
        finally:
            plugin.close()
    if app_state.report is not None and result.status != "dry-run":
        app_state.report.record_ingest(name, rows=result.rows_accepted, rejected=result.rows_rejected)
    render_ingest(plugin_cls, result, json_output=app_state.json_output)


def _source_command(plugin: type[Source]) -> Callable[..., None]:
    """A Typer command for ``plugin``: the shared options plus those the plugin declares."""
    declared = {option.name for option in plugin.options}

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        params = {key: kwargs.pop(key) for key in list(kwargs) if key in declared}
        _run(plugin.name, ctx, params=params, **kwargs)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("source", keyword, default=None, annotation=Annotated[
            str | None, typer.Option("--source", help=plugin.mirror_help)]),
        inspect.Parameter("force", keyword, default=False, annotation=Annotated[
            bool, typer.Option("--force", help="Ingest even if the source version is unchanged.")]),
        inspect.Parameter("dry_run", keyword, default=False, annotation=Annotated[
            bool, typer.Option("--dry-run", help="Parse and validate; write nothing.")]),
    ]
    for option in plugin.options:
        if option.kind == "text-list":
            parameters.append(inspect.Parameter(option.name, keyword, default=None, annotation=Annotated[
                list[str] | None, typer.Option(option.flag, help=option.help)]))
        else:
            parameters.append(inspect.Parameter(option.name, keyword, default=False, annotation=Annotated[
                bool, typer.Option(option.flag, help=option.help)]))
    parameters += [inspect.Parameter("policy", keyword, default=None, annotation=PolicyOption),
                   inspect.Parameter("json_output", keyword, default=False, annotation=JsonOption)]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    command.__name__ = f"ingest_{plugin.name}"
    command.__doc__ = plugin.summary
    return command


def _source_commands() -> dict[str, _click.Command]:
    """One click command per registered source, built from the plugins' declarations."""
    from recommender_core.sources import load_sources

    commands: dict[str, _click.Command] = {}
    for name, plugin in load_sources().items():
        single = RecsysTyper()
        command = _source_command(plugin)
        pushes = plugin.cronjob or plugin.pushes_metrics
        single.command(name)(cronjob(plugin.job)(command) if pushes else command)
        commands[name] = typer.main.get_command(single)
    return commands


# ``litellm`` registers itself on import; the source commands come from the registry (above).
from . import ingest_litellm  # noqa: E402,F401
