"""The recsys command line: thin Typer commands over ``recommender_core``.

The command modules deliberately do not use ``from __future__ import annotations``: Typer reads
every command's annotations when it builds the command tree, and string annotations cost an
``eval`` each (about a third of ``recsys --help``'s own time, bench/bench_startup.py).
"""
