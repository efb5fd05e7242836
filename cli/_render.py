"""Rendering helpers: rich tables for people (imported lazily), JSON for machines.

Every table fits an 80-column terminal by the same rules: model and evidence names fold only after
``/``, ``-`` or a space (never inside a token), errors are cut to one line ending in ``…`` (the full
text is under ``-v`` and in ``--json``), dates and figures never wrap, and utilities and their
components show ``SCORE_DIGITS`` decimals in every command.

Every value a table shows also goes through ``recommender_core.printable`` (control characters escaped),
and cells are plain text, never rich markup, so data cannot style or rewrite the terminal.
"""

from __future__ import annotations

import re

from recommender_core.printable import printable

# typing's import costs milliseconds of the fast ``recsys route`` path: the names are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence
    from typing import Any

    from rich.console import Console

# Decimals of a utility or a component in [0, 1], in every table (route, snapshot).
SCORE_DIGITS = 3
# Names longer than this are folded onto several lines (at a separator) in a table cell.
NAME_WIDTH = 24
# ... and no narrower than this, however many columns the table has.
MIN_NAME_WIDTH = 12
_BREAK_AFTER = re.compile(r"[^/\- ]+[/\- ]*|[/\- ]+")


def plural(count: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


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


def format_score(value: Any) -> str:
    """A utility or a component: ``SCORE_DIGITS`` decimals, the same in every command."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.{SCORE_DIGITS}f}"
    return format_value(value)


def format_time(value: Any) -> str:
    """A time in a table: ``YYYY-MM-DD HH:MM`` in UTC, one unbreakable token."""
    from datetime import UTC, datetime

    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.strftime("%Y-%m-%d %H:%M")
    return format_value(value)


def fold_name(text: str, width: int = NAME_WIDTH) -> str:
    """``text`` on lines of at most ``width`` characters, broken only after ``/``, ``-`` or a space.

    A token longer than ``width`` stays whole on its own line (the column is made that wide).

    >>> fold_name("openrouter/meta-llama/llama-4-maverick-17b-128e-instruct")
    'openrouter/meta-llama/\\nllama-4-maverick-17b-\\n128e-instruct'
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for part in _BREAK_AFTER.findall(paragraph):
            if current and len(current) + len(part.rstrip(" ")) > width:
                lines.append(current.rstrip(" "))
                current = part
            else:
                current += part
        lines.append(current.rstrip(" "))
    return "\n".join(lines)


def one_line(text: str, width: int) -> str:
    """The first line of ``text`` in at most ``width`` characters, ending in ``…`` when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)].rstrip() + "…"


def _longest_line(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def console(width: int | None = None) -> Console:
    from rich.console import Console

    return Console(width=width, highlight=False, markup=False)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                empty: str = "(none)", no_wrap: Collection[str] = (), names: Collection[str] = (),
                clip: str | None = None, width: int | None = None) -> None:
    """A rich table on stdout that fits the terminal (80 columns and up).

    ``names`` columns fold at separators only; ``no_wrap`` columns (figures, dates) stay on one line;
    the ``clip`` column (an error) is cut to one line with ``…`` in the width the others leave; any
    other column wraps at spaces.
    """
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    out = console(width)
    raw = [[format_value(v) for v in row] for row in rows]
    if not raw:
        out.print(f"{title}: {empty}")
        return
    for row in raw:
        if len(row) != len(columns):
            raise ValueError(f"a row of {title!r} has {len(row)} cells for {len(columns)} columns")

    def build(cells: list[list[str]]) -> Table:
        widest = {c: max(_longest_line(c), *(_longest_line(r[i]) for r in cells)) for i, c in enumerate(columns)}
        # no vertical rules: two spaces between columns leave the most room for names and errors
        table = Table(title=title, title_justify="left", expand=False, box=box.SIMPLE_HEAD, pad_edge=False,
                      show_edge=False)
        for column in columns:
            if column in names:
                # as wide as its longest folded line, so rich never folds inside a token
                table.add_column(column, overflow="fold", min_width=widest[column])
            elif column == clip or column in no_wrap:
                table.add_column(column, no_wrap=True, overflow="ellipsis")
            else:
                table.add_column(column, overflow="fold")
        for r in cells:
            table.add_row(*(Text(c) for c in r))  # plain text: a name can never be read as rich markup
        return table

    clipped = columns.index(clip) if clip is not None else None

    def folded(fold_width: int, *, clip_to: int | None = None) -> list[list[str]]:
        cells = []
        for row in raw:
            cell = [fold_name(v, fold_width) if c in names else v for c, v in zip(columns, row, strict=True)]
            if clipped is not None:
                cell[clipped] = "" if clip_to is None else one_line(cell[clipped], clip_to)
            cells.append(cell)
        return cells

    def natural_width(cells: list[list[str]]) -> int:
        # measured unbounded: a measurement against the terminal is clamped to its width
        return Measurement.get(out, out.options.update_width(1_000_000), build(cells)).maximum

    # Names fold at separators, to the widest lines that let the table fit the terminal.
    fold_width = NAME_WIDTH
    while fold_width > MIN_NAME_WIDTH and natural_width(folded(fold_width)) > out.width:
        fold_width -= 2
    clip_to = None
    if clip is not None:
        # the clipped column gets what the others leave: measured with it empty (its header's width)
        clip_to = max(out.width - natural_width(folded(fold_width)) + len(clip), len(clip))
    out.print(build(folded(fold_width, clip_to=clip_to)))


def unmapped_tasks_line(names: Sequence[str], *, shown: int = 5) -> str:
    """One line naming the MTEB tasks the task map does not know, and what to do about it."""
    from recommender_core.sources.mteb import unmapped_tasks_text

    return unmapped_tasks_text(names, shown=shown)
