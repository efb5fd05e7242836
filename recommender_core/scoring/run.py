"""Scoring runs: evidence + telemetry + prices -> a utility table per (task, model), made current atomically.

Every component is stored, not only the total (``UtilityScore``), with the evidence used and, for an
excluded model, the reason. The normalisation rules are documented in ``scoring.normalise``; the
rules for missing data are:

- no quality evidence for any of the task's references: excluded (the reason names each reference);
  evidence for some references only: the quality is the mean over those it has, and the missing ones
  are listed in ``details["missing_evidence"]``;
- MTEB type coverage below ``MTEB_MIN_COVERAGE``: excluded for that reference;
- no price (neither in litellm's table nor in the policy) and too little observed cost: excluded;
- no latency telemetry (fewer than ``MIN_CALLS_FOR_LATENCY`` measured calls): the policy prior
  (candidate, else task, else ``DEFAULT_LATENCY_PRIOR_MS`` by kind), recorded as ``latency_source``;
- no calls at all: reliability is the Beta prior mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from ..errors import RecsysError, ScoringError
from ..evidence import current_run_ids
from ..policy import Policy, Task
from ..redact import redact_text
from ..sources import available_sources, get_source
from ..sources.base import EvidenceValue
from ..sources.validate import usable
from ..store import Store
from ..store.bulk import insert_utility_scores
from ..store.runs import ABANDONED_ERROR, SCORE_JOB, claim_run
from ..store.tables import BenchmarkEvidence, RunStatus, ScoringRun, UtilityScore
from ..telemetry.rollups import ModelTelemetry, telemetry_by_model
from .normalise import beta_smoothed, median, relative_score
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
MIN_CALLS_FOR_OBSERVED_COST = 50
MIN_CALLS_FOR_LATENCY = 20
DEFAULT_LATENCY_PRIOR_MS = {"chat": 2000.0, "embedding": 300.0}


@dataclass(frozen=True)
class ScoredModel:
    """One (task, model) row of a utility table; components in [0, 1], None when excluded."""

    task: str
    model: str
    utility: float | None
    quality: float | None
    cost: float | None
    latency: float | None
    reliability: float | None
    cost_per_1k_tokens: float | None
    latency_p95_ms: float | None
    success_rate: float | None
    excluded: bool
    reason: str | None
    evidence: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task, "model": self.model, "utility": self.utility, "quality": self.quality,
            "cost": self.cost, "latency": self.latency, "reliability": self.reliability,
            "cost_per_1k_tokens": self.cost_per_1k_tokens, "latency_p95_ms": self.latency_p95_ms,
            "success_rate": self.success_rate, "excluded": self.excluded, "reason": self.reason,
            "evidence": list(self.evidence), "details": dict(self.details),
        }


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
                "computed_at": self.computed_at.isoformat().replace("+00:00", "Z"), "tasks": tasks,
                "scores": [s.to_json() for s in self.scores]}


def load_evidence(store: Store, policy: Policy) -> list[EvidenceValue]:
    """Current evidence of every evidence source, matched to the policy's candidates."""
    run_ids = current_run_ids(store, list(available_sources()))
    if not run_ids:
        return []
    matchers = {source: policy.matcher(source) for source in run_ids}
    memo: dict[tuple[str, str], str | None] = {}
    rows: list[EvidenceValue] = []
    with store.session() as session:
        query = sa.select(
            col(BenchmarkEvidence.source), col(BenchmarkEvidence.model), col(BenchmarkEvidence.category),
            col(BenchmarkEvidence.task_type), col(BenchmarkEvidence.value), col(BenchmarkEvidence.lower),
            col(BenchmarkEvidence.samples),
        ).where(col(BenchmarkEvidence.run_id).in_(list(run_ids.values())))
        for source, model, category, task_type, value, lower, samples in session.execute(query):
            if not usable(source, category, value, lower):  # stored before the row rules: left out
                continue
            key = (source, model)
            if key not in memo:
                memo[key] = matchers[source].candidate_for(model)
            rows.append(EvidenceValue(source, model, memo[key], category, task_type, float(value),
                                      None if lower is None else float(lower), samples))
    return rows


def _telemetry_for(name: str, telemetry: Mapping[str, ModelTelemetry]) -> ModelTelemetry | None:
    found = telemetry.get(name)
    if found is not None:
        return found
    lowered = name.strip().lower()
    return next((t for key, t in sorted(telemetry.items()) if key.strip().lower() == lowered), None)


