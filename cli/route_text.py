"""The human output of ``recsys route``, as plain text: the one renderer of both ways to the command.

``recsys route`` runs through the Typer command (``routing.route_command``) or, for its plain common
form, through the fast path (``fast_route``); both print what ``route_text`` returns, so their output
is the same by construction (and a test runs both on the same stores to check it).

The rules are those of every table (``_render``): an 80-column terminal (or the terminal's width),
model names folded only after ``/``, ``-`` or a space, figures never wrapped, utilities and their
components with ``SCORE_DIGITS`` decimals, every value through ``printable``. Plain text rather than
rich: importing rich took longer than the whole fast command may.
"""

from __future__ import annotations

import sys

from ._render import MIN_NAME_WIDTH, NAME_WIDTH, fold_name, format_score, format_value

# typing's import costs milliseconds of the fast ``recsys route`` path: the names are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SHOWN_ROWS", "route_text", "terminal_width"]

# Rows of each list that the human output of ``route`` shows (``--json`` has them all).
SHOWN_ROWS = 20
GAP = "  "


def terminal_width() -> int:
    """The terminal's width when stdout is one, else 80."""
    try:
        if sys.stdout.isatty():
            import os

            return max(os.get_terminal_size(sys.stdout.fileno()).columns, 40)
    except (AttributeError, OSError, ValueError):
        pass
    return 80


def wrap(text: str, width: int) -> list[str]:
    """``text`` on lines of at most ``width`` characters, broken at spaces; a longer word (a long model
    name) is folded after ``/`` or ``-`` as in a table, never inside a token."""
    lines: list[str] = []
    current = ""
    parts: list[str] = []
    words = text.split(" ")  # each word with the space after it (no regex: re.compile costs at start-up)
    for word in [w + " " for w in words[:-1]] + words[-1:]:
        bare = word.rstrip(" ")
        if len(bare) <= width:
            parts.append(word)
            continue
        pieces = fold_name(bare, width).split("\n")
        parts += [*pieces[:-1], pieces[-1] + word[len(bare):]]
    for part in parts:
        if current and len(current) + len(part.rstrip(" ")) > width:
            lines.append(current.rstrip(" "))
            current = part.lstrip(" ")
        else:
            current += part
    lines.append(current.rstrip(" "))
    return lines


def _longest(text: str) -> int:
    return max(len(line) for line in text.split("\n"))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, width: int, empty: str = "(none)",
          names: Sequence[str] = (), wraps: str | None = None) -> list[str]:
    """A titled table: a header, a rule, then the rows; ``names`` columns fold at separators, the
    ``wraps`` column wraps at spaces into what the others leave, every other column stays whole."""
    if not rows:
        return [f"{title}: {empty}"]
    at = columns.index(wraps) if wraps is not None else None
    widths: list[int] = []
    folded: list[list[str]] = []
    for fold in range(NAME_WIDTH, MIN_NAME_WIDTH - 1, -2):  # the widest folds that fit
        folded = [[fold_name(v, fold) if c in names else v for c, v in zip(columns, row, strict=True)]
                  for row in rows]
        widths = [max(len(c), *(_longest(r[i]) for r in folded)) for i, c in enumerate(columns)]
        if at is None:
            if sum(widths) + len(GAP) * (len(columns) - 1) <= width:
                break
            continue
        shortest = max(len(columns[at]), *(len(w) for r in folded for w in r[at].split()))
        if sum(widths) - widths[at] + len(GAP) * (len(columns) - 1) + min(shortest, widths[at]) <= width:
            break
    if at is not None:
        others = sum(widths) - widths[at] + len(GAP) * (len(columns) - 1)
        shortest = max(len(columns[at]), *(len(w) for r in folded for w in r[at].split()))
        room = max(width - others, shortest)
        for r in folded:
            r[at] = "\n".join(wrap(" ".join(r[at].split()), room))
        widths[at] = max(len(columns[at]), *(_longest(r[at]) for r in folded))
    lines = [title, GAP.join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "─" * (sum(widths) + len(GAP) * (len(columns) - 1))]
    for r in folded:
        cells = [cell.split("\n") for cell in r]
        for k in range(max(len(c) for c in cells)):
            lines.append(GAP.join((c[k] if k < len(c) else "").ljust(w)
                                  for c, w in zip(cells, widths, strict=True)).rstrip())
    return lines


def _more(count: int, what: str) -> list[str]:
    return [f"... and {count - SHOWN_ROWS} more {what} (--json lists all {count})"] if count > SHOWN_ROWS else []


def route_text(task: str, primary: str, fallbacks: Sequence[str], *, strategy: str, source: str,
               candidates: Sequence[tuple[str, float | None, float | None, float | None, float | None, float | None]],
               excluded: Sequence[tuple[str, str]], width: int) -> str:
    """The whole human output of one decision. ``candidates``: (model, utility, quality, cost, latency,
    reliability) in order; ``excluded``: (model, reason). A terminal shows the head of each list
    (rendering 500 rows took long and more screens than anyone reads); ``--json`` prints all of them."""
    from recommender_core.printable import printable

    lines = wrap(printable(f"{task}: {primary}  (strategy {strategy}, from {source})"), width)
    lines += wrap(printable(f"fallbacks: {', '.join(fallbacks) or '(none)'}"), width)
    lines += table("Candidates, in order", ["#", "model", "utility", "quality", "cost", "latency", "reliab."],
                   [[str(i + 1), format_value(c[0]), *(format_score(v) for v in c[1:])]
                    for i, c in enumerate(candidates[:SHOWN_ROWS])],
                   width=width, empty="(not scored: static order)", names=("model",))
    lines += _more(len(candidates), "candidates")
    shown = [[format_value(model), format_value(reason)] for model, reason in excluded[:SHOWN_ROWS]]
    lines += table("Excluded", ["model", "reason"], shown, width=width, names=("model",), wraps="reason")
    lines += _more(len(excluded), "excluded models")
    return "\n".join(lines) + "\n"
