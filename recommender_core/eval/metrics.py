"""The field's decision-quality metrics, on (mean cost per item, mean score) points.

- **AIQ** (RouterBench, Hu et al. 2024, arXiv 2403.12031): the upper convex hull of a router's points,
  keeping its non-decreasing part (from the cheapest point up to the best one), extended flat to
  ``max_cost`` (the largest cost among every router compared), trapezoid area from its first point,
  divided by ``max_cost``.
- **APGR** (RouteLLM, Ong et al. 2024, arXiv 2406.18665): the performance gap recovered,
  ``PGR = (q - q_cheap) / (q_best - q_cheap)``, integrated over the cost share
  ``x = (c - c_cheap) / (c_best - c_cheap)`` with the trapezoid rule over x from 0 to 1, as
  ``routellm/evals/evaluate.py`` does (a curve ending before x = 1 is extended flat, see ``apgr``);
  ``cheap`` is the cheapest single model and ``best`` the best-scoring one. With two models and a flat
  price per model, ``x`` is the share of calls to the strong model: exactly RouteLLM's definition. Points beyond
  ``x = 1`` are cut there (interpolated).
- **CPT(50%)** (RouteLLM): the smallest cost share at which the router's curve (points joined in cost
  order) recovers 50% of the gap; None when it never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

__all__ = ["aiq", "apgr", "cpt", "pgr_curve", "upper_hull"]

Point = tuple[float, float]


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def upper_hull(points: Sequence[Point]) -> list[Point]:
    """The non-decreasing part of the upper convex hull, cheapest point first.

    >>> upper_hull([(0, 0), (1, 0.8), (2, 0.7), (0.5, 0.2)])
    [(0, 0), (1, 0.8)]
    """
    ordered = sorted(set(points), key=lambda p: (p[0], -p[1]))
    hull: list[Point] = []
    for p in ordered:
        if hull and p[0] == hull[-1][0]:
            continue  # same cost, lower score: never on the upper hull
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    best = max(range(len(hull)), key=lambda i: (hull[i][1], -i)) if hull else 0
    return hull[: best + 1]


def aiq(points: Sequence[Point], max_cost: float) -> float:
    """RouterBench's AIQ of ``points`` over ``[first point's cost, max_cost]``, divided by ``max_cost``."""
    hull = upper_hull(points)
    if not hull or max_cost <= 0:
        return float(hull[-1][1]) if hull else 0.0
    area = 0.0
    for (c0, q0), (c1, q1) in pairwise(hull):
        area += (min(c1, max_cost) - min(c0, max_cost)) * (q0 + q1) / 2
    last_cost, last_quality = hull[-1]
    if last_cost < max_cost:
        area += (max_cost - last_cost) * last_quality
    return area / max_cost


def pgr_curve(points: Sequence[Point], cheap: Point, best: Point) -> list[Point]:
    """``(cost share, PGR)`` of ``points`` in cost order, cut at share 1."""
    span_c = best[0] - cheap[0]
    span_q = best[1] - cheap[1]
    if span_q == 0:
        return []
    curve = sorted(((c - cheap[0]) / span_c if span_c > 0 else 0.0, (q - cheap[1]) / span_q) for c, q in points)
    cut: list[Point] = []
    for i, (x, y) in enumerate(curve):
        if x <= 1.0:
            cut.append((x, y))
            continue
        if cut and cut[-1][0] < 1.0:
            x0, y0 = cut[-1]
            cut.append((1.0, y0 + (y - y0) * (1.0 - x0) / (x - x0)))
        elif not cut and i == 0:
            cut.append((1.0, y))
        break
    return cut


def apgr(points: Sequence[Point], cheap: Point, best: Point) -> float | None:
    """RouteLLM's APGR of ``points`` over cost shares 0 to 1; None when fewer than two distinct cost shares.

    A curve that stops short of share 1 (a router that never spends the best model's cost, because its
    evidence says the extra money buys nothing on some tasks) is extended flat to 1, as AIQ extends its hull:
    more budget never lowers what a router already reached. A curve starting above share 0 is extended flat
    back to 0 from its first point. For routers whose points span 0 to 1, as RouteLLM's thresholds always
    do, this is exactly ``routellm/evals/evaluate.py``'s figure.
    """
    curve = pgr_curve(points, cheap, best)
    if len(curve) < 2 or curve[-1][0] <= curve[0][0]:
        return None
    if curve[0][0] > 0:
        curve.insert(0, (0.0, curve[0][1]))
    if curve[-1][0] < 1:
        curve.append((1.0, curve[-1][1]))
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(curve))
    return area / (curve[-1][0] - curve[0][0])


def cpt(points: Sequence[Point], cheap: Point, best: Point, level: float = 0.5) -> float | None:
    """RouteLLM's CPT(level): the smallest cost share whose PGR reaches ``level`` (interpolated)."""
    curve = pgr_curve(points, cheap, best)
    for i, (x, y) in enumerate(curve):
        if y >= level:
            if i == 0:
                return x
            x0, y0 = curve[i - 1]
            return x0 + (x - x0) * (level - y0) / (y - y0) if y > y0 else x
    return None
