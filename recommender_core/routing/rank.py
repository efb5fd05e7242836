"""The rules of one routing decision, as plain functions over plain values.

The one place that says how models are ordered (``order_key``), which limits a model breaks
(``violations``), how the cascade ends (``cascade_order``), and why a candidate was left out
(``exclusions``). ``route()`` applies them through the table's precomputed bitmask indexes
(``routing.table``); the CLI's fast ``recsys route`` path (``recsys_cli.fast_route``) applies them
to one task's rows with ``decide``, a linear walk that gives the same answer for one call. A test
checks ``decide`` against the indexed strategies on random tables.

Light on purpose: no dataclasses, no project imports beyond this package, so a command that
routes once pays nothing to import it.
"""

from __future__ import annotations

# typing's import costs milliseconds of the fast ``recsys route`` path: the names are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "NOT_SCORED",
    "NOT_SELECTED",
    "ROUND_DIGITS",
    "Limits",
    "OrderKey",
    "Row",
    "cascade_order",
    "cost_key",
    "decide",
    "exclusions",
    "order_key",
    "ranked",
    "violations",
]

ROUND_DIGITS = 9
NOT_SELECTED = "not selected by the strategy"
NOT_SCORED = "no score for this task in the utility table (run 'recsys score')"

# (max_cost_per_1k, max_latency_ms, min_quality); None: no limit.
Limits = tuple[float | None, float | None, float | None]
# A scored, routable row: (model, utility, quality, cost, latency, reliability, cost_per_1k_tokens,
# latency_p95_ms), with every figure present (missing components already read as 0.0).
Row = tuple[str, float, float, float, float, float, float, float]
OrderKey = tuple[float, float, float, str]


def order_key(utility: float, quality: float, cost_per_1k_tokens: float, model: str) -> OrderKey:
    """The total order of routing: utility desc, quality desc, cost asc, name asc, on values rounded to 9 decimals.

    "cost" is the cost per 1k tokens (the money), so cheaper wins a tie. The snapshot ranks with
    this same key, so a saved snapshot reproduces the decisions.
    """
    return (-round(utility, ROUND_DIGITS), -round(quality, ROUND_DIGITS),
            round(cost_per_1k_tokens, ROUND_DIGITS), model)


def cost_key(cost_per_1k_tokens: float, total: OrderKey) -> tuple[float, OrderKey]:
    """The cascade's order: cost per 1k tokens ascending, ties by the total order."""
    return (round(cost_per_1k_tokens, ROUND_DIGITS), total)


def violations(limits: Limits, cost_per_1k: float, latency_ms: float, quality: float) -> list[str]:
    """The limits a model breaks, each as the sentence an exclusion shows; empty when it qualifies."""
    max_cost, max_latency, min_quality = limits
    found = []
    if max_cost is not None and cost_per_1k > max_cost:
        found.append(f"cost {cost_per_1k:.6g}/1k tokens above max_cost_per_1k {max_cost:g}")
    if max_latency is not None and latency_ms > max_latency:
        found.append(f"p95 latency {latency_ms:.6g} ms above max_latency_ms {max_latency:g}")
    if min_quality is not None and quality < min_quality:
        found.append(f"quality {quality:.6g} below min_quality {min_quality:g}")
    return found


def cascade_order(chosen: Sequence[str], best: str | None) -> tuple[str, ...]:
    """The cascade: qualifying models cheapest first, ending with the best-quality one (``best``)."""
    if len(chosen) < 2 or best is None or chosen[-1] == best:
        return tuple(chosen)
    reordered = [name for name in chosen if name != best]
    reordered.append(best)
    return tuple(reordered)


def exclusions(excluded: Iterable[tuple[str, str]], by_utility: Iterable[tuple[str, float, float, float]],
               chosen: Iterable[str], limits: Limits, candidates: Iterable[str],
               scored: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Every candidate the decision leaves out, with why, sorted by name.

    ``excluded``: (model, reason) the scoring run excluded; ``by_utility``: (model, cost_per_1k,
    latency_p95_ms, quality) of the task's scored rows; ``candidates``: the policy's candidates of
    the task's kind; ``scored``: the models the table has rows for.
    """
    found: dict[str, str] = {}
    for model, reason in excluded:
        found[model] = reason
    picked = set(chosen)
    for model, cost_per_1k, latency, quality in by_utility:
        if model not in picked:
            problems = violations(limits, cost_per_1k, latency, quality)
            found[model] = "; ".join(problems) if problems else NOT_SELECTED
    known = set(scored)
    for name in candidates:
        if name not in known and name not in found:
            found[name] = NOT_SCORED
    return tuple((m, found[m]) for m in sorted(found))


def ranked(rows: Iterable[Row]) -> list[tuple[OrderKey, Row]]:
    """``rows`` with their ``order_key``, in the total order (best first). Each key is computed once:
    ``round`` to 9 decimals is most of what ordering 500 rows costs."""
    return sorted((order_key(r[1], r[2], r[6], r[0]), r) for r in rows)


def decide(by_utility: Sequence[tuple[OrderKey, Row]], limits: Limits, strategy: str) -> tuple[str, ...]:
    """The order ``strategy`` gives over one task's ``ranked`` rows within ``limits``.

    A linear walk for a single decision: what ``UtilityStrategy``/``CascadeStrategy`` answer from a
    loaded table's bitmask indexes, without building them. Raises KeyError for another strategy.
    """
    max_cost, max_latency, min_quality = limits

    def ok(row: Row) -> bool:
        return ((max_cost is None or row[6] <= max_cost) and (max_latency is None or row[7] <= max_latency)
                and (min_quality is None or row[2] >= min_quality))

    if strategy == "utility":
        return tuple(r[0] for _, r in by_utility if ok(r))
    if strategy != "cascade":
        raise KeyError(strategy)
    # cost_key is (rounded cost, total order key), and the key's third item is that rounded cost
    qualifying = sorted(((key[2], key), r) for key, r in by_utility if ok(r))
    # the best quality: highest rounded quality (the key's second item, negated), ties by the total order
    best = min(qualifying, key=lambda kr: (kr[0][1][1], kr[0][1]), default=None)
    return cascade_order([r[0] for _, r in qualifying], best[1][0] if best is not None else None)
