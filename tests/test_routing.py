"""route(): total deterministic order, the flag both ways, strategies, constraints, property tests."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender_core.errors import ConfigError, NoCandidateError, RoutingError, UsageError
from recommender_core.policy import parse_policy
from recommender_core.routing.decision import RouteDecision, route
from recommender_core.routing.strategies import STRATEGIES
from recommender_core.routing.table import ScoreRow, UtilityTable, load_current_table
from recommender_core.scoring.run import run_scoring
from recommender_core.store import Store

from .scoring_data import add_arena, small_policy

pytestmark = pytest.mark.routing

# Read before the autouse fixture scrubs it: `make test` reruns these tests with the flag on.
RUN_FLAG = os.environ.get("ENABLE_MODEL_RECOMMENDER_V2", "")
RUN_V2 = RUN_FLAG.strip().lower() in ("1", "true", "yes", "on")

POLICY = parse_policy("""
version: 1
candidates:
  m-a: {provider: x}
  m-b: {provider: x}
  m-c: {provider: x}
  m-d: {provider: x}
  m-e: {provider: x}
tasks:
  chat:
    evidence: [lmsys:text/overall]
    static_order: [m-e, m-d]
  strict:
    evidence: [lmsys:text/overall]
    constraints: {max_cost_per_1k: 0.005}
    static_order: [m-a]
""", path="route.yaml")


def row(model: str, utility: float, quality: float = 0.5, cost_per_1k: float = 0.001,
        latency_ms: float = 500.0) -> ScoreRow:
    return ScoreRow(model=model, utility=utility, quality=quality, cost=0.5, latency=0.5, reliability=0.95,
                    cost_per_1k_tokens=cost_per_1k, latency_p95_ms=latency_ms)


ROWS = [row("m-a", 0.8, 0.9, 0.010, 900), row("m-b", 0.7, 0.7, 0.002, 300), row("m-c", 0.6, 0.95, 0.020, 2000),
        row("m-d", 0.5, 0.5, 0.001, 200)]
TABLE = UtilityTable.build({"chat": ROWS, "strict": ROWS}, excluded={"chat": [("m-e", "no price")]})


def test_utility_order_primary_fallbacks_and_explanation() -> None:
    d = route("chat", scores=TABLE, policy=POLICY, v2_enabled=True)
    assert (d.primary, d.fallbacks) == ("m-a", ("m-b", "m-c", "m-d"))
    assert [c.model for c in d.candidates] == ["m-a", "m-b", "m-c", "m-d"]
    assert [(e.model, e.reason) for e in d.excluded] == [("m-e", "no price")]
    doc = d.to_json()
    assert set(doc) == {"task", "strategy", "v2_enabled", "primary", "fallbacks", "candidates", "excluded"}
    assert set(doc["candidates"][0]) == {"model", "utility", "quality", "cost", "latency", "reliability"}
    with pytest.raises(AttributeError):
        d.primary = "x"  # type: ignore[misc]


def test_flag_off_returns_the_static_order_whatever_the_scores() -> None:
    d = route("chat", scores=TABLE, policy=POLICY, v2_enabled=False)
    assert (d.primary, d.fallbacks, d.v2_enabled) == ("m-e", ("m-d",), False)


def test_flag_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    assert route("chat", scores=TABLE, policy=POLICY).primary == "m-a"
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "false")
    assert route("chat", scores=TABLE, policy=POLICY).primary == "m-e"
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "maybe")
    with pytest.raises(ConfigError, match="not a boolean"):
        route("chat", scores=TABLE, policy=POLICY)


def test_the_flag_this_run_was_started_with(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` runs this with the flag unset and again with ENABLE_MODEL_RECOMMENDER_V2=true."""
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", RUN_FLAG)
    d = route("chat", scores=TABLE, policy=POLICY)
    assert d.v2_enabled is RUN_V2
    assert d.primary == ("m-a" if RUN_V2 else "m-e")


