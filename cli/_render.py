"""Rendering helpers: rich tables for people (imported lazily), JSON for machines.

Every value a table shows goes through ``recommender_core.printable`` (control characters escaped),
and cells are plain text, never rich markup, so data cannot style or rewrite the terminal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from recommender_core.printable import printable


class Escaped(str):
    """Text already made printable (with line breaks of the renderer's own): shown as it is."""

    __slots__ = ()


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Escaped):
        return str(value)
    return printable(value)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                empty: str = "(none)", no_wrap: Collection[str] = ()) -> None:
    """A rich table on stdout that fits an 80-column terminal (cells wrap, never truncate values).

    Columns named in ``no_wrap`` keep their values on one line while others can give way (they still
    fold if the terminal is too narrow for them alone).
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in no_wrap)
    count = 0
    for row in rows:
        table.add_row(*(Text(format_value(v)) for v in row))
        count += 1
    console = Console(markup=False)
    if count == 0:
        console.print(f"{title}: {empty}")
    else:
        console.print(table)


def unmapped_tasks_line(names: Sequence[str], *, shown: int = 5) -> str:
    """One line naming the MTEB tasks the task map does not know, and what to do about it."""
    from recommender_core.sources.mteb import unmapped_tasks_text

    return unmapped_tasks_text(names, shown=shown)
