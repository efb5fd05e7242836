"""The replay's decisions: items as dense matrices, the evidence/outcome split, and recsys's own scoring and
``route()`` choosing a model per task at each cost weight of the sweep (in memory or a temporary SQLite store)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import EvalError, NoCandidateError
from ..policy import Candidate, Policy, Task, TokenMix, Weights
from .outcomes import Outcomes, aggregate

__all__ = ["ReplayData", "fill_costs", "prepare", "replay_policy", "sweep_weights", "with_cost_weight"]

DEFAULT_SEED = 0
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Backend = Literal["memory", "sqlite"]
CostForm = Literal["relative", "wtp"]


def fill_costs(outcomes: Outcomes, *, token_mix: TokenMix | None = None) -> Outcomes:
    """Costs for rows without ``cost_usd``: litellm's price table times the row's tokens (else the token mix)."""
    missing = ~np.isfinite(outcomes.cost)
    if not missing.any():
        return outcomes
    from ..identity import name_forms
    from ..scoring.prices import load_price_table

    prices = load_price_table().prices
    mix = token_mix or TokenMix()
    cost = outcomes.cost.copy()
    inp = np.where(np.isfinite(outcomes.input_tokens), outcomes.input_tokens, float(mix.input_tokens))
    out = np.where(np.isfinite(outcomes.output_tokens), outcomes.output_tokens, float(mix.output_tokens))
    for m, model in enumerate(outcomes.models):
        rows = missing & (outcomes.model_codes == m)
        if not rows.any():
            continue
        price = next((prices[f] for f in (model, *name_forms(model)) if f in prices), None)
        if price is None:
            raise EvalError(f"Outcomes file {outcomes.path}: model '{model}' has rows without cost_usd and is not "
                            "in litellm's price table; add a cost_usd column (USD per call) for it.")
        cost[rows] = inp[rows] * price.input_per_token + out[rows] * price.output_per_token
    return Outcomes(**{**outcomes.__dict__, "cost": cost})


@dataclass(frozen=True)
class ReplayData:
    """Complete items as dense matrices: ``score``/``cost`` are items x models."""

    outcomes: Outcomes
    task_names: tuple[str, ...]
    models: tuple[str, ...]
    task: IntArray  # per item
    evidence: npt.NDArray[np.bool_]  # per item: in the evidence half
    score: FloatArray
    cost: FloatArray
    dropped_items: int
    binary: npt.NDArray[np.bool_]  # per task


def _hash_half(seed: int, task: str, item: str) -> bool:
    digest = hashlib.sha256(f"{seed}\x00{task}\x00{item}".encode()).digest()
    return digest[0] % 2 == 0


def prepare(outcomes: Outcomes, *, seed: int = DEFAULT_SEED) -> ReplayData:
    """Dense per-item matrices and the evidence/outcome split; items missing a model are dropped."""
    if len(outcomes.models) < 2:
        raise EvalError(f"Outcomes file {outcomes.path} holds one model ('{outcomes.models[0]}'); a replay compares "
                        "models, so the file needs outcomes of at least two models on the same items.")
    n_items = len(outcomes.items) + 1
    key = outcomes.task_codes * n_items + outcomes.item_codes
    uniq, inverse = np.unique(key, return_inverse=True)
    n, m = uniq.shape[0], len(outcomes.models)
    score = np.full((n, m), np.nan)
    cost = np.full((n, m), np.nan)
    score[inverse, outcomes.model_codes] = outcomes.score
    cost[inverse, outcomes.model_codes] = outcomes.cost
    split = np.full(n, -1, dtype=np.int8)
    split[inverse] = outcomes.split
    complete = ~np.isnan(score).any(axis=1)
    task = (uniq // n_items).astype(np.int64)
    item = (uniq % n_items).astype(np.int64)
    evidence = split == 0
    unsplit = np.flatnonzero(split < 0)
    if unsplit.size:
        evidence[unsplit] = [_hash_half(seed, outcomes.tasks[task[i]], outcomes.items[item[i]]) for i in unsplit]
    keep = np.flatnonzero(complete)
    if keep.size == 0:
        raise EvalError(f"Outcomes file {outcomes.path}: no item has a score from every model; a replay needs "
                        "the same items answered by each model.")
    return ReplayData(outcomes=outcomes, task_names=outcomes.tasks, models=outcomes.models, task=task[keep],
                      evidence=evidence[keep], score=score[keep], cost=cost[keep],
                      dropped_items=int(n - keep.size), binary=outcomes.binary_tasks())


# --- the product's decisions ---------------------------------------------------------------------


def replay_policy(tasks: Sequence[str], models: Sequence[str], *, cost_weight: float = 0.0,
                  cost_form: CostForm = "wtp") -> Policy:
    """A policy whose tasks are the file's tasks, each measured by ``outcomes:<task>``, weighing quality
    against cost only (latency and reliability are not in an outcomes file)."""
    weights = Weights(quality=1.0, cost=cost_weight, latency=0.0, reliability=0.0)
    return Policy(
        candidates={m: Candidate(kind="chat") for m in models},
        tasks={t: Task(kind="chat", evidence=(f"outcomes:{t}",), weights=weights, cost_form=cost_form,
                       token_mix=TokenMix(input_tokens=1000, output_tokens=0), static_order=tuple(models))
               for t in tasks},
        source_path="<replay>")


def with_cost_weight(policy: Policy, cost_weight: float) -> Policy:
    weights = Weights(quality=1.0, cost=cost_weight, latency=0.0, reliability=0.0)
    tasks = {name: task.model_copy(update={"weights": weights}) for name, task in policy.tasks.items()}
    return policy.model_copy(update={"tasks": tasks})


class _Decider:
    """Scores and routes with the product's code, from evidence in memory or in a temporary SQLite store."""

    def __init__(self, data: ReplayData, tasks: Sequence[str], cost_form: CostForm, backend: Backend) -> None:
        from ..scoring.prices import PriceTable
        from ..scoring.run import EvidenceValue
        from ..sources.outcomes import records_from_stats

        self.base = replay_policy(tasks, data.models, cost_form=cost_form)
        self.prices = PriceTable(prices={}, path="<replay: costs from the outcomes file>")
        self.backend = backend
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.store: Any = None
        o = data.outcomes
        rows = np.repeat(data.evidence, len(data.models))
        stats = aggregate(_dense_outcomes(data, rows_mask=rows, source=o))
        if backend == "memory":
            records = records_from_stats(stats)
            matcher = self.base.matcher("outcomes")
            self.evidence = [EvidenceValue("outcomes", r.model, matcher.candidate_for(r.model), r.category, None,
                                           r.value, r.lower, r.samples, dict(r.extra)) for r in records]
        else:
            self._open_store(data, rows)

    def _open_store(self, data: ReplayData, rows: npt.NDArray[np.bool_]) -> None:
        from ..config import Settings
        from ..sources.base import IngestOptions
        from ..sources.outcomes import OutcomesSource
        from ..store import Store

        self._tmp = tempfile.TemporaryDirectory(prefix="recsys-replay-")
        folder = Path(self._tmp.name)
        self.store = Store(f"sqlite:///{folder / 'replay.db'}")
        self.store.upgrade()
        path = folder / "evidence-half.parquet"
        _write_long(data, rows, path)
        settings = Settings.load(database_url=f"sqlite:///{folder / 'replay.db'}")
        OutcomesSource(settings=settings, policy=self.base).run(self.store, IngestOptions(mirror=str(path)))

    def close(self) -> None:
        if self.store is not None:
            self.store.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()

    def scores(self, policy: Policy) -> Any:
        from ..routing.table import load_current_table, table_from_scored
        from ..scoring.run import compute_scores, run_scoring

        if self.backend == "memory":
            return table_from_scored(compute_scores(policy, evidence=self.evidence, telemetry={}, prices=self.prices))
        run_scoring(self.store, policy, prices=self.prices)
        return load_current_table(self.store)

    def raw(self, policy: Policy) -> Any:
        from ..scoring.run import compute_scores, load_evidence

        evidence = self.evidence if self.backend == "memory" else load_evidence(self.store, policy)
        return compute_scores(policy, evidence=evidence, telemetry={}, prices=self.prices)

    def choose(self, policy: Policy, table: Any, strategy: str = "utility",
               min_quality: float | None = None) -> dict[str, tuple[str, ...]]:
        from ..routing.decision import route

        chosen: dict[str, tuple[str, ...]] = {}
        for task in policy.tasks:
            try:
                decision = route(task, scores=table, v2_enabled=True, policy=policy, strategy=strategy,
                                 min_quality=min_quality)
            except NoCandidateError:
                continue
            chosen[task] = decision.models
        return chosen


