"""The one way recsys imports litellm: with its model cost map read from the package.

litellm fetches its model cost map from GitHub when it is imported, unless the environment variable
``LITELLM_LOCAL_MODEL_COST_MAP`` is ``True`` (it reads the variable at import only; a runtime
reload is a proxy admin action). recsys never lets an import reach the network, and no recsys module
changes the environment at import: the modules that import litellm do so inside ``local_cost_map()``,
which sets the variable for the duration of the import only (a value the user set is kept) and
restores the environment afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["COST_MAP_ENV", "local_cost_map"]

COST_MAP_ENV = "LITELLM_LOCAL_MODEL_COST_MAP"


@contextmanager
def local_cost_map() -> Iterator[None]:
    """Import litellm inside this block: its cost map comes from the package, not the network."""
    previous = os.environ.get(COST_MAP_ENV)
    if previous is None:
        os.environ[COST_MAP_ENV] = "True"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(COST_MAP_ENV, None)
