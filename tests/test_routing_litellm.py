"""RecommenderRouter and the exported Router config against a real litellm.Router (mock_response calls).

litellm takes seconds to import: every test that needs it lives in this one module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.routing.table import ScoreRow, UtilityTable
from recommender_core.store import Store

from .scoring_data import SMALL_POLICY, add_arena, small_policy

pytestmark = pytest.mark.routing
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


def test_exported_config_is_loaded_by_a_real_router(store: Store, database_url: str, tmp_path: Path) -> None:
    add_arena(store, [("alpha", "overall", 1300.0, None), ("beta", "overall", 1400.0, None),
                      ("delta-2025", "overall", 1200.0, None)])
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    runner = CliRunner()
    env = {"ENABLE_MODEL_RECOMMENDER_V2": "true"}
    assert runner.invoke(app, ["--database-url", database_url, "score", "--policy", str(policy)]).exit_code == 0
    out = tmp_path / "router.yaml"
    result = runner.invoke(app, ["--database-url", database_url, "export", "litellm-router", "--policy",
                                 str(policy), "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    decision = json.loads(runner.invoke(app, ["--database-url", database_url, "route", "chat", "--policy",
                                              str(policy), "--json"], env=env).stdout)
    settings = config["router_settings"]
    assert settings["model_group_alias"]["task/chat"] == decision["primary"]
    assert {decision["primary"]: decision["fallbacks"]} in settings["fallbacks"]
    for deployment in config["model_list"]:
        deployment["litellm_params"].update(api_key="sk-test", model="openai/" + deployment["model_name"],
                                            mock_response=f"served by {deployment['model_name']}")
    router = litellm.Router(model_list=config["model_list"], num_retries=0, **settings)
    response = router.completion(model="task/chat", messages=MESSAGES)
    assert response.choices[0].message.content == f"served by {decision['primary']}"


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
    """DESIGN.md 6: orders are loaded with the scoring run, not per call; availability beats optimality."""
    import recommender_core.routing.adapter as adapter
    from recommender_core import RecommenderRouter
    from recommender_core.scoring import run_scoring

    add_arena(store, [("alpha", "overall", 1300.0, None), ("beta", "overall", 1400.0, None),
                      ("delta-2025", "overall", 1200.0, None)])
    policy = small_policy()
    run_scoring(store, policy)
    loads: list[object] = []
    real = adapter.load_current_table

    def counting(s: Store) -> UtilityTable | None:
        loads.append(s)
        return real(s)

    monkeypatch.setattr(adapter, "load_current_table", counting)
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
