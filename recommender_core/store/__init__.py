"""The recsys store: engine, tables, migrations, job locks and run bookkeeping."""

from __future__ import annotations

from .engine import Store, UpgradeResult

__all__ = ["Store", "UpgradeResult"]
