"""Pure scoring: evidence + telemetry + prices -> a utility table per (task, model).

No SQL and no ``Store``: ``compute_scores`` is a function of plain inputs (the policy, the matched
evidence values, per-model telemetry and a price table), so it is tested and benchmarked without a
database. ``scoring.run`` reads the inputs and ``scoring.persist`` stores the result.

Every component is kept, not only the total, with the evidence used and, for an excluded model, the
reason. The normalisation rules are documented in ``scoring.normalise``; the rules for missing data are:

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
from typing import TYPE_CHECKING, Any

from ..policy import Candidate, Policy, Task
from ..scored import ScoredModel
from ..sources import get_source
from ..sources.base import EvidenceValue
from .normalise import beta_smoothed, median, relative_score
from .prices import ModelPrice, PriceTable

if TYPE_CHECKING:
    from ..telemetry.rollups import ModelTelemetry

__all__ = [
    "DEFAULT_LATENCY_PRIOR_MS",
    "MIN_CALLS_FOR_LATENCY",
    "MIN_CALLS_FOR_OBSERVED_COST",
    "compute_scores",
]

MIN_CALLS_FOR_OBSERVED_COST = 50
MIN_CALLS_FOR_LATENCY = 20
DEFAULT_LATENCY_PRIOR_MS = {"chat": 2000.0, "embedding": 300.0}


class _PerModel:
    """A candidate's telemetry and price, looked up once per run rather than once per (task, model).

    Telemetry: the exact name, else the first (in name order) that matches ignoring case and
    surrounding blanks (a case-blind index built once, not a scan per candidate).
    """

    def __init__(self, telemetry: Mapping[str, ModelTelemetry], prices: PriceTable) -> None:
        self.exact = telemetry
        self.prices = prices
        self.lowered: dict[str, ModelTelemetry] = {}
        for key, found in sorted(telemetry.items()):
            self.lowered.setdefault(key.strip().lower(), found)
        self.memo: dict[str, tuple[ModelTelemetry | None, ModelPrice | None]] = {}

    def of(self, name: str, candidate: Candidate) -> tuple[ModelTelemetry | None, ModelPrice | None]:
        found = self.memo.get(name)
        if found is None:
            tel = self.exact.get(name)
            tel = tel if tel is not None else self.lowered.get(name.strip().lower())
            found = self.memo[name] = (tel, self.prices.for_candidate(name, candidate))
        return found


def _score_task(task_name: str, task: Task, policy: Policy, evidence: Mapping[str, Sequence[EvidenceValue]],
                per_model: _PerModel) -> list[ScoredModel]:
    names = sorted(policy.candidates_of_kind(task.kind))
    per_ref: list[tuple[str, dict[str, float], dict[str, str]]] = []
    ref_details: dict[str, Any] = {}
    for ref in task.evidence_refs:
        # A source's quality reads that source's current evidence (``Source.quality``).
        rows = evidence.get(ref.source, ())
        found = get_source(ref.source).quality(str(ref), ref.selector, rows, names, task)
        per_ref.append((str(ref), dict(found.by_candidate), dict(found.missing)))
        ref_details[str(ref)] = dict(found.details)
    tokens = task.token_mix.input_tokens + task.token_mix.output_tokens
    # A source may report the cost per call it observed (outcomes files with cost_usd): the first reference wins.
    outcome_costs: dict[str, tuple[float, int]] = {}
    for info in reversed(list(ref_details.values())):
        for name, (cost, items) in (info.get("cost_per_call") or {}).items():
            outcome_costs[name] = (float(cost), int(items))
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
        tel, price = per_model.of(name, candidate)
        observed = outcome_costs.get(name)
        details: dict[str, Any] = {"quality_by_evidence": dict(used), "references": ref_details}
        if missing:
            details["missing_evidence"] = missing
        tel_cost = (tel.cost_per_1k_tokens if tel is not None and tel.cost_calls >= MIN_CALLS_FOR_OBSERVED_COST
                    else None)
        if tel is not None and tel_cost is not None:
            cost_per_1k = tel_cost
            details["cost_source"] = f"telemetry ({tel.cost_calls} calls)"
        elif observed is not None:
            cost_per_1k = observed[0] / tokens * 1000.0 if tokens else observed[0]
            details["cost_source"] = f"outcomes ({observed[1]} items)"
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
                        "cost_per_call": observed[0] if observed is not None and tel_cost is None
                        else cost_per_1k * tokens / 1000.0, "p95": p95,
                        "success_rate": beta_smoothed(successes, calls), "evidence": tuple([r for r, _ in used]),
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
            if task.cost_form == "wtp":
                rest = w.quality + w.latency + w.reliability
                utility = ((w.quality * p["quality"] + w.latency * latency + w.reliability * p["success_rate"])
                           / rest if rest > 0 else 0.0) - w.cost * p["cost_per_call"]
            else:
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
    by_source: dict[str, list[EvidenceValue]] = {}
    for row in evidence:
        by_source.setdefault(row.source, []).append(row)
    per_model = _PerModel(telemetry, prices)
    result: list[ScoredModel] = []
    for task_name in sorted(policy.tasks):
        result.extend(_score_task(task_name, policy.tasks[task_name], policy, by_source, per_model))
    return tuple(result)
