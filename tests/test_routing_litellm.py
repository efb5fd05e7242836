"""RecommenderRouter and the exported Router config against a real litellm.Router (mock_response calls).

litellm takes seconds to import: every test that needs it lives in this one module.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.policy import load_policy
from recommender_core.routing.table import ScoreRow, UtilityTable
from recommender_core.store import Store

from ._exported_config import chains, closed_port_url, export, sample_store, served_model, with_credentials
from .scoring_data import SMALL_POLICY, add_arena, small_policy

pytestmark = [pytest.mark.routing, pytest.mark.usefixtures("litellm_event_loop")]
# Set before the import (the autouse fixture sets it per test, after collection): no remote price map fetch.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402 - after importorskip

MESSAGES = [{"role": "user", "content": "hi"}]


def _row(model: str, utility: float) -> ScoreRow:
    return ScoreRow(model=model, utility=utility, quality=utility, cost=0.5, latency=0.5, reliability=0.95,
                    cost_per_1k_tokens=0.001, latency_p95_ms=100.0)


class Recorder(CustomLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        # LiteLLM keeps one of two loggers of a class whose public str attributes are equal.
        self.recorder_id = uuid.uuid4().hex
        self.events: list[tuple[str, str, str | None]] = []

    def _task(self, kwargs: dict[str, Any]) -> str | None:
        params = kwargs.get("litellm_params") or {}
        return (params.get("metadata") or {}).get("recsys_task")

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.events.append(("success", kwargs.get("model", ""), self._task(kwargs)))

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.events.append(("failure", kwargs.get("model", ""), self._task(kwargs)))


@pytest.fixture
def recorder() -> Any:
    rec = Recorder()
    saved = list(litellm.callbacks)
    try:
        yield rec
    finally:
        litellm.callbacks = saved


def test_primary_fails_and_the_recsys_fallback_serves(recorder: Recorder) -> None:
    from recommender_core import RecommenderRouter

    model_list = [
        {"model_name": "alpha", "litellm_params": {"model": "openai/alpha", "api_key": "sk-test",
                                                   "mock_response": Exception("alpha is down")}},
        {"model_name": "beta", "litellm_params": {"model": "openai/beta", "api_key": "sk-test",
                                                  "mock_response": "served by beta"}},
        {"model_name": "delta", "litellm_params": {"model": "openai/delta", "api_key": "sk-test",
                                                   "mock_response": "served by delta"}},
    ]
    table = UtilityTable.build({"chat": [_row("alpha", 0.9), _row("beta", 0.8), _row("delta", 0.1)]})
    router = RecommenderRouter(model_list=model_list, policy=small_policy(), scores=table, v2_enabled=True,
                               num_retries=0, callbacks=[recorder])
    assert litellm.callbacks.count(recorder) == 1
    response = router.completion("chat", MESSAGES)
    assert response.choices[0].message.content == "served by beta"
    assert router.static_fallbacks == 0
    import time

    for _ in range(50):  # litellm runs success callbacks on a background thread
        if any(e[0] == "success" for e in recorder.events):
            break
        time.sleep(0.05)
    assert ("success", "beta", "chat") in [(s, m.split("/")[-1], t) for s, m, t in recorder.events]
    # No candidate under the constraint: the static order (beta, alpha) serves, and the event is counted.
    response = router.completion("chat", MESSAGES, constraints={"max_cost_per_1k": 0.0})
    assert response.choices[0].message.content == "served by beta"
    assert router.static_fallbacks == 1


def _router_from(config: dict[str, Any], down: set[str]) -> Any:
    """A litellm.Router built from the exported file as LiteLLM's proxy builds one (model_list,
    router_settings), with credentials edited in (`down` at a closed port)."""
    edited = with_credentials(config, down=down)
    # num_retries=0 is the operator's choice here: retrying a closed port only waits (LiteLLM's
    # default backs off for seconds before it falls back).
    return litellm.Router(model_list=edited["model_list"], **edited["router_settings"], num_retries=0)


def _served_by(router: Any, config: dict[str, Any], task: str) -> str:
    if load_policy(None).tasks[task].kind == "embedding":
        response = router.embedding(model=f"task/{task}", input=["hi"])
        return served_model(config, embedding=response.data[0]["embedding"])
    response = router.completion(model=f"task/{task}", messages=MESSAGES)
    return served_model(config, content=response.choices[0].message.content)


def test_the_exported_config_fails_over_per_task_through_a_real_router(
        store: Store, database_url: str, tmp_path: Path) -> None:
    """Issue 14.1: with each task's primary down, `task/<name>` is served by that task's own first
    fallback, for every default task with the V2 flag off and on, tasks that share a primary
    included; the order is the one `recsys route TASK --json` gives, and a request walks all of it."""
    sample_store(database_url)
    for v2 in (False, True):
        config = export(database_url, tmp_path / f"router-{v2}.yaml", v2=v2)
        orders = chains(database_url, config, v2=v2)
        by_primary: dict[str, list[str]] = {}
        for task, chain in orders.items():
            assert len(chain) >= 2, f"{task}: no fallback to fail over to"
            by_primary.setdefault(chain[0], []).append(task)
        assert any(len(tasks) > 1 for tasks in by_primary.values()), "some tasks share a primary"
        for primary, tasks in by_primary.items():
            router = _router_from(config, down={primary})
            for task in tasks:
                assert _served_by(router, config, task) == orders[task][1], (v2, task)
        # The longest order, walked to its end: every model but the last is down.
        task, chain = max(orders.items(), key=lambda item: len(item[1]))
        assert _served_by(_router_from(config, down=set(chain[:-1])), config, task) == chain[-1], (v2, task)


def test_router_calls_are_recorded_under_their_task_by_the_telemetry_callback(store: Store) -> None:
    """Issue 6.5: RecommenderRouter records telemetry through TelemetryCallback, attributed to the task."""
    import sqlalchemy as sa

    from recommender_core import RecommenderRouter, TelemetryCallback
    from recommender_core.store.tables import TelemetryEvent

    model_list = [
        {"model_name": "alpha", "litellm_params": {"model": "openai/alpha", "api_key": "sk-test",
                                                   "mock_response": Exception("alpha is down")}},
        {"model_name": "beta", "litellm_params": {"model": "openai/beta", "api_key": "sk-test",
                                                  "mock_response": "served by beta"}},
    ]
    table = UtilityTable.build({"chat": [_row("alpha", 0.9), _row("beta", 0.8)]})
    callback = TelemetryCallback(store=store, flush_interval=0.05)
    saved = list(litellm.callbacks)
    try:
        router = RecommenderRouter(model_list=model_list, policy=small_policy(), scores=table, v2_enabled=True,
                                   num_retries=0, callbacks=[callback])
        assert router.completion("chat", MESSAGES).choices[0].message.content == "served by beta"
        import time

        deadline = time.monotonic() + 10
        rows: list[Any] = []
        while time.monotonic() < deadline:  # litellm runs success callbacks on a background thread
            assert callback.flush(timeout=5.0)
            with store.connect() as conn:
                rows = conn.execute(sa.select(TelemetryEvent.model_group, TelemetryEvent.status,
                                              TelemetryEvent.task)).all()
            if {r[1] for r in rows} >= {"success", "failure"}:
                break
            time.sleep(0.05)
    finally:
        callback.close()
        litellm.callbacks = saved
    assert sorted((r[0], r[1], r[2]) for r in rows) == [("alpha", "failure", "chat"), ("beta", "success", "chat")]


def test_a_router_on_a_store_loads_the_run_once_and_survives_the_store_going_away(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/api.md: orders are loaded with the scoring run, not per call; availability beats optimality."""
    import recommender_core.routing.recommender as recommender
    from recommender_core import RecommenderRouter
    from recommender_core.scoring import run_scoring

    add_arena(store, [("alpha", "overall", 1300.0, None), ("beta", "overall", 1400.0, None),
                      ("delta-2025", "overall", 1200.0, None)])
    policy = small_policy()
    run_scoring(store, policy)
    loads: list[object] = []
    real = recommender.load_current_table

    def counting(s: Store) -> UtilityTable | None:
        loads.append(s)
        return real(s)

    monkeypatch.setattr(recommender, "load_current_table", counting)
    router = RecommenderRouter(model_list=[], router=object(), policy=policy, store=store, v2_enabled=True)
    first = router.decide("chat")
    assert all(router.decide("chat").models == first.models for _ in range(5))
    assert len(loads) == 1 and router.static_fallbacks == 0 and first.v2_enabled
    router.reload()
    router.decide("chat")
    assert len(loads) == 2

    down = Store("postgresql://nobody@127.0.0.1:1/none")
    try:
        cold = RecommenderRouter(model_list=[], router=object(), policy=policy, store=down, v2_enabled=True)
        for expected in (1, 2):  # the static order (beta, alpha), counted; the store is tried once
            decision = cold.decide("chat")
            assert (decision.models, decision.v2_enabled) == (("beta", "alpha"), False)
            assert cold.static_fallbacks == expected
        assert len(loads) == 3
    finally:
        down.dispose()


