"""Text for people: control characters escaped, so data can never drive an operator's terminal.

Model names, categories, versions and error messages come from upstream files, mirrors, policies and
case files. Printed raw, an upstream model name holding ``ESC[31m`` or a CR would recolour or rewrite
the operator's terminal (also when piped into a pager or a log). Every human-readable renderer of the
CLI (tables, the error line, route, route-test, snapshot, ingest summaries) passes data through
``printable``; ``--json`` output does not (JSON escapes control characters itself, and its strings stay
exactly as stored).

Escaped: C0 controls (TAB, LF and CR included: a value is one line), DEL, C1 controls, and the
Unicode bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069), which can reorder what a
terminal shows. Each becomes a visible escape: ``\\x1b``, ``\\n``, ``\\u202e``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# typing's import costs milliseconds of the fast ``recsys route`` path: the names are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["printable", "printable_doc"]

_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``str(text)`` with every control character shown as an escape (see the module docstring)."""
    value = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, value) if _UNSAFE.search(value) else value


def printable_doc(document: Any) -> Any:
    """A copy of a JSON-like document whose every string (keys too) went through ``printable``."""
    if isinstance(document, str):
        return printable(document)
    if isinstance(document, Mapping):
        return {printable_doc(k): printable_doc(v) for k, v in document.items()}
    if isinstance(document, list | tuple):
        return [printable_doc(v) for v in document]
    return document
