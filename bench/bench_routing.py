"""route() against litellm.Router.get_available_deployment, with 500 candidates and 30 tasks in memory.

Targets (DESIGN.md 13, issue 6): route() p99 <= 50 us, and <= 5% of get_available_deployment's p99,
both measured in this run, against both LiteLLM setups over the same 500 deployments:
30 model groups (one per task, the realistic setup: a call picks among its group's deployments)
and 1 group of all 500 (LiteLLM's slowest setup). Every route() call draws fresh random
constraints, task and strategy; no decision is reused; each side is measured 3 times (median of
the p99s, and their spread).
"""

from __future__ import annotations

import os
import random
import statistics
import time

from recommender_core.policy import parse_policy
from recommender_core.routing.decision import route
from recommender_core.routing.table import ScoreRow, UtilityTable

from ._common import Result

CANDIDATES = 500
TASKS = 30
CALLS = int(os.environ.get("RECSYS_BENCH_ROUTE_CALLS", "20000"))
BASELINE_CALLS = int(os.environ.get("RECSYS_BENCH_ROUTER_CALLS", "300"))
REPEATS = 3


def _setup() -> tuple[object, UtilityTable, list[str]]:
    rng = random.Random(1)
    names = [f"model-{i:03d}" for i in range(CANDIDATES)]
    tasks = [f"task-{t:02d}" for t in range(TASKS)]
    text = ["version: 1", "candidates:"] + [f"  {n}: {{provider: p{i % 7}}}" for i, n in enumerate(names)]
    text += ["tasks:"] + [f"  {t}:\n    evidence: [lmsys:text/overall]\n    static_order: [{names[0]}]" for t in tasks]
    policy = parse_policy("\n".join(text), path="bench.yaml")
    rows = {t: [ScoreRow(model=n, utility=rng.random(), quality=rng.random(), cost=rng.random(),
                         latency=rng.random(), reliability=rng.random(), cost_per_1k_tokens=rng.uniform(0, 0.05),
                         latency_p95_ms=rng.uniform(50, 5000)) for n in names] for t in tasks}
    return policy, UtilityTable.build(rows), tasks


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _route_times(policy: object, table: UtilityTable, tasks: list[str]) -> list[float]:
    rng = random.Random(2)
    draws = []
    for _ in range(CALLS):
        draws.append((rng.choice(tasks), rng.choice(["utility", "utility", "utility", "cascade"]),
                      rng.choice([None, rng.uniform(0.005, 0.05)]), rng.choice([None, rng.uniform(500, 5000)]),
                      rng.choice([None, rng.uniform(0, 0.5)])))
    times = []
    clock = time.perf_counter_ns
    for task, strategy, cost, latency, quality in draws:
        start = clock()
        route(task, max_cost_per_1k=cost, max_latency_ms=latency, min_quality=quality, strategy=strategy,
              scores=table, v2_enabled=True, policy=policy)  # type: ignore[arg-type]
        times.append((clock() - start) / 1000)
    return times


def _router_times(groups: int) -> list[float]:
    """get_available_deployment over 500 deployments in ``groups`` model groups; each call asks a random group."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from litellm.router import Router

        model_list = [{"model_name": f"group-{i % groups:02d}",
                       "litellm_params": {"model": f"openai/model-{i:03d}", "api_key": "sk-bench",
                                          "mock_response": "x"},
                       "model_info": {"id": f"dep-{i}"}} for i in range(CANDIDATES)]
        router = Router(model_list=model_list, num_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        rng = random.Random(3)
        names = [f"group-{g:02d}" for g in range(groups)]
        for _ in range(20):
            router.get_available_deployment(model=rng.choice(names), messages=messages)
        times = []
        for _ in range(BASELINE_CALLS):
            group = rng.choice(names)
            start = time.perf_counter_ns()
            router.get_available_deployment(model=group, messages=messages)
            times.append((time.perf_counter_ns() - start) / 1000)
    return times


def run() -> list[Result]:
    policy, table, tasks = _setup()
    _route_times(policy, table, tasks)  # warm-up
    ours = [_p(_route_times(policy, table, tasks), 0.99) for _ in range(REPEATS)]
    medians = statistics.median(ours)
    results = []
    for groups in (30, 1):
        base = [_p(_router_times(groups), 0.99) for _ in range(REPEATS)]
        results.append(Result(
            name=f"route() p99 vs get_available_deployment p99, {groups} group{'s' if groups > 1 else ''}",
            figure=medians, baseline=statistics.median(base), unit="us",
            baseline_name=f"litellm.Router.get_available_deployment ({CANDIDATES} deployments in {groups} "
                          f"group{'s' if groups > 1 else ''})",
            target=0.05, figure_runs=tuple(ours), baseline_runs=tuple(base),
            notes=f"{CALLS} random route() calls x {REPEATS}, {BASELINE_CALLS} router calls x {REPEATS}; "
                  f"{CANDIDATES} candidates x {TASKS} tasks"))
    results.append(Result(name="route() p99 vs the 50 us budget", figure=medians, baseline=50.0, unit="us",
                          baseline_name="budget", target=1.0, figure_runs=tuple(ours)))
    return results