def _dense_outcomes(data: ReplayData, *, rows_mask: npt.NDArray[np.bool_], source: Outcomes) -> Outcomes:
    n, m = data.score.shape
    item_codes = np.repeat(np.arange(n, dtype=np.int64), m)[rows_mask]
    return Outcomes(path=source.path, tasks=data.task_names, models=data.models,
                    items=tuple(str(i) for i in range(n)), task_codes=np.repeat(data.task, m)[rows_mask],
                    item_codes=item_codes, model_codes=np.tile(np.arange(m, dtype=np.int64), n)[rows_mask],
                    score=data.score.ravel()[rows_mask], cost=data.cost.ravel()[rows_mask],
                    input_tokens=np.full(int(rows_mask.sum()), np.nan),
                    output_tokens=np.full(int(rows_mask.sum()), np.nan),
                    split=np.zeros(int(rows_mask.sum()), dtype=np.int8), rows_read=int(rows_mask.sum()))


def _write_long(data: ReplayData, rows: npt.NDArray[np.bool_], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, m = data.score.shape
    tasks = np.array(data.task_names, dtype=object)[np.repeat(data.task, m)][rows]
    models = np.array(data.models, dtype=object)[np.tile(np.arange(m), n)][rows]
    items = np.repeat(np.arange(n), m)[rows].astype(str)
    pq.write_table(pa.table({"task": tasks.tolist(), "item": items.tolist(), "model": models.tolist(),
                             "score": data.score.ravel()[rows], "cost_usd": data.cost.ravel()[rows],
                             "split": ["evidence"] * int(rows.sum())}), path)


def _lines(table: Any, tasks: Sequence[str], models: Sequence[str],
           cost_form: CostForm) -> dict[str, tuple[list[float], list[float]]]:
    """Per task the utility lines ``a + w * b`` of the scored models, from one scoring at weight 0."""
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for s in table:
        if s.excluded or s.quality is None:
            continue
        a, b = lines.setdefault(s.task, ([], []))
        a.append(float(s.quality))
        b.append(-float(s.details.get("cost_per_call", 0.0)) if cost_form == "wtp" else float(s.cost or 0.0))
    return lines


def sweep_weights(lines: Mapping[str, tuple[Sequence[float], Sequence[float]]], points: int,
                  cost_form: CostForm) -> list[float]:
    """Cost weights where per-task choices differ: one per interval between breakpoints, then filled up.

    The breakpoints are where two of a task's utility lines cross; one weight inside each interval where
    the argmax changes, 0, and one past the last breakpoint (the cheapest model wins every task).
    """
    cuts: set[float] = set()
    for a, b in lines.values():
        for i in range(len(a)):
            for j in range(i + 1, len(a)):
                if b[i] != b[j]:
                    w = (a[j] - a[i]) / (b[i] - b[j])
                    if w > 0 and np.isfinite(w):
                        cuts.add(float(w))
    ordered = sorted(cuts)
    values = [0.0]
    if ordered:
        values += [(x + y) / 2 for x, y in pairwise(ordered)]
        values.append(ordered[-1] * 2)
    else:
        values.append(1.0)
    # relative weights saturate (utility (q + w c) / (1 + w)): a large last weight is still finite
    values = sorted(set(values))
    while len(values) < points:
        gaps = [(values[i + 1] / values[i] if values[i] > 0 else np.inf, i) for i in range(len(values) - 1)]
        _, i = max(gaps)
        lo, hi = values[i], values[i + 1]
        values.insert(i + 1, float(np.sqrt(lo * hi)) if lo > 0 else hi / 2)
    if len(values) > points:
        keep = np.unique(np.round(np.linspace(0, len(values) - 1, points)).astype(int))
        values = [values[i] for i in keep]
    return values


# --- routers --------------------------------------------------------------------------------------
