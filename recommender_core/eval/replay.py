"""``recsys eval replay`` and ``recsys eval calibrate``: the product's decisions measured on held-out outcomes.

Per task the items are split into an evidence half and an outcome half (the ``split`` column, else a
seeded hash of ``(seed, task, item)``). The evidence half becomes outcomes evidence; the product's own
``compute_scores`` and ``route()`` (not a copy of them) choose a model per task at each cost weight of a
sweep; the outcome half measures every choice. Baselines and metrics: see ``docs/decision-quality.md``.

Each router is a set of configurations; a configuration assigns every outcome item a (cost, score).
The bootstrap resamples items within each task (``repeats`` times) with one matrix product, so every
figure's 95% interval costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import EvalError, UsageError
from .decide import (
    DEFAULT_SEED,
    CostForm,
    ReplayData,
    _Decider,
    _lines,
    fill_costs,
    prepare,
    sweep_weights,
    with_cost_weight,
)
from .outcomes import Outcomes
from .routers import _assign, _bootstrap_counts, _cascade, _oracle, _Router, _task_oracle, measure

__all__ = [
    "DEFAULT_CASCADE_ERROR",
    "DEFAULT_POINTS",
    "DEFAULT_REPEATS",
    "MIN_POINTS",
    "ReplayData",
    "ReplayResult",
    "calibrate",
    "fill_costs",
    "prepare",
    "replay",
]

MIN_POINTS = 32
DEFAULT_POINTS = 64
DEFAULT_REPEATS = 200
DEFAULT_CASCADE_ERROR = 0.1
RANDOM_STEPS = 11
RANDOM_DRAWS = 20  # independent random routings per item, averaged: RouteLLM's random with less noise
CASCADE_FLOORS = 12  # quality floors of the cascade (quantiles of the scored qualities), besides none
Backend = Literal["memory", "sqlite"]


@dataclass(frozen=True)
class ReplayResult:
    """The replay document (docs/decision-quality.md, "The replay"), and the sweep for calibrate."""

    document: dict[str, Any]
    sweep: list[dict[str, Any]]


def replay(outcomes: Outcomes, *, seed: int = DEFAULT_SEED, points: int = DEFAULT_POINTS,
           repeats: int = DEFAULT_REPEATS, cascade_error: float = DEFAULT_CASCADE_ERROR,
           cost_form: CostForm = "wtp", backend: Backend = "memory", per_task: bool = True,
           task_intervals: bool = False, progress: Callable[[str], None] | None = None) -> ReplayResult:
    """Replay ``outcomes`` (costs filled in) and measure every router; see the module docstring."""
    if points < MIN_POINTS:
        raise UsageError(f"--points {points} is too few; the sweep needs at least {MIN_POINTS} cost weights.")
    if repeats < 0:
        raise UsageError("--repeats must be 0 or more.")
    if not 0.0 <= cascade_error < 0.5:
        raise UsageError(f"--cascade-error {cascade_error:g} must be at least 0 and below 0.5.")
    if not np.isfinite(outcomes.cost).all():
        outcomes = fill_costs(outcomes)
    data = prepare(outcomes, seed=seed)
    ev_tasks = set(np.unique(data.task[data.evidence]).tolist())
    out_tasks = set(np.unique(data.task[~data.evidence]).tolist())
    usable = sorted(ev_tasks & out_tasks)
    if not usable:
        raise EvalError(f"Outcomes file {outcomes.path}: no task has items in both halves (evidence and outcome); "
                        "add items, or fix the split column.")
    task_names = [data.task_names[t] for t in usable]
    out_mask = ~data.evidence & np.isin(data.task, usable)
    s, c, task = data.score[out_mask], data.cost[out_mask], data.task[out_mask]
    index_of = {name: i for i, name in enumerate(data.models)}
    decider = _Decider(data, task_names, cost_form, backend)
    rng = np.random.default_rng(seed)
    routers: dict[str, _Router] = {}
    sweep: list[dict[str, Any]] = []
    try:
        base = decider.base
        first = decider.raw(base)
        weights = sweep_weights(_lines(first, task_names, data.models, cost_form), points, cost_form)
        utility = routers.setdefault("recsys-utility", _Router("recsys-utility"))
        table0 = None
        for w in weights:
            policy = with_cost_weight(base, w)
            table = decider.scores(policy)
            table0 = table0 or table
            chosen = decider.choose(policy, table)
            choice = {data.task_names.index(t): index_of[models[0]] for t, models in chosen.items()}
            for t in usable:
                choice.setdefault(t, int(np.argmin(c[task == t].mean(axis=0))))
            cost_v, score_v = _assign(s, c, task, choice)
            utility.add(cost_v, score_v)
            sweep.append({"cost_weight": w, "choices": {data.task_names[t]: data.models[choice[t]] for t in usable},
                          "cost": float(cost_v.mean()), "quality": float(score_v.mean())})
        for j, model in enumerate(data.models):
            routers.setdefault(model, _Router(model)).add(c[:, j], s[:, j])
        # random: per item the best single model with probability p, else the cheapest (RouteLLM's random)
        means_q, means_c = s.mean(axis=0), c.mean(axis=0)
        best_j = int(np.lexsort((means_c, -means_q))[0])
        cheap_j = int(np.lexsort((-means_q, means_c))[0])
        rand = routers.setdefault("random", _Router("random"))
        draws = rng.random((RANDOM_DRAWS, s.shape[0]))
        for p in np.linspace(0.0, 1.0, RANDOM_STEPS):
            strong = (draws < p).mean(axis=0)  # the share of RANDOM_DRAWS coin flips that chose the best model
            rand.add(c[:, cheap_j] + strong * (c[:, best_j] - c[:, cheap_j]),
                     s[:, cheap_j] + strong * (s[:, best_j] - s[:, cheap_j]))
        oracle_t = routers.setdefault("task-oracle", _Router("task-oracle"))
        for choice in _task_oracle(s, c, task, len(data.task_names)):
            oracle_t.add(*_assign(s, c, task, choice))
        oracle = routers.setdefault("oracle", _Router("oracle"))
        for cost_v, score_v in _oracle(s, c):
            oracle.add(cost_v, score_v)
        # cascade: the product's cascade order at each quality floor, pass mark from the evidence half
        ev = data.evidence & np.isin(data.task, usable)
        pass_mark = np.ones(len(data.task_names))
        for t in usable:
            if not data.binary[t]:
                pass_mark[t] = float(np.median(data.score[ev & (data.task == t)]))
        assert table0 is not None  # noqa: S101 - at least MIN_POINTS weights ran
        qualities = sorted({round(float(r.quality), 9) for tt in table0.tasks.values() for r in tt.by_utility})
        picks = np.unique(np.round(np.linspace(0, len(qualities) - 1, min(CASCADE_FLOORS, len(qualities)))))
        floors = [qualities[int(i)] for i in picks]
        cascade = routers.setdefault("recsys-cascade", _Router("recsys-cascade"))
        seen_orders: set[tuple[tuple[int, ...], ...]] = set()
        for floor in [None, *floors]:
            chosen = decider.choose(base, table0, strategy="cascade", min_quality=floor)
            # prefix 1 is the threshold that accepts every first answer (RouterBench's cheapest end)
            for prefix in (None, 2, 1):
                orders = {}
                for t in usable:
                    models = chosen.get(data.task_names[t])
                    order = [index_of[m] for m in models] if models else [int(np.argmax(means_q))]
                    orders[t] = order[:prefix] if prefix else order
                key = tuple(tuple(orders[t]) for t in usable)
                if key in seen_orders:
                    continue
                seen_orders.add(key)
                cascade.add(*_cascade(s, c, orders, task, pass_mark, cascade_error,
                                      np.random.default_rng([seed, len(seen_orders)])))
    finally:
        decider.close()
    counts = _bootstrap_counts(task, repeats, rng)
    document = measure(routers, data, usable, task, counts, seed=seed, cascade_error=cascade_error,
                        cost_form=cost_form, per_task=per_task, task_intervals=task_intervals)
    document["routers"]["recsys-utility"]["sweep"] = sweep
    return ReplayResult(document=document, sweep=sweep)


def calibrate(result: ReplayResult, *, max_cost_per_call: float | None = None,
              min_quality: float | None = None) -> dict[str, Any]:
    """The sweep point meeting the target with the best other figure: the highest quality within the cost
    budget, or the lowest cost reaching the quality; ties go to the larger cost weight (the cheaper habit)."""
    if (max_cost_per_call is None) == (min_quality is None):
        raise UsageError("Give exactly one of --max-cost-per-call and --min-quality.")
    sweep = result.sweep
    if max_cost_per_call is not None:
        ok = [p for p in sweep if p["cost"] <= max_cost_per_call]
        if not ok:
            cheapest = min(p["cost"] for p in sweep)
            raise EvalError(f"No cost weight keeps the replayed mean cost per call within {max_cost_per_call:g} USD; "
                            f"the cheapest choice costs {cheapest:.6g} USD per call.")
        chosen = max(ok, key=lambda p: (p["quality"], -p["cost"], p["cost_weight"]))
    else:
        assert min_quality is not None  # noqa: S101 - exactly one is set
        ok = [p for p in sweep if p["quality"] >= min_quality]
        if not ok:
            top = max(p["quality"] for p in sweep)
            raise EvalError(f"No cost weight reaches a replayed mean quality of {min_quality:g}; the best reaches "
                            f"{top:.6g}.")
        chosen = min(ok, key=lambda p: (p["cost"], -p["quality"], -p["cost_weight"]))
    return {"cost_weight": chosen["cost_weight"], "cost": chosen["cost"], "quality": chosen["quality"],
            "choices": chosen["choices"], "cost_form": result.document["cost_form"],
            "target": {"max_cost_per_call": max_cost_per_call, "min_quality": min_quality}}


def calibrated_policy_text(policy_text: str, *, path: str, cost_weight: float, cost_form: CostForm,
                           tasks: Sequence[str]) -> tuple[str, list[str]]:
    """A copy of the policy YAML with ``cost_weight`` (and ``cost_form``) on the replayed tasks.

    A policy task is replayed when it has the same name as an outcomes task or references
    ``outcomes:<task>``; when none is, every task gets the weight. Comments are not kept.
    """
    import yaml

    from ..policy import parse_policy, parse_yaml

    parse_policy(policy_text, path=path)  # valid before, so the copy is valid after
    data = parse_yaml(policy_text, path=path)
    wanted = set(tasks)
    hit = [name for name, spec in data["tasks"].items()
           if name in wanted or any(str(ref) in {f"outcomes:{t}" for t in wanted} for ref in spec.get("evidence", []))]
    targets = hit or list(data["tasks"])
    for name in targets:
        spec = data["tasks"][name]
        weights = dict(spec.get("weights") or {})
        weights["cost"] = float(cost_weight)
        spec["weights"] = weights
        spec["cost_form"] = cost_form
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    parse_policy(text, path=path)
    return text, targets


def replay_files(paths: Sequence[Path | str], **options: Any) -> ReplayResult:
    """Read (and merge) outcomes files, then ``replay`` them: the one call behind ``recsys eval replay``."""
    from .outcomes import read_many

    return replay(read_many(list(paths)), **options)