def test_constraints_filter_and_explain() -> None:
    d = route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, max_cost_per_1k=0.01, max_latency_ms=1000)
    assert d.models == ("m-a", "m-b", "m-d")
    reasons = dict((e.model, e.reason) for e in d.excluded)
    assert reasons["m-c"] == ("cost 0.02/1k tokens above max_cost_per_1k 0.01; "
                              "p95 latency 2000 ms above max_latency_ms 1000")
    assert route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, min_quality=0.8).models == ("m-a", "m-c")


def test_task_default_constraints_apply_and_explicit_ones_override() -> None:
    assert route("strict", scores=TABLE, policy=POLICY, v2_enabled=True).models == ("m-b", "m-d")
    assert route("strict", scores=TABLE, policy=POLICY, v2_enabled=True, max_cost_per_1k=1.0).primary == "m-a"


def test_cascade_goes_cheapest_first_and_ends_with_best_quality() -> None:
    d = route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, strategy="cascade")
    assert d.models == ("m-d", "m-b", "m-a", "m-c")  # cost asc, then m-c (best quality) last
    floor = route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, strategy="cascade", min_quality=0.6)
    assert floor.models == ("m-b", "m-a", "m-c")
    capped = route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, strategy="cascade", max_cost_per_1k=0.015)
    assert capped.models == ("m-d", "m-b", "m-a")  # best qualifying quality (m-a) already last


def test_no_candidate_error_lists_the_exclusions() -> None:
    with pytest.raises(NoCandidateError) as info:
        route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, max_cost_per_1k=0.0001)
    assert info.value.task == "chat" and ("m-e", "no price") in info.value.excluded
    assert "m-a, m-c" not in str(info.value) and "m-e: no price" in str(info.value)
    empty = UtilityTable.build({})
    with pytest.raises(NoCandidateError, match="no score for this task"):
        route("chat", scores=empty, policy=POLICY, v2_enabled=True)


def test_unknown_task_and_strategy() -> None:
    with pytest.raises(RoutingError, match=r"Unknown task 'nope'. Tasks in the policy: chat, strict."):
        route("nope", scores=TABLE, policy=POLICY, v2_enabled=True)
    with pytest.raises(UsageError, match=r"Available strategies: utility, cascade"):
        route("chat", scores=TABLE, policy=POLICY, v2_enabled=True, strategy="fastest")


def test_ties_break_by_quality_then_cost_then_name_under_any_input_order() -> None:
    tied = [row("m-d", 0.5, 0.5, 0.002), row("m-c", 0.5, 0.5, 0.001), row("m-b", 0.5, 0.6, 0.009),
            row("m-a", 0.5, 0.5, 0.002), row("m-e", 0.5 + 1e-12, 0.5, 0.002)]  # below 9 decimals: a tie
    expected = ("m-b", "m-c", "m-a", "m-d", "m-e")
    rng = random.Random(7)
    for _ in range(20):
        shuffled = tied[:]
        rng.shuffle(shuffled)
        table = UtilityTable.build({"chat": shuffled})
        assert route("chat", scores=table, policy=POLICY, v2_enabled=True).models == expected


def test_routes_from_the_stores_current_run(store: Store) -> None:
    add_arena(store, [("alpha", "overall", 1300.0, None), ("beta", "overall", 1400.0, None),
                      ("delta-2025", "overall", 1200.0, None)])
    policy = small_policy()
    with pytest.raises(NoCandidateError, match="No scoring run is current"):
        route("chat", policy=policy, v2_enabled=True, store=store)
    run_scoring(store, policy)
    from_store = route("chat", policy=policy, v2_enabled=True, store=store)
    from_table = route("chat", policy=policy, v2_enabled=True, scores=load_current_table(store))
    assert from_store.models == from_table.models and from_store.primary in {"alpha", "beta", "delta"}
    assert "gamma-unpriced" in {e.model for e in from_store.excluded}


