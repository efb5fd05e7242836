"""The ``recsys`` console script: the fast ``route`` path when it applies, else the Typer CLI.

Imports nothing but the standard library until it knows which: ``recsys route TASK`` in its plain
form is served by ``fast_route`` without Typer, SQLAlchemy or pydantic; everything else (and every
error of ``route``) runs through ``app``, the one place where commands, messages and exit codes live.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    if "route" in argv[:4]:
        from .fast_route import try_route

        if try_route(argv):
            return
    from .app import main as full

    full()
