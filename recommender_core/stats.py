"""Small exact statistics shared by rollups, scoring and the snapshot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["percentile", "percentile_from_ranks"]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Exact percentile ``q`` (0-100) of already sorted values, linear interpolation between ranks.

    The same definition as numpy's default (``method="linear"``) and Postgres'
    ``percentile_cont``, so values computed in SQL and in Python agree.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction)


def percentile_from_ranks(at_rank: Mapping[int, float], n: int, q: int) -> float | None:
    """``percentile`` of ``n`` sorted values from only the two ranks it reads (0-based), for a
    database that picked them: ``(n - 1) * q // 100`` and the one after. Integer arithmetic, so
    SQL and Python choose the same ranks.

    >>> percentile_from_ranks({1: 2.0, 2: 3.0}, 4, 50)
    2.5
    """
    if n == 0:
        return None
    low, remainder = divmod((n - 1) * q, 100)
    high = min(low + 1, n - 1)
    return at_rank[low] + (at_rank[high] - at_rank[low]) * remainder / 100
