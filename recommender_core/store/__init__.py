"""The recsys store: engine, tables, migrations, job locks and run bookkeeping.

``Store`` and ``UpgradeResult`` resolve on first use, so the light modules of this package
(``store.revision``) import without SQLAlchemy.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: the light modules of this package stay light
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Store", "UpgradeResult"]

if TYPE_CHECKING:  # pragma: no cover - what type checkers see for the lazy names
    from .engine import Store, UpgradeResult


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'recommender_core.store' has no attribute {name!r}")
    from . import engine

    value = getattr(engine, name)
    globals()[name] = value
    return value