def test_without_scores_or_store_route_opens_the_configured_store(store: Store, database_url: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    policy = small_policy()
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    with pytest.raises(NoCandidateError, match="No scoring run is current"):
        route("chat", policy=policy, v2_enabled=True)
    add_arena(store, [("alpha", "overall", 1300.0, None), ("beta", "overall", 1400.0, None)])
    run_scoring(store, policy)
    assert route("chat", policy=policy, v2_enabled=True).models == route(
        "chat", policy=policy, v2_enabled=True, store=store).models


names = st.sampled_from([f"m{i}" for i in range(12)])
values = st.floats(min_value=0, max_value=1, allow_nan=False)
rows_strategy = st.lists(
    st.builds(row, names, values, values, st.floats(min_value=0, max_value=0.05), st.floats(10, 5000)),
    max_size=12, unique_by=lambda r: r.model)
PROP_POLICY = parse_policy("version: 1\ncandidates:\n" + "".join(f"  m{i}: {{provider: x}}\n" for i in range(12))
                           + "tasks:\n  chat:\n    evidence: [lmsys:text/overall]\n    static_order: [m0]\n")


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, seed=st.integers(0, 2**16), strategy=st.sampled_from(list(STRATEGIES)),
       max_cost=st.none() | st.floats(0, 0.05), max_latency=st.none() | st.floats(10, 5000),
       min_quality=st.none() | values)
def test_route_properties(rows: list[ScoreRow], seed: int, strategy: str, max_cost: float | None,
                          max_latency: float | None, min_quality: float | None) -> None:
    excluded = [(f"m{i}", "no evidence") for i in range(12) if f"m{i}" not in {r.model for r in rows}][:3]
    kwargs = {"max_cost_per_1k": max_cost, "max_latency_ms": max_latency, "min_quality": min_quality,
              "strategy": strategy, "policy": PROP_POLICY, "v2_enabled": True}
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    outcomes: list[RouteDecision | None] = []
    for variant in (rows, shuffled):
        try:
            outcomes.append(route("chat", scores=UtilityTable.build({"chat": variant}, excluded={"chat": excluded}),
                                  **kwargs))  # type: ignore[arg-type]
        except NoCandidateError:
            outcomes.append(None)
    first, second = outcomes
    assert (first is None) == (second is None)
    if first is None or second is None:
        return
    assert first.models == second.models  # stable under input permutation
    assert len(set(first.models)) == len(first.models)  # never twice
    assert not {m for m, _ in excluded} & set(first.models)  # never an excluded model
    by_name = {r.model: r for r in rows}
    for m in first.models:
        r = by_name[m]
        assert max_cost is None or r.cost_per_1k_tokens <= max_cost
        assert max_latency is None or r.latency_p95_ms <= max_latency
        assert min_quality is None or r.quality >= min_quality
    assert {e.model for e in first.excluded}.isdisjoint(first.models)


def test_export_with_the_flag_off_uses_static_orders() -> None:
    from recommender_core.routing.export import litellm_router_config

    config = litellm_router_config(POLICY, scores=None, v2_enabled=False)
    settings = config["router_settings"]
    assert settings["model_group_alias"] == {"task/chat": "m-e", "task/strict": "m-a"}
    assert settings["fallbacks"] == [{"task/chat": ["m-d"]}]  # keyed by the alias clients call
    on = litellm_router_config(POLICY, scores=TABLE, v2_enabled=True)["router_settings"]
    assert on["model_group_alias"] == {"task/chat": "m-a", "task/strict": "m-b"}
    assert {"task/chat": ["m-b", "m-c", "m-d"]} in on["fallbacks"]


def test_a_task_with_no_candidate_exports_its_static_order() -> None:
    from recommender_core.routing.export import litellm_router_config

    config = litellm_router_config(POLICY, scores=UtilityTable.build({"chat": ROWS}), v2_enabled=True)
    assert config["router_settings"]["model_group_alias"]["task/strict"] == "m-a"
    assert config["x-recsys"]["static_tasks"] == ["strict"]