# --- the adapter's API: store= and scores= ------------------------------------------------------

def _mock_list(*names: str, down: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One deployment per name: the `down` ones at a closed loopback port, the others answering their name."""
    closed = closed_port_url()
    return [{"model_name": n, "litellm_params": {"model": f"openai/{n}", "api_key": "sk-test",
                                                 **({"api_base": closed} if n in down
                                                    else {"mock_response": f"served by {n}"})}}
            for n in names]


@pytest.mark.parametrize("wrong", [{"store": 42}, {"store": Path("recsys.db")}, {"scores": {"chat": []}},
                                   {"scores": 0.5}], ids=["int-store", "path-store", "dict-scores", "float-scores"])
def test_a_wrong_store_or_scores_is_one_clear_type_error_at_construction(wrong: dict[str, Any],
                                                                         recorder: Recorder) -> None:
    from recommender_core import RecommenderRouter
    from recommender_core.routing.litellm_strategy import RecommenderRoutingStrategy

    before = list(litellm.callbacks)
    for build in (lambda: RecommenderRouter(model_list=_mock_list("alpha"), policy=small_policy(),
                                            callbacks=[recorder], **wrong),
                  lambda: RecommenderRoutingStrategy(object(), policy=small_policy(), **wrong)):
        with pytest.raises(TypeError) as info:
            build()
        message = str(info.value)
        assert "\n" not in message
        name = next(iter(wrong))
        assert message.startswith(f"{name}= takes ") and message.endswith(f"not {type(wrong[name]).__name__}.")
    assert litellm.callbacks == before  # nothing registered by a constructor that failed


def test_the_three_ways_to_route_store_snapshot_and_static(store: Store, database_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A store (given as its URL), a saved snapshot (a path) and the static order, through a real Router;
    with neither store nor scores and the flag on, the configured store. For math the static order
    starts with alpha and the scores with beta."""
    from recommender_core import RecommenderRouter
    from recommender_core.scoring import run_scoring

    add_arena(store, [("alpha", "math", 1300.0, 1290.0), ("beta", "math", 1400.0, 1390.0),
                      ("delta-2025", "math", 1200.0, 1190.0)])
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(SMALL_POLICY)
    run_scoring(store, small_policy())
    snapshot = tmp_path / "snapshot.json"
    result = CliRunner().invoke(app, ["--database-url", database_url, "snapshot", "--policy", str(policy_file),
                                      "--json"])
    assert result.exit_code == 0, result.output
    snapshot.write_text(result.stdout)
    model_list = _mock_list("alpha", "beta", "delta")
    common: dict[str, Any] = {"model_list": model_list, "policy": small_policy(), "num_retries": 0}

    from_store = RecommenderRouter(store=database_url, v2_enabled=True, **common)
    try:
        assert from_store.completion("math", MESSAGES).choices[0].message.content == "served by beta"
        assert from_store.scores is not None and from_store.scores.origin.startswith("scoring run ")
    finally:
        from_store.close()
    for scores in (str(snapshot), snapshot):
        from_snapshot = RecommenderRouter(scores=scores, v2_enabled=True, **common)
        assert from_snapshot.completion("math", MESSAGES).choices[0].message.content == "served by beta"
    static = RecommenderRouter(v2_enabled=False, **common)
    assert static.completion("math", MESSAGES).choices[0].message.content == "served by alpha"
    assert from_store.static_fallbacks == from_snapshot.static_fallbacks == static.static_fallbacks == 0

    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    configured = RecommenderRouter(**common)
    try:
        assert configured.completion("math", MESSAGES).choices[0].message.content == "served by beta"
        assert configured.static_fallbacks == 0
    finally:
        configured.close()


# --- the second adapter: recsys order inside a plain litellm.Router ------------------------------

def _attempts(recorder: Recorder, count: int) -> list[tuple[str, str]]:
    import time

    for _ in range(200):  # litellm runs success callbacks on a background thread
        if len(recorder.events) >= count:
            break
        time.sleep(0.02)
    return [(status, model.split("/")[-1]) for status, model, _ in recorder.events]


async def _logged(timeout: float = 10.0) -> None:
    """Wait on the running loop until LiteLLM's logging worker has run every queued hook: one left
    when the loop ends would fire in a later test, on that test's callbacks."""
    import asyncio

    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    for _ in range(int(timeout / 0.02)):
        if GLOBAL_LOGGING_WORKER.pending_count == 0:
            return
        await asyncio.sleep(0.02)


def test_a_plain_router_walks_the_recsys_order_through_the_strategy(recorder: Recorder) -> None:
    """LiteLLM asks the strategy on each attempt; its retries walk the task's order, sync and async.
    Two tasks with the same primary keep their own orders."""
    import asyncio

    from recommender_core.routing.litellm_strategy import RecommenderRoutingStrategy

    table = UtilityTable.build({"chat": [_row("alpha", 0.9), _row("beta", 0.8), _row("delta", 0.1)],
                                "math": [_row("alpha", 0.9), _row("delta", 0.8), _row("beta", 0.1)]})
    litellm.callbacks = [recorder]
    router = litellm.Router(model_list=_mock_list("alpha", "beta", "delta", down=("alpha", "beta")),
                            model_group_alias={"task/chat": "alpha", "task/math": "alpha"}, num_retries=2,
                            retry_after=0)
    strategy = RecommenderRoutingStrategy(router, policy=small_policy(), scores=table, v2_enabled=True)
    router.register_plugin(strategy)

    assert router.completion(model="task/chat", messages=MESSAGES).choices[0].message.content == "served by delta"
    assert _attempts(recorder, 3) == [("failure", "alpha"), ("failure", "beta"), ("success", "delta")]
    # Not a task: the group's own deployment.
    assert router.completion(model="delta", messages=MESSAGES).choices[0].message.content == "served by delta"
    recorder.events.clear()

    async def math() -> Any:
        response = await router.acompletion(model="task/math", messages=MESSAGES)
        await _logged()
        return response

    assert asyncio.run(math()).choices[0].message.content == "served by delta"
    attempts = _attempts(recorder, 2)
    assert attempts[-1] == ("success", "delta") and ("failure", "beta") not in attempts
    assert strategy.recommender.static_fallbacks == 0


def test_the_strategy_follows_a_stores_scoring_run(store: Store, recorder: Recorder) -> None:
    """On both backends: the order comes from the store's current run; its primary is down and the
    next model in that order serves."""
    from recommender_core import route
    from recommender_core.routing.litellm_strategy import RecommenderRoutingStrategy
    from recommender_core.scoring import run_scoring

    add_arena(store, [("alpha", "math", 1300.0, 1290.0), ("beta", "math", 1400.0, 1390.0),
                      ("delta-2025", "math", 1200.0, 1190.0)])
    run_scoring(store, small_policy())
    order = route("math", store=store, policy=small_policy(), v2_enabled=True).models
    assert len(order) >= 2
    router = litellm.Router(model_list=_mock_list("alpha", "beta", "delta", down=(order[0],)),
                            model_group_alias={"task/math": order[0]}, num_retries=2, retry_after=0)
    router.register_plugin(RecommenderRoutingStrategy(router, policy=small_policy(), store=store, v2_enabled=True))
    response = router.completion(model="task/math", messages=MESSAGES)
    assert response.choices[0].message.content == f"served by {order[1]}"


def test_the_strategy_skips_a_deployment_litellm_cooled_down(recorder: Recorder) -> None:
    """A deployment LiteLLM put in cooldown (here: alpha failed a request of its own, which fell back)
    is not tried first; the task's next model serves without a failed attempt."""
    from recommender_core.routing.litellm_strategy import RecommenderRoutingStrategy

    table = UtilityTable.build({"chat": [_row("alpha", 0.9), _row("beta", 0.8)]})
    litellm.callbacks = [recorder]
    router = litellm.Router(model_list=_mock_list("alpha", "beta", down=("alpha",)),
                            model_group_alias={"task/chat": "alpha"}, fallbacks=[{"alpha": ["beta"]}],
                            num_retries=0, allowed_fails=0, cooldown_time=300)
    router.register_plugin(RecommenderRoutingStrategy(router, policy=small_policy(), scores=table, v2_enabled=True))
    assert router.completion(model="alpha", messages=MESSAGES).choices[0].message.content == "served by beta"
    assert _attempts(recorder, 2) == [("failure", "alpha"), ("success", "beta")]
    for _ in range(2):
        assert router.completion(model="task/chat", messages=MESSAGES).choices[0].message.content == "served by beta"
    assert _attempts(recorder, 4)[2:] == [("success", "beta"), ("success", "beta")]


def test_set_custom_routing_strategy_is_litellms_deprecated_name_for_register_plugin(recorder: Recorder) -> None:
    from recommender_core.routing.litellm_strategy import RecommenderRoutingStrategy

    table = UtilityTable.build({"chat": [_row("beta", 0.9), _row("alpha", 0.8)]})
    router = litellm.Router(model_list=_mock_list("alpha", "beta"), model_group_alias={"task/chat": "alpha"})
    with pytest.warns(DeprecationWarning, match="register_plugin"):
        router.set_custom_routing_strategy(
            RecommenderRoutingStrategy(router, policy=small_policy(), scores=table, v2_enabled=True))
    assert router.completion(model="task/chat", messages=MESSAGES).choices[0].message.content == "served by beta"