def _score_task(task_name: str, task: Task, policy: Policy, evidence: Sequence[EvidenceValue],
                telemetry: Mapping[str, ModelTelemetry], prices: PriceTable) -> list[ScoredModel]:
    names = sorted(policy.candidates_of_kind(task.kind))
    per_ref: list[tuple[str, dict[str, float], dict[str, str]]] = []
    ref_details: dict[str, Any] = {}
    for ref in task.evidence_refs:
        found = get_source(ref.source).quality(str(ref), ref.selector, evidence, names, task)
        per_ref.append((str(ref), dict(found.by_candidate), dict(found.missing)))
        ref_details[str(ref)] = dict(found.details)
    tokens = task.token_mix.input_tokens + task.token_mix.output_tokens
    excluded: list[ScoredModel] = []
    partial: list[dict[str, Any]] = []
    for name in names:
        candidate = policy.candidates[name]
        used = [(ref, q[name]) for ref, q, _ in per_ref if name in q]
        missing = [miss[name] for _, _, miss in per_ref if name in miss]
        if not used:
            excluded.append(_excluded(task_name, name, "; ".join(missing), ()))
            continue
        quality = sum(q for _, q in used) / len(used)
        tel = _telemetry_for(name, telemetry)
        price = prices.for_candidate(name, candidate)
        details: dict[str, Any] = {"quality_by_evidence": dict(used), "references": ref_details}
        if missing:
            details["missing_evidence"] = missing
        if tel is not None and tel.cost_calls >= MIN_CALLS_FOR_OBSERVED_COST and tel.cost_per_1k_tokens is not None:
            cost_per_1k = tel.cost_per_1k_tokens
            details["cost_source"] = f"telemetry ({tel.cost_calls} calls)"
        elif price is not None:
            per_call = price.cost_per_call(task.token_mix.input_tokens, task.token_mix.output_tokens)
            cost_per_1k = per_call / tokens * 1000.0 if tokens else 0.0
            details["cost_source"] = f"price table ({price.origin})"
        else:
            excluded.append(_excluded(task_name, name, (
                "no price: not in litellm's price table, no 'price' override in the policy, and fewer than "
                f"{MIN_CALLS_FOR_OBSERVED_COST} calls with a reported cost"), tuple(r for r, _ in used)))
            continue
        if tel is not None and tel.latency_samples >= MIN_CALLS_FOR_LATENCY and tel.latency_p95_ms is not None:
            p95 = tel.latency_p95_ms
            details["latency_source"] = f"telemetry p95 ({tel.latency_samples} calls)"
        else:
            p95 = candidate.latency_prior_ms or task.latency_prior_ms or DEFAULT_LATENCY_PRIOR_MS[task.kind]
            details["latency_source"] = "policy prior"
        calls, successes = (tel.calls, tel.successes) if tel is not None else (0, 0)
        details["calls"] = calls
        partial.append({"model": name, "quality": quality, "cost_per_1k": cost_per_1k,
                        "cost_per_call": cost_per_1k * tokens / 1000.0, "p95": p95,
                        "success_rate": beta_smoothed(successes, calls), "evidence": tuple(r for r, _ in used),
                        "details": details})
    scored: list[ScoredModel] = []
    if partial:
        w = task.weights
        total = w.quality + w.cost + w.latency + w.reliability
        # The reference is the median of the non-zero values: with mostly self-hosted (free) models
        # a median of 0 would score every paid model 0, whatever its price.
        cost_ref = median([p["cost_per_call"] for p in partial if p["cost_per_call"] > 0] or [0.0])
        latency_ref = median([p["p95"] for p in partial if p["p95"] > 0] or [0.0])
        for p in partial:
            cost = relative_score(p["cost_per_call"], cost_ref)
            latency = relative_score(p["p95"], latency_ref)
            utility = (w.quality * p["quality"] + w.cost * cost + w.latency * latency
                       + w.reliability * p["success_rate"]) / total
            p["details"].update({"cost_reference_per_call": cost_ref, "latency_reference_ms": latency_ref,
                                 "cost_per_call": p["cost_per_call"]})
            scored.append(ScoredModel(
                task=task_name, model=p["model"], utility=utility, quality=p["quality"], cost=cost,
                latency=latency, reliability=p["success_rate"], cost_per_1k_tokens=p["cost_per_1k"],
                latency_p95_ms=p["p95"], success_rate=p["success_rate"], excluded=False, reason=None,
                evidence=p["evidence"], details=p["details"]))
    return scored + excluded


def _excluded(task: str, model: str, reason: str, evidence: tuple[str, ...]) -> ScoredModel:
    return ScoredModel(task=task, model=model, utility=None, quality=None, cost=None, latency=None,
                       reliability=None, cost_per_1k_tokens=None, latency_p95_ms=None, success_rate=None,
                       excluded=True, reason=reason, evidence=evidence)


def compute_scores(policy: Policy, *, evidence: Sequence[EvidenceValue],
                   telemetry: Mapping[str, ModelTelemetry], prices: PriceTable) -> tuple[ScoredModel, ...]:
    """The utility table for every task of ``policy``: a pure function of its inputs."""
    result: list[ScoredModel] = []
    for task_name in sorted(policy.tasks):
        result.extend(_score_task(task_name, policy.tasks[task_name], policy, evidence, telemetry, prices))
    return tuple(result)


