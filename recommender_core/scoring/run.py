"""Scoring runs: read the inputs, compute (``scoring.compute``), persist (``scoring.persist``).

The orchestrator: under the ``score`` job lock it starts a run and records a failure through
``store.runs`` (the lifecycle ingest uses too), reads the current evidence and telemetry, calls the
pure ``compute_scores`` and hands the rows to ``save_scores``. The scoring rules are documented in
``scoring.compute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from ..clock import iso_utc
from ..evidence import current_run_ids
from ..policy import Policy
from ..scored import ScoredModel
from ..sources import available_sources, get_source
from ..sources.base import EvidenceValue
from ..sources.validate import usable
from ..store import Store
from ..store.runs import SCORE_JOB, start_run
from ..store.tables import BenchmarkEvidence, RunStatus, ScoringRun
from ..telemetry.rollups import telemetry_by_model
from .compute import DEFAULT_LATENCY_PRIOR_MS, MIN_CALLS_FOR_LATENCY, MIN_CALLS_FOR_OBSERVED_COST, compute_scores
from .persist import make_current, prune_scoring_runs, record_scoring_failure, save_scores
from .prices import PriceTable, load_price_table

__all__ = [
    "DEFAULT_LATENCY_PRIOR_MS",
    "MIN_CALLS_FOR_LATENCY",
    "MIN_CALLS_FOR_OBSERVED_COST",
    "SCORE_JOB",
    "TELEMETRY_WINDOW_HOURS",
    "EvidenceValue",
    "ScoredModel",
    "ScoringResult",
    "activate_run",
    "compute_scores",
    "load_evidence",
    "run_scoring",
]

TELEMETRY_WINDOW_HOURS = 7 * 24


@dataclass(frozen=True)
class ScoringResult:
    """A computed utility table; ``run_id`` is None for a dry run."""

    run_id: int | None
    policy_hash: str
    computed_at: datetime
    scores: tuple[ScoredModel, ...]
    activated: bool = False

    def to_json(self) -> dict[str, Any]:
        tasks: dict[str, dict[str, Any]] = {}
        for s in self.scores:
            entry = tasks.setdefault(s.task, {"scored": 0, "excluded": []})
            if s.excluded:
                entry["excluded"].append({"model": s.model, "reason": s.reason})
            else:
                entry["scored"] += 1
        return {"run_id": self.run_id, "dry_run": self.run_id is None and not self.activated,
                "activated": self.activated, "policy_hash": self.policy_hash,
                "computed_at": iso_utc(self.computed_at), "tasks": tasks,
                "scores": [s.to_json() for s in self.scores]}


def load_evidence(store: Store, policy: Policy) -> list[EvidenceValue]:
    """Current evidence of every evidence source, matched to the policy's candidates."""
    run_ids = current_run_ids(store, list(available_sources()))
    if not run_ids:
        return []
    matchers = {source: policy.matcher(source) for source in run_ids}
    with_extra = {s for s in run_ids if get_source(s).evidence_extra}
    memo: dict[tuple[str, str], str | None] = {}
    rows: list[EvidenceValue] = []
    with store.session() as session:
        query = sa.select(
            col(BenchmarkEvidence.source), col(BenchmarkEvidence.model), col(BenchmarkEvidence.category),
            col(BenchmarkEvidence.task_type), col(BenchmarkEvidence.value), col(BenchmarkEvidence.lower),
            col(BenchmarkEvidence.samples),
        ).where(col(BenchmarkEvidence.run_id).in_([i for s, i in run_ids.items() if s not in with_extra]))
        if with_extra:  # sources whose quality reads the evidence's extra (outcomes: score range, cost)
            extras = sa.select(
                col(BenchmarkEvidence.source), col(BenchmarkEvidence.model), col(BenchmarkEvidence.category),
                col(BenchmarkEvidence.task_type), col(BenchmarkEvidence.value), col(BenchmarkEvidence.lower),
                col(BenchmarkEvidence.samples), col(BenchmarkEvidence.extra),
            ).where(col(BenchmarkEvidence.run_id).in_([run_ids[s] for s in with_extra]))
            for source, model, category, task_type, value, lower, samples, extra in session.execute(extras):
                rows.append(EvidenceValue(source, model, matchers[source].candidate_for(model), category, task_type,
                                          float(value), None if lower is None else float(lower), samples,
                                          dict(extra or {})))
        for source, model, category, task_type, value, lower, samples in session.execute(query):
            if not usable(source, category, value, lower):  # stored before the row rules: left out
                continue
            key = (source, model)
            if key not in memo:
                memo[key] = matchers[source].candidate_for(model)
            rows.append(EvidenceValue(source, model, memo[key], category, task_type, float(value),
                                      None if lower is None else float(lower), samples))
    return rows


def run_scoring(
    store: Store,
    policy: Policy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    prices: PriceTable | None = None,
    telemetry_window_hours: float = TELEMETRY_WINDOW_HOURS,
    keep_runs: int = 30,
) -> ScoringResult:
    """Compute a new utility table and (unless ``dry_run``) store it and make it current in one transaction.

    Runs under the ``score`` job lock. A failure records a failed run and leaves the current run as it was.
    """
    now = now or store.clock.now()
    prices = prices if prices is not None else load_price_table()
    with store.job_lock(SCORE_JOB) as lock:
        if dry_run:
            evidence = load_evidence(store, policy)
            telemetry = telemetry_by_model(store, since=now - timedelta(hours=telemetry_window_hours))
            scores = compute_scores(policy, evidence=evidence, telemetry=telemetry, prices=prices)
            return ScoringResult(run_id=None, policy_hash=policy.hash, computed_at=now, scores=scores)
        run_id = start_run(store, ScoringRun(status=RunStatus.RUNNING, started_at=now, policy_hash=policy.hash))
        try:
            evidence = load_evidence(store, policy)
            telemetry = telemetry_by_model(store, since=now - timedelta(hours=telemetry_window_hours))
            scores = compute_scores(policy, evidence=evidence, telemetry=telemetry, prices=prices)
            included = sum(1 for s in scores if not s.excluded)
            save_scores(store, lock, run_id, scores, {
                "scored": included, "excluded": len(scores) - included, "tasks": sorted(policy.tasks),
                "evidence_rows": len(evidence), "telemetry_models": len(telemetry), "price_table": prices.path})
        except BaseException as exc:
            record_scoring_failure(store, run_id, exc)
            raise
        prune_scoring_runs(store, keep_runs)
    return ScoringResult(run_id=run_id, policy_hash=policy.hash, computed_at=now, scores=scores)


def activate_run(store: Store, run_id: int) -> ScoringResult:
    """Make an earlier successful scoring run current again (rollback), atomically."""
    policy_hash, started_at, scores = make_current(store, run_id)
    return ScoringResult(run_id=run_id, policy_hash=policy_hash, computed_at=started_at, scores=scores,
                         activated=True)
