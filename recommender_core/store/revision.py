"""The schema version recsys expects: the newest migration's id, read without Alembic or SQLAlchemy.

Light on purpose (``os`` only): the CLI's fast ``recsys route`` path compares the version
stored in ``alembic_version`` with this id before it reads anything, as ``Store.ensure_ready`` does.
"""

from __future__ import annotations

import os

__all__ = ["MIGRATIONS_DIR", "head_revision"]

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
_HEAD: dict[tuple[tuple[str, int, int], ...], str] = {}


def _assignments(text: str) -> dict[str, str | None]:
    """The ``revision`` and ``down_revision`` of a migration file: module-level lines such as
    ``revision: str = "0004"`` or ``down_revision = None`` (a tuple of parents is not used here)."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        if not line.startswith(("revision", "down_revision")):
            continue
        target, sep, value = line.partition("=")
        name = target.split(":", 1)[0].strip()
        if not sep or name not in ("revision", "down_revision") or name in found:
            continue
        value = value.split("#", 1)[0].strip()
        quoted = len(value) > 2 and value[0] == value[-1] and value[0] in "'\""
        found[name] = value[1:-1] if quoted else None
    return found


def head_revision() -> str:
    """The id of the newest migration, read from the migration files without importing Alembic.

    Every command that opens the store compares the schema version it finds with this id; importing
    Alembic and building its script directory for that cost about 0.2 s per command. The files are
    read for their ``revision``/``down_revision`` lines (a test checks the answer against Alembic's
    ``ScriptDirectory``), and the result is cached per file identity.
    """
    folder = os.path.join(MIGRATIONS_DIR, "versions")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".py"))
    identity = tuple((os.path.basename(f), (st := os.stat(f)).st_mtime_ns, st.st_size) for f in files)
    cached = _HEAD.get(identity)
    if cached is not None:
        return cached
    revisions: set[str] = set()
    parents: set[str] = set()
    for file in files:
        with open(file, encoding="utf-8") as handle:
            found = _assignments(handle.read())
        if revision := found.get("revision"):
            revisions.add(revision)
        if parent := found.get("down_revision"):
            parents.add(parent)
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the packaged migrations have {len(heads)} heads ({', '.join(heads)}), not one")
    _HEAD.clear()
    _HEAD[identity] = heads[0]
    return heads[0]