def _row(run_id: int, s: ScoredModel) -> dict[str, Any]:
    return {"run_id": run_id, "task": s.task, "model": s.model, "utility": s.utility, "quality": s.quality,
            "cost": s.cost, "latency": s.latency, "reliability": s.reliability,
            "cost_per_1k_tokens": s.cost_per_1k_tokens, "latency_p95_ms": s.latency_p95_ms,
            "success_rate": s.success_rate, "excluded": s.excluded, "reason": s.reason,
            "evidence": list(s.evidence), "details": dict(s.details)}


def _prune(store: Store, keep: int) -> None:
    with store.session() as session:
        ids = session.exec(
            select(ScoringRun.id).where(col(ScoringRun.status) != RunStatus.RUNNING,
                                        col(ScoringRun.is_current).is_(False))
            .order_by(col(ScoringRun.id).desc()).offset(max(keep - 1, 0))
        ).all()
        doomed = [i for i in ids if i is not None]
        if doomed:
            session.execute(sa.delete(UtilityScore).where(col(UtilityScore.run_id).in_(doomed)))
            session.execute(sa.delete(ScoringRun).where(col(ScoringRun.id).in_(doomed)))


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
        with store.session() as session:
            session.execute(
                sa.update(ScoringRun).where(col(ScoringRun.status) == RunStatus.RUNNING)
                .values(status=RunStatus.ABANDONED, finished_at=now, error=ABANDONED_ERROR))
            run = ScoringRun(status=RunStatus.RUNNING, started_at=now, policy_hash=policy.hash)
            session.add(run)
            session.flush()
            assert run.id is not None  # noqa: S101 - flush assigns the key
            run_id = run.id
        try:
            evidence = load_evidence(store, policy)
            telemetry = telemetry_by_model(store, since=now - timedelta(hours=telemetry_window_hours))
            scores = compute_scores(policy, evidence=evidence, telemetry=telemetry, prices=prices)
            included = sum(1 for s in scores if not s.excluded)
            with store.session() as session:
                claim_run(session.connection(), lock, ScoringRun, run_id)  # still this run's job?
                insert_utility_scores(session, run_id=run_id, scores=scores)  # COPY / executemany
                session.execute(sa.update(ScoringRun).where(col(ScoringRun.is_current).is_(True))
                                .values(is_current=False))
                session.execute(sa.update(ScoringRun).where(col(ScoringRun.id) == run_id).values(
                    status=RunStatus.SUCCESS, is_current=True, finished_at=store.clock.now(),
                    details={"scored": included, "excluded": len(scores) - included,
                             "tasks": sorted(policy.tasks), "evidence_rows": len(evidence),
                             "telemetry_models": len(telemetry), "price_table": prices.path}))
        except BaseException as exc:
            message = str(exc) if isinstance(exc, RecsysError) else f"{type(exc).__name__}: {exc}"
            try:
                with store.session() as session:
                    session.execute(sa.update(ScoringRun).where(col(ScoringRun.id) == run_id).values(
                        status=RunStatus.FAILED, finished_at=store.clock.now(), error=redact_text(message)))
            except RecsysError:
                pass  # the store itself failed; the next run marks this one abandoned
            raise
        _prune(store, keep_runs)
    return ScoringResult(run_id=run_id, policy_hash=policy.hash, computed_at=now, scores=scores)


def activate_run(store: Store, run_id: int) -> ScoringResult:
    """Make an earlier successful scoring run current again (rollback), atomically."""
    with store.job_lock(SCORE_JOB) as lock, store.session() as session:
        lock.check(session.connection())
        run = session.get(ScoringRun, run_id)
        if run is None or run.status != RunStatus.SUCCESS:
            ok = session.exec(select(ScoringRun.id).where(col(ScoringRun.status) == RunStatus.SUCCESS)
                              .order_by(col(ScoringRun.id).desc()).limit(10)).all()
            what = "does not exist" if run is None else f"has status '{run.status}'"
            listed = ", ".join(str(i) for i in ok) or "none (run 'recsys score' first)"
            raise ScoringError(f"Scoring run {run_id} {what}; only successful runs can be made current. "
                               f"Successful runs: {listed}.")
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.is_current).is_(True)).values(is_current=False))
        session.execute(sa.update(ScoringRun).where(col(ScoringRun.id) == run_id).values(is_current=True))
        rows = session.exec(select(UtilityScore).where(col(UtilityScore.run_id) == run_id)).all()
        scores = tuple(ScoredModel(
            task=r.task, model=r.model, utility=r.utility, quality=r.quality, cost=r.cost, latency=r.latency,
            reliability=r.reliability, cost_per_1k_tokens=r.cost_per_1k_tokens, latency_p95_ms=r.latency_p95_ms,
            success_rate=r.success_rate, excluded=r.excluded, reason=r.reason, evidence=tuple(r.evidence),
            details=dict(r.details)) for r in rows)
        return ScoringResult(run_id=run_id, policy_hash=run.policy_hash or "", computed_at=run.started_at,
                             scores=scores, activated=True)


