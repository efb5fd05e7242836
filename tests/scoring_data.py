"""Evidence and telemetry written straight into the store tables, for scoring and routing tests.

The ingest and telemetry jobs land in parallel; these helpers write the rows those jobs would write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from recommender_core.policy import Policy, parse_policy
from recommender_core.scored import ScoredModel
from recommender_core.store import Store
from recommender_core.store.bulk import insert_utility_scores
from recommender_core.store.tables import BenchmarkEvidence, IngestRun, RunStatus, ScoringRun, TelemetryEvent

# (model, category, rating, lower)
ArenaRow = tuple[str, str, float, float | None]
# (model, task name, task type, score)
MtebRow = tuple[str, str, str, float]

SMALL_POLICY = """
version: 1
candidates:
  alpha: {provider: acme, price: {input_per_1m: 1.0, output_per_1m: 3.0}, latency_prior_ms: 1000}
  beta: {provider: acme, price: {input_per_1m: 4.0, output_per_1m: 12.0}, latency_prior_ms: 1000}
  gamma-unpriced: {provider: acme}
  delta: {provider: acme, price: {input_per_1m: 1.0, output_per_1m: 1.0}, aliases: {lmsys: [delta-2025]}}
  emb-one: {kind: embedding, provider: acme, price: {input_per_1m: 0.1}}
  emb-two: {kind: embedding, provider: acme, price: {input_per_1m: 0.1}}
tasks:
  chat:
    evidence: [lmsys:text/overall]
    weights: {quality: 0.5, cost: 0.5, latency: 0.0, reliability: 0.0}
    token_mix: {input_tokens: 1000, output_tokens: 1000}
    static_order: [beta, alpha]
  math:
    evidence: [lmsys:text/math]
    conservative: true
    weights: {quality: 1.0, cost: 0.0, latency: 0.0, reliability: 0.0}
    static_order: [alpha, beta]
  retrieval:
    kind: embedding
    evidence: [mteb:type/Retrieval]
    weights: {quality: 1.0, cost: 0.0, latency: 0.0, reliability: 0.0}
    token_mix: {input_tokens: 100, output_tokens: 0}
    static_order: [emb-two, emb-one]
"""


def small_policy() -> Policy:
    return parse_policy(SMALL_POLICY, path="small.yaml")


def add_ingest_run(store: Store, source: str, version: str = "test") -> int:
    now = store.clock.now()
    with store.session() as session:
        run = IngestRun(source=source, status=RunStatus.SUCCESS, started_at=now, finished_at=now,
                        source_version=version)
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def add_arena(store: Store, rows: Iterable[ArenaRow], *, config: str = "text") -> int:
    run_id = add_ingest_run(store, "lmsys")
    with store.session() as session:
        for model, category, rating, lower in rows:
            session.add(BenchmarkEvidence(
                run_id=run_id, source="lmsys", model=model, category=category if "/" in category
                else f"{config}/{category}", value=rating, lower=lower,
                upper=None if lower is None else rating + (rating - lower), samples=1000))
    return run_id


def add_mteb(store: Store, rows: Iterable[MtebRow]) -> int:
    run_id = add_ingest_run(store, "mteb")
    with store.session() as session:
        for model, task, task_type, score in rows:
            session.add(BenchmarkEvidence(run_id=run_id, source="mteb", model=model, category=task,
                                          task_type=task_type, metric="main_score", value=score))
    return run_id


def add_calls(store: Store, model: str, *, latencies: Sequence[float], failures: int = 0,
              cost: float | None = None, tokens: int = 1000, at: datetime | None = None,
              cache_hit: bool = False) -> None:
    """One successful event per latency, and ``failures`` failed ones."""
    at = at or store.clock.now() - timedelta(hours=1)
    with store.session() as session:
        for i, latency in enumerate(latencies):
            session.add(TelemetryEvent(
                event_id=uuid.uuid4().hex, model=model, model_group=model, status="success",
                started_at=at + timedelta(seconds=i), latency_ms=latency, prompt_tokens=tokens, completion_tokens=0,
                cost=cost, cache_hit=cache_hit))
        for i in range(failures):
            session.add(TelemetryEvent(event_id=uuid.uuid4().hex, model=model, model_group=model,
                                       status="failure", error_class="RateLimitError",
                                       started_at=at + timedelta(seconds=i)))


def add_scoring_run(store: Store, scores: Sequence[ScoredModel], *, current: bool = True,
                    policy_hash: str = "test", at: datetime | None = None) -> int:
    """A successful scoring run that finished at ``at`` (default: now) holding ``scores``, written as
    ``score`` writes them (``insert_utility_scores``); the current run unless ``current`` is False."""
    at = at or store.clock.now()
    with store.session() as session:
        run = ScoringRun(status=RunStatus.SUCCESS, started_at=at - timedelta(minutes=1), finished_at=at,
                         policy_hash=policy_hash, is_current=current)
        session.add(run)
        session.flush()
        assert run.id is not None
        assert insert_utility_scores(session, run_id=run.id, scores=scores) == len(scores)
        return run.id
