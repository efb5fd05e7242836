"""Scoring runs: hand-computed components, every exclusion reason, atomic current run, rollback."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlmodel import col, select

from recommender_core.errors import ScoringError
from recommender_core.scoring.normalise import beta_smoothed, elo_win_rate, relative_score
from recommender_core.scoring.prices import load_price_table, price_file_path
from recommender_core.scoring.run import (
    MIN_CALLS_FOR_LATENCY,
    MIN_CALLS_FOR_OBSERVED_COST,
    ScoredModel,
    activate_run,
    run_scoring,
)
from recommender_core.store import Store
from recommender_core.store.tables import RunStatus, ScoringRun, UtilityScore
from recommender_core.telemetry.sketch import DOCUMENTED_RELATIVE_ERROR

from .scoring_data import add_arena, add_calls, add_mteb, small_policy

pytestmark = pytest.mark.routing

ARENA = [
    ("alpha", "overall", 1300.0, 1290.0), ("beta", "overall", 1400.0, 1380.0),
    ("gamma-unpriced", "overall", 1350.0, None), ("delta-2025", "overall", 1200.0, 1100.0),
    ("someone-else", "overall", 1250.0, None),
    ("alpha", "math", 1300.0, 1200.0), ("beta", "math", 1350.0, 1340.0),
]
MTEB = [("acme/emb-one", "TaskA", "Retrieval", 0.5), ("acme/emb-one", "TaskB", "Retrieval", 0.7),
        ("acme/emb-two", "TaskA", "Retrieval", 0.6), ("acme/emb-one", "TaskC", "Retrieval", 0.9),
        ("other/model", "TaskD", "Retrieval", 0.9)]


def _by(scores: tuple[ScoredModel, ...], task: str) -> dict[str, ScoredModel]:
    return {s.model: s for s in scores if s.task == task}


@pytest.fixture
def filled(store: Store) -> Store:
    add_arena(store, ARENA)
    add_mteb(store, MTEB)
    return store


def test_normalisation_formulas_by_hand() -> None:
    assert elo_win_rate(1400, 1400) == 0.5
    assert elo_win_rate(1500, 1100) == pytest.approx(1 / (1 + 10 ** -1))
    assert relative_score(1.0, 3.0) == pytest.approx(0.75)
    assert relative_score(0.0, 0.0) == 1.0
    assert beta_smoothed(99, 100) == pytest.approx((99 + 19) / (100 + 20))


def test_arena_quality_cost_and_utility_by_hand(filled: Store) -> None:
    result = run_scoring(filled, small_policy())
    chat = _by(result.scores, "chat")
    # Reference: the lower-middle of the 5 ratings 1200, 1250, 1300, 1350, 1400 -> alpha at 1300.
    assert chat["alpha"].quality == pytest.approx(0.5)
    assert chat["beta"].quality == pytest.approx(1 / (1 + 10 ** (-100 / 400)))
    assert chat["delta"].quality == pytest.approx(1 / (1 + 10 ** (100 / 400)))  # via its alias delta-2025
    # Cost per call with 1000 in + 1000 out: alpha 0.004, beta 0.016, delta 0.002; the median is 0.004.
    assert chat["alpha"].cost_per_1k_tokens == pytest.approx(0.002)
    assert chat["beta"].cost == pytest.approx(0.004 / (0.004 + 0.016))
    assert chat["delta"].cost == pytest.approx(0.004 / 0.006)
    # Weights 0.5 quality, 0.5 cost.
    assert chat["beta"].utility == pytest.approx(0.5 * chat["beta"].quality + 0.5 * 0.2)
    for s in chat.values():
        if not s.excluded:
            for value in (s.utility, s.quality, s.cost, s.latency, s.reliability):
                assert value is not None and 0.0 <= value <= 1.0
    assert chat["alpha"].evidence == ("lmsys:text/overall",)


def test_conservative_task_uses_the_lower_bound(filled: Store) -> None:
    math_scores = _by(run_scoring(filled, small_policy()).scores, "math")
    # Reference of text/math: lower-middle of {1300, 1350} = alpha's 1300 (point rating).
    assert math_scores["alpha"].quality == pytest.approx(elo_win_rate(1200, 1300))
    assert math_scores["beta"].quality == pytest.approx(elo_win_rate(1340, 1300))


def test_every_exclusion_reason_is_stored(filled: Store) -> None:
    result = run_scoring(filled, small_policy())
    chat, math_scores, retrieval = (_by(result.scores, t) for t in ("chat", "math", "retrieval"))
    assert chat["gamma-unpriced"].excluded and "no price" in (chat["gamma-unpriced"].reason or "")
    assert math_scores["delta"].excluded
    assert math_scores["delta"].reason == "no lmsys:text/math rating for this model"
    # MTEB universe: TaskA, TaskB, TaskC (TaskD only has a non-candidate) -> emb-two covers 1 of 3.
    assert retrieval["emb-one"].quality == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert retrieval["emb-two"].excluded
    assert retrieval["emb-two"].reason == (
        "mteb:type/Retrieval: covers 1 of 3 tasks (33%), below the required 50%")
    with filled.session() as session:
        stored = session.exec(select(UtilityScore).where(col(UtilityScore.excluded).is_(True))).all()
    assert {(s.task, s.model) for s in stored} == {
        ("chat", "gamma-unpriced"), ("math", "delta"), ("math", "gamma-unpriced"), ("retrieval", "emb-two")}
    assert all(s.reason and s.utility is None for s in stored)


def test_no_evidence_at_all_excludes_everyone_with_what_to_run(store: Store) -> None:
    result = run_scoring(store, small_policy())
    assert result.scores and all(s.excluded for s in result.scores)
    assert "run 'recsys ingest lmsys'" in (_by(result.scores, "chat")["alpha"].reason or "")
    assert "run 'recsys ingest mteb'" in (_by(result.scores, "retrieval")["emb-one"].reason or "")


def test_telemetry_latency_reliability_and_observed_cost(filled: Store) -> None:
    latencies = [float(i) for i in range(1, 101)]
    # 0.01 USD per call of 1000 tokens = 0.01 per 1k, far above alpha's list price of 0.002.
    add_calls(filled, "alpha", latencies=latencies, failures=5, cost=0.01)
    add_calls(filled, "beta", latencies=[100.0] * (MIN_CALLS_FOR_LATENCY - 1), cost=0.0)
    # Events older than the window and cache hits do not count.
    add_calls(filled, "delta", latencies=[5.0] * 30, at=filled.clock.now() - timedelta(days=30))
    chat = _by(run_scoring(filled, small_policy()).scores, "chat")
    alpha, beta, delta = chat["alpha"], chat["beta"], chat["delta"]
    # linear interpolation of ranks 94 and 95, within the rollup sketch's documented error
    assert alpha.latency_p95_ms == pytest.approx(95.05, rel=DOCUMENTED_RELATIVE_ERROR)
    assert alpha.success_rate == pytest.approx((100 + 19) / (105 + 20))
    assert alpha.cost_per_1k_tokens == pytest.approx(0.01)
    assert alpha.details["cost_source"].startswith("telemetry")
    assert beta.latency_p95_ms == 1000.0 and beta.details["latency_source"] == "policy prior"
    assert beta.details["cost_source"] == "price table (policy)"  # 19 calls < MIN_CALLS_FOR_OBSERVED_COST
    assert MIN_CALLS_FOR_OBSERVED_COST > 19
    assert delta.success_rate == pytest.approx(0.95) and delta.details["calls"] == 0


def test_cache_hits_are_left_out_of_latency(filled: Store) -> None:
    add_calls(filled, "alpha", latencies=[10.0] * 30)
    add_calls(filled, "alpha", latencies=[5000.0] * 30, cache_hit=True)
    chat = _by(run_scoring(filled, small_policy()).scores, "chat")
    assert chat["alpha"].latency_p95_ms == pytest.approx(10.0, rel=DOCUMENTED_RELATIVE_ERROR)
    assert chat["alpha"].details["calls"] == 60


def test_new_run_becomes_current_atomically_and_rollback(filled: Store) -> None:
    first = run_scoring(filled, small_policy())
    second = run_scoring(filled, small_policy())
    assert first.run_id is not None and second.run_id is not None and second.run_id > first.run_id
    with filled.session() as session:
        current = session.exec(select(ScoringRun).where(col(ScoringRun.is_current).is_(True))).all()
    assert [r.id for r in current] == [second.run_id]
    activate_run(filled, first.run_id)
    with filled.session() as session:
        current = session.exec(select(ScoringRun).where(col(ScoringRun.is_current).is_(True))).all()
    assert [r.id for r in current] == [first.run_id]
    with pytest.raises(ScoringError, match=r"Scoring run 999 does not exist.*Successful runs: "):
        activate_run(filled, 999)


def test_dry_run_stores_nothing(filled: Store) -> None:
    result = run_scoring(filled, small_policy(), dry_run=True)
    assert result.run_id is None and result.scores
    with filled.session() as session:
        assert session.exec(select(ScoringRun)).all() == []


def test_failed_run_keeps_the_previous_current_run(filled: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    good = run_scoring(filled, small_policy())
    import recommender_core.scoring.run as run_module

    def broken(*args: object, **kwargs: object) -> None:
        raise ScoringError("boom")

    monkeypatch.setattr(run_module, "compute_scores", broken)
    with pytest.raises(ScoringError, match="boom"):
        run_scoring(filled, small_policy())
    with filled.session() as session:
        runs = {r.id: r for r in session.exec(select(ScoringRun)).all()}
    assert runs[good.run_id].is_current
    failed = [r for r in runs.values() if r.status == RunStatus.FAILED]
    assert len(failed) == 1 and failed[0].error == "boom" and not failed[0].is_current


def test_old_runs_are_pruned_but_never_the_current_one(filled: Store) -> None:
    ids = [run_scoring(filled, small_policy(), keep_runs=2).run_id for _ in range(4)]
    with filled.session() as session:
        kept = sorted(r.id for r in session.exec(select(ScoringRun)).all() if r.id is not None)
    assert kept == ids[-2:]


def test_price_table_comes_from_the_litellm_json_without_importing_litellm() -> None:
    code = ("import sys, json\nfrom recommender_core.scoring.prices import load_price_table\n"
            "t = load_price_table()\nprint(json.dumps([len(t.prices), 'litellm' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, imported = json.loads(out.stdout)
    assert count > 100 and imported is False
    table = load_price_table()
    assert price_file_path().name == "model_prices_and_context_window_backup.json"
    raw = json.loads(price_file_path().read_text())
    assert table.prices["gpt-4o-mini"].input_per_token == raw["gpt-4o-mini"]["input_cost_per_token"]


def test_default_policy_candidates_have_prices() -> None:
    from recommender_core.policy import load_policy

    policy = load_policy()
    table = load_price_table()
    missing = [n for n, c in policy.candidates.items() if table.for_candidate(n, c) is None]
    assert missing == []
    assert not math.isnan(sum(table.prices["gpt-4.1"].cost_per_call(1000, 100) for _ in range(2)))


def test_mteb_task_reference_and_partial_evidence_are_documented(filled: Store) -> None:
    from recommender_core.policy import parse_policy

    from .scoring_data import SMALL_POLICY

    text = SMALL_POLICY.replace("evidence: [mteb:type/Retrieval]", "evidence: [mteb:task/TaskB]").replace(
        "evidence: [lmsys:text/overall]", "evidence: [lmsys:text/overall, lmsys:text/math]")
    scores = run_scoring(filled, parse_policy(text, path="variant.yaml")).scores
    retrieval, chat = _by(scores, "retrieval"), _by(scores, "chat")
    assert retrieval["emb-one"].quality == pytest.approx(0.7)
    assert retrieval["emb-two"].reason == "no mteb:task/TaskB results for this model"
    # alpha has both references: the mean; delta only overall: imputed from it, with the gap listed.
    overall_alpha, math_alpha = 0.5, elo_win_rate(1300, 1300)
    assert chat["alpha"].quality == pytest.approx((overall_alpha + math_alpha) / 2)
    assert chat["alpha"].evidence == ("lmsys:text/overall", "lmsys:text/math")
    assert chat["delta"].quality == pytest.approx(elo_win_rate(1200, 1300))
    assert chat["delta"].details["missing_evidence"] == ["no lmsys:text/math rating for this model"]


def test_cost_reference_ignores_free_models(filled: Store) -> None:
    """A free (self-hosted) model must not drag the cost reference to 0 for the paid ones."""
    from recommender_core.policy import parse_policy

    from .scoring_data import SMALL_POLICY

    text = SMALL_POLICY.replace("alpha: {provider: acme, price: {input_per_1m: 1.0, output_per_1m: 3.0}",
                                "alpha: {provider: acme, price: {input_per_1m: 0.0, output_per_1m: 0.0}")
    chat = _by(run_scoring(filled, parse_policy(text, path="free.yaml")).scores, "chat")
    # per call (1000 in, 1000 out): alpha free, beta $0.016, delta $0.002; reference = median of
    # the non-zero costs = $0.009.
    assert chat["alpha"].cost == 1.0
    assert chat["delta"].cost == pytest.approx(0.009 / (0.009 + 0.002))
    assert chat["beta"].cost == pytest.approx(0.009 / (0.009 + 0.016))
