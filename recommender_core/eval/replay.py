"""``recsys eval replay`` and ``recsys eval calibrate``: the product's decisions measured on held-out outcomes.

Per task the items are split into an evidence half and an outcome half (the ``split`` column, else a
seeded hash of ``(seed, task, item)``). The evidence half becomes outcomes evidence; the product's own
``compute_scores`` and ``route()`` (not a copy of them) choose a model per task at each cost weight of a
sweep; the outcome half measures every choice. Baselines and metrics: see ``docs/decision-quality.md``.

Each router is a set of configurations; a configuration assigns every outcome item a (cost, score).
The bootstrap resamples items within each task (``repeats`` times) with one matrix product, so every
figure's 95% interval costs a few milliseconds.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import EvalError, NoCandidateError, UsageError
from ..policy import Candidate, Policy, Task, TokenMix, Weights
from .metrics import aiq, apgr, cpt
from .outcomes import Outcomes, aggregate

__all__ = [
    "DEFAULT_CASCADE_ERROR",
    "DEFAULT_POINTS",
    "DEFAULT_REPEATS",
    "MIN_POINTS",
    "ReplayData",
    "ReplayResult",
    "calibrate",
    "fill_costs",
    "prepare",
    "replay",
]

MIN_POINTS = 32
DEFAULT_POINTS = 64
DEFAULT_REPEATS = 200
DEFAULT_CASCADE_ERROR = 0.1
DEFAULT_SEED = 0
RANDOM_STEPS = 11
RANDOM_DRAWS = 20  # independent random routings per item, averaged: RouteLLM's random with less noise
ORACLE_STEPS = 41
CASCADE_FLOORS = 12  # quality floors of the cascade (quantiles of the scored qualities), besides none
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


@dataclass
class _Router:
    name: str
    cost: list[FloatArray] = field(default_factory=list)  # per configuration, per outcome item
    score: list[FloatArray] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def add(self, cost: FloatArray, score: FloatArray) -> None:
        """Add a configuration; one that assigns exactly the same (cost, score) to every item adds nothing."""
        key = hash((cost.tobytes(), score.tobytes()))
        if key in self.seen:
            return
        self.seen.add(key)
        self.cost.append(cost)
        self.score.append(score)


def _assign(s: FloatArray, c: FloatArray, task: IntArray, choice: Mapping[int, int]) -> tuple[FloatArray, FloatArray]:
    pick = np.array([choice[int(t)] for t in range(int(task.max()) + 1)], dtype=np.int64)[task] if choice \
        else np.zeros(task.shape[0], dtype=np.int64)
    rows = np.arange(task.shape[0])
    return c[rows, pick[rows]], s[rows, pick[rows]]


def _task_oracle(s: FloatArray, c: FloatArray, task: IntArray, n_tasks: int) -> list[dict[int, int]]:
    """Per-task choices on the upper hull of task-level routers, judged on the outcome half itself."""
    counts = np.bincount(task, minlength=n_tasks)
    q = np.zeros((n_tasks, s.shape[1]))
    k = np.zeros((n_tasks, s.shape[1]))
    for j in range(s.shape[1]):
        q[:, j] = np.bincount(task, weights=s[:, j], minlength=n_tasks)
        k[:, j] = np.bincount(task, weights=c[:, j], minlength=n_tasks)
    present = [t for t in range(n_tasks) if counts[t] > 0]
    lam: set[float] = {0.0}
    for t in present:
        for i in range(s.shape[1]):
            for j in range(i + 1, s.shape[1]):
                if k[t, i] != k[t, j]:
                    w = (q[t, j] - q[t, i]) / (k[t, j] - k[t, i])
                    if w > 0:
                        lam.add(float(w))
    ordered = sorted(lam)
    probes = [0.0] + [(x + y) / 2 for x, y in pairwise(ordered)] + [ordered[-1] * 2 + 1.0]
    configs: list[dict[int, int]] = []
    seen: set[tuple[int, ...]] = set()
    for w in probes:
        util = q - w * k
        # ties: the cheaper model
        choice = {t: int(np.lexsort((k[t], -util[t]))[0]) for t in present}
        key = tuple(choice[t] for t in present)
        if key not in seen:
            seen.add(key)
            configs.append(choice)
    return configs


def _oracle(s: FloatArray, c: FloatArray) -> list[tuple[FloatArray, FloatArray]]:
    """Per item from the cheapest model to the cheapest model with the item's best score, upgrading the
    items with the most score per extra dollar first; the last configuration is the oracle itself."""
    rows = np.arange(s.shape[0])
    order_cost = np.argsort(c + 0.0, axis=1, kind="stable")
    cheap = order_cost[:, 0]
    best_score = s.max(axis=1)
    masked = np.where(s >= best_score[:, None], c, np.inf)
    best = np.argmin(masked, axis=1)
    gain = s[rows, best] - s[rows, cheap]
    extra = c[rows, best] - c[rows, cheap]
    up = np.flatnonzero(gain > 0)
    ratio = np.where(extra[up] > 0, gain[up] / np.maximum(extra[up], 1e-300), np.inf)
    order = up[np.lexsort((-gain[up], -ratio))]
    steps = np.unique(np.round(np.linspace(0, order.size, min(order.size + 1, ORACLE_STEPS))).astype(int))
    result = []
    for k in steps:
        pick = cheap.copy()
        pick[order[:k]] = best[order[:k]]
        result.append((c[rows, pick], s[rows, pick]))
    return result


def _cascade(s: FloatArray, c: FloatArray, orders: Mapping[int, Sequence[int]], task: IntArray,
             pass_mark: FloatArray, error: float, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """RouterBench's cascade: try models in order, pay each attempt, accept when the (noisy) evaluator says
    the score reaches the task's pass mark; the last model's answer stands when none is accepted."""
    n = s.shape[0]
    paid = np.zeros(n)
    final = np.full(n, np.nan)
    open_ = np.ones(n, dtype=bool)
    longest = max((len(o) for o in orders.values()), default=0)
    flips = rng.random((n, max(longest, 1))) < error
    for step in range(longest):
        model = np.array([orders[int(t)][step] if step < len(orders[int(t)]) else -1
                          for t in range(int(task.max()) + 1)], dtype=np.int64)[task]
        last = np.array([step == len(orders[int(t)]) - 1 for t in range(int(task.max()) + 1)], dtype=bool)[task]
        active = open_ & (model >= 0)
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        paid[idx] += c[idx, model[idx]]
        passed = (s[idx, model[idx]] >= pass_mark[task[idx]]) ^ flips[idx, step]
        accept = passed | last[idx]
        final[idx[accept]] = s[idx[accept], model[idx[accept]]]
        open_[idx[accept]] = False
    return paid, final


def _bootstrap_counts(task: IntArray, repeats: int, rng: np.random.Generator) -> FloatArray:
    """Resampling weights (repeats x items): items drawn with replacement within each task."""
    n = task.shape[0]
    counts = np.zeros((repeats, n))
    if repeats == 0:
        return counts
    for t in np.unique(task):
        members = np.flatnonzero(task == t)
        draws = members[rng.integers(0, members.size, size=(repeats, members.size))]
        flat = (draws + (np.arange(repeats) * n)[:, None]).ravel()
        counts += np.bincount(flat, minlength=repeats * n).reshape(repeats, n)
    return counts


def _ci(values: Sequence[float | None]) -> list[float] | None:
    clean = np.array([v for v in values if v is not None], dtype=float)
    if clean.size == 0:
        return None
    return [float(np.quantile(clean, 0.025)), float(np.quantile(clean, 0.975))]


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


@dataclass(frozen=True)
class ReplayResult:
    """The DESIGN.md section 15 document, and the sweep for calibrate."""

    document: dict[str, Any]
    sweep: list[dict[str, Any]]


def replay(outcomes: Outcomes, *, seed: int = DEFAULT_SEED, points: int = DEFAULT_POINTS,
           repeats: int = DEFAULT_REPEATS, cascade_error: float = DEFAULT_CASCADE_ERROR,
           cost_form: CostForm = "wtp", backend: Backend = "memory", per_task: bool = True,
           task_intervals: bool = False, progress: Callable[[str], None] | None = None) -> ReplayResult:
    """Replay ``outcomes`` (costs filled in) and measure every router; see the module docstring."""
    if points < MIN_POINTS:
        raise UsageError(f"--points {points} is too few; the sweep needs at least {MIN_POINTS} cost weights.")
    if repeats < 0:
        raise UsageError("--repeats must be 0 or more.")
    if not 0.0 <= cascade_error < 0.5:
        raise UsageError(f"--cascade-error {cascade_error:g} must be at least 0 and below 0.5.")
    if not np.isfinite(outcomes.cost).all():
        outcomes = fill_costs(outcomes)
    data = prepare(outcomes, seed=seed)
    ev_tasks = set(np.unique(data.task[data.evidence]).tolist())
    out_tasks = set(np.unique(data.task[~data.evidence]).tolist())
    usable = sorted(ev_tasks & out_tasks)
    if not usable:
        raise EvalError(f"Outcomes file {outcomes.path}: no task has items in both halves (evidence and outcome); "
                        "add items, or fix the split column.")
    task_names = [data.task_names[t] for t in usable]
    out_mask = ~data.evidence & np.isin(data.task, usable)
    s, c, task = data.score[out_mask], data.cost[out_mask], data.task[out_mask]
    index_of = {name: i for i, name in enumerate(data.models)}
    decider = _Decider(data, task_names, cost_form, backend)
    rng = np.random.default_rng(seed)
    routers: dict[str, _Router] = {}
    sweep: list[dict[str, Any]] = []
    try:
        base = decider.base
        first = decider.raw(base)
        weights = sweep_weights(_lines(first, task_names, data.models, cost_form), points, cost_form)
        utility = routers.setdefault("recsys-utility", _Router("recsys-utility"))
        table0 = None
        for w in weights:
            policy = with_cost_weight(base, w)
            table = decider.scores(policy)
            table0 = table0 or table
            chosen = decider.choose(policy, table)
            choice = {data.task_names.index(t): index_of[models[0]] for t, models in chosen.items()}
            for t in usable:
                choice.setdefault(t, int(np.argmin(c[task == t].mean(axis=0))))
            cost_v, score_v = _assign(s, c, task, choice)
            utility.add(cost_v, score_v)
            sweep.append({"cost_weight": w, "choices": {data.task_names[t]: data.models[choice[t]] for t in usable},
                          "cost": float(cost_v.mean()), "quality": float(score_v.mean())})
        for j, model in enumerate(data.models):
            routers.setdefault(model, _Router(model)).add(c[:, j], s[:, j])
        # random: per item the best single model with probability p, else the cheapest (RouteLLM's random)
        means_q, means_c = s.mean(axis=0), c.mean(axis=0)
        best_j = int(np.lexsort((means_c, -means_q))[0])
        cheap_j = int(np.lexsort((-means_q, means_c))[0])
        rand = routers.setdefault("random", _Router("random"))
        draws = rng.random((RANDOM_DRAWS, s.shape[0]))
        for p in np.linspace(0.0, 1.0, RANDOM_STEPS):
            strong = (draws < p).mean(axis=0)  # the share of RANDOM_DRAWS coin flips that chose the best model
            rand.add(c[:, cheap_j] + strong * (c[:, best_j] - c[:, cheap_j]),
                     s[:, cheap_j] + strong * (s[:, best_j] - s[:, cheap_j]))
        oracle_t = routers.setdefault("task-oracle", _Router("task-oracle"))
        for choice in _task_oracle(s, c, task, len(data.task_names)):
            oracle_t.add(*_assign(s, c, task, choice))
        oracle = routers.setdefault("oracle", _Router("oracle"))
        for cost_v, score_v in _oracle(s, c):
            oracle.add(cost_v, score_v)
        # cascade: the product's cascade order at each quality floor, pass mark from the evidence half
        ev = data.evidence & np.isin(data.task, usable)
        pass_mark = np.ones(len(data.task_names))
        for t in usable:
            if not data.binary[t]:
                pass_mark[t] = float(np.median(data.score[ev & (data.task == t)]))
        assert table0 is not None  # noqa: S101 - at least MIN_POINTS weights ran
        qualities = sorted({round(float(r.quality), 9) for tt in table0.tasks.values() for r in tt.by_utility})
        picks = np.unique(np.round(np.linspace(0, len(qualities) - 1, min(CASCADE_FLOORS, len(qualities)))))
        floors = [qualities[int(i)] for i in picks]
        cascade = routers.setdefault("recsys-cascade", _Router("recsys-cascade"))
        seen_orders: set[tuple[tuple[int, ...], ...]] = set()
        for floor in [None, *floors]:
            chosen = decider.choose(base, table0, strategy="cascade", min_quality=floor)
            # prefix 1 is the threshold that accepts every first answer (RouterBench's cheapest end)
            for prefix in (None, 2, 1):
                orders = {}
                for t in usable:
                    models = chosen.get(data.task_names[t])
                    order = [index_of[m] for m in models] if models else [int(np.argmax(means_q))]
                    orders[t] = order[:prefix] if prefix else order
                key = tuple(tuple(orders[t]) for t in usable)
                if key in seen_orders:
                    continue
                seen_orders.add(key)
                cascade.add(*_cascade(s, c, orders, task, pass_mark, cascade_error,
                                      np.random.default_rng([seed, len(seen_orders)])))
    finally:
        decider.close()
    counts = _bootstrap_counts(task, repeats, rng)
    document = _measure(routers, data, usable, task, counts, seed=seed, cascade_error=cascade_error,
                        cost_form=cost_form, per_task=per_task, task_intervals=task_intervals)
    document["routers"]["recsys-utility"]["sweep"] = sweep
    return ReplayResult(document=document, sweep=sweep)


def _points(cost: FloatArray, score: FloatArray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in zip(cost, score, strict=True)]


def _measure(routers: Mapping[str, _Router], data: ReplayData, usable: Sequence[int], task: IntArray,
             counts: FloatArray, *, seed: int, cascade_error: float, cost_form: str,
             per_task: bool, task_intervals: bool = False) -> dict[str, Any]:
    names = list(routers)
    costs = {r: np.vstack(routers[r].cost) for r in names}  # configs x items
    scores = {r: np.vstack(routers[r].score) for r in names}
    n = task.shape[0]
    point_c = {r: costs[r].mean(axis=1) for r in names}
    point_q = {r: scores[r].mean(axis=1) for r in names}
    singles = list(data.models)
    max_cost = max(float(point_c[r].max()) for r in names)

    def figures(pc: Mapping[str, FloatArray], pq: Mapping[str, FloatArray],
                mc: float) -> dict[str, tuple[float, float | None, float | None]]:
        single_pts = [(float(pc[m][0]), float(pq[m][0])) for m in singles]
        cheap = min(single_pts, key=lambda p: (p[0], -p[1]))
        best = max(single_pts, key=lambda p: (p[1], -p[0]))
        out: dict[str, tuple[float, float | None, float | None]] = {}
        for r in names:
            pts = _points(pc[r], pq[r])
            multi = len(pts) > 1
            out[r] = (aiq(pts, mc), apgr(pts, cheap, best) if multi else None,
                      cpt(pts, cheap, best) if multi else None)
        out["zero"] = (aiq(single_pts, mc), apgr(single_pts, cheap, best), cpt(single_pts, cheap, best))
        return out

    main = figures(point_c, point_q, max_cost)
    boot: list[dict[str, tuple[float, float | None, float | None]]] = []
    if counts.shape[0]:
        # one product for every configuration of every router: repeats x (configs, cost then score)
        stacked = np.vstack([*(costs[r] for r in names), *(scores[r] for r in names)]).astype(np.float32)
        product = (counts.astype(np.float32) @ stacked.T).astype(np.float64) / n
        bounds = np.cumsum([0, *(costs[r].shape[0] for r in names)])
        half = int(bounds[-1])
        bc = {r: product[:, bounds[k]:bounds[k + 1]] for k, r in enumerate(names)}
        bq = {r: product[:, half + bounds[k]:half + bounds[k + 1]] for k, r in enumerate(names)}
        for i in range(counts.shape[0]):
            pc = {r: bc[r][i] for r in names}
            pq = {r: bq[r][i] for r in names}
            boot.append(figures(pc, pq, max(float(v.max()) for v in pc.values())))
    single_points = [[float(point_c[m][0]), float(point_q[m][0])] for m in singles]
    doc_routers: dict[str, Any] = {}
    for r in [*names[:1], "recsys-cascade", *singles, "zero", "random", "task-oracle", "oracle"]:
        if r in doc_routers:
            continue
        value = main[r]
        pts = single_points if r == "zero" else [[float(x), float(y)] for x, y in zip(point_c[r], point_q[r],
                                                                                         strict=True)]
        doc_routers[r] = {
            "aiq": _round(value[0]), "aiq_ci95": _ci([b[r][0] for b in boot]),
            "apgr": _round(value[1]), "apgr_ci95": _ci([b[r][1] for b in boot]),
            "cpt50": _round(value[2]), "cpt50_ci95": _ci([b[r][2] for b in boot]),
            "points": [[_round(x, 9), _round(y, 9)] for x, y in pts],
        }
    comparisons: dict[str, Any] = {}
    if boot:
        diff = [b["recsys-utility"][0] - b["zero"][0] for b in boot]
        share = [b["recsys-utility"][0] / b["task-oracle"][0] for b in boot if b["task-oracle"][0] > 0]
        comparisons = {
            "aiq recsys-utility - zero": {"value": _round(main["recsys-utility"][0] - main["zero"][0]),
                                          "ci95": _ci(diff)},
            "aiq recsys-utility / task-oracle": {
                "value": _round(main["recsys-utility"][0] / main["task-oracle"][0]) if main["task-oracle"][0] else None,
                "ci95": _ci(share)},
        }
    tasks_doc: dict[str, Any] = {}
    if per_task:
        for t in usable:
            rows = task == t
            pc = {r: costs[r][:, rows].mean(axis=1) for r in names}
            pq = {r: scores[r][:, rows].mean(axis=1) for r in names}
            mc = max(float(v.max()) for v in pc.values())
            f = figures(pc, pq, mc)
            entry: dict[str, Any] = {"items": int(rows.sum()), "max_cost": _round(mc, 9),
                                     "aiq": {r: _round(f[r][0]) for r in f}}
            if counts.shape[0] and task_intervals:
                entry["aiq_ci95"], entry["cascade_minus_zero_ci95"] = _task_intervals(
                    counts[:, rows], [costs[r][:, rows] for r in names], [scores[r][:, rows] for r in names],
                    names, singles)
            tasks_doc[data.task_names[t]] = entry
    cascade_wins = [name for name, d in tasks_doc.items()
                    if (d["aiq"]["recsys-cascade"] or 0) > (d["aiq"]["zero"] or 0)]
    return {
        "seed": seed, "items": int(n), "tasks": [data.task_names[t] for t in usable], "models": list(data.models),
        "max_cost": _round(max_cost, 9), "routers": doc_routers,
        "evidence_items": int((data.evidence & np.isin(data.task, usable)).sum()),
        "dropped_items": data.dropped_items, "rejected_rows": dict(data.outcomes.rejected),
        "cost_form": cost_form, "cascade_error": cascade_error, "repeats": int(counts.shape[0]),
        "comparisons": comparisons, "per_task": tasks_doc, "cascade_beats_zero": cascade_wins,
        # the tasks where the interval of the cascade's AIQ minus zero's lies above 0
        "cascade_beats_zero_ci": [name for name, d in tasks_doc.items()
                                  if (d.get("cascade_minus_zero_ci95") or [0.0])[0] > 0],
    }


TASK_CI_ROUTERS = ("recsys-utility", "recsys-cascade", "zero")


def _task_intervals(counts: FloatArray, costs: Sequence[FloatArray], scores: Sequence[FloatArray],
                    names: Sequence[str], singles: Sequence[str]) -> tuple[dict[str, list[float] | None],
                                                                         list[float] | None]:
    """Within one task, bootstrap intervals of the AIQ of recsys-utility, recsys-cascade and zero, and of
    the cascade's AIQ minus zero's (the same resampled items for all)."""
    n = counts.shape[1]
    stacked = np.vstack([*costs, *scores]).astype(np.float32)
    product = (counts.astype(np.float32) @ stacked.T).astype(np.float64) / max(n, 1)
    bounds = np.cumsum([0, *(c.shape[0] for c in costs)])
    half = int(bounds[-1])
    index = {r: k for k, r in enumerate(names)}
    values: dict[str, list[float]] = {r: [] for r in TASK_CI_ROUTERS}
    diff: list[float] = []
    for i in range(counts.shape[0]):
        row = product[i]
        mc = float(row[:half].max())

        def pts(r: str, row: FloatArray = row) -> list[tuple[float, float]]:
            k = index[r]
            return _points(row[bounds[k]:bounds[k + 1]], row[half + bounds[k]:half + bounds[k + 1]])

        got = {"recsys-utility": aiq(pts("recsys-utility"), mc), "recsys-cascade": aiq(pts("recsys-cascade"), mc),
               "zero": aiq([p for m in singles for p in pts(m)], mc)}
        for r, v in got.items():
            values[r].append(v)
        diff.append(got["recsys-cascade"] - got["zero"])
    return {r: _ci(v) for r, v in values.items()}, _ci(diff)


def calibrate(result: ReplayResult, *, max_cost_per_call: float | None = None,
              min_quality: float | None = None) -> dict[str, Any]:
    """The sweep point meeting the target with the best other figure: the highest quality within the cost
    budget, or the lowest cost reaching the quality; ties go to the larger cost weight (the cheaper habit)."""
    if (max_cost_per_call is None) == (min_quality is None):
        raise UsageError("Give exactly one of --max-cost-per-call and --min-quality.")
    sweep = result.sweep
    if max_cost_per_call is not None:
        ok = [p for p in sweep if p["cost"] <= max_cost_per_call]
        if not ok:
            cheapest = min(p["cost"] for p in sweep)
            raise EvalError(f"No cost weight keeps the replayed mean cost per call within {max_cost_per_call:g} USD; "
                            f"the cheapest choice costs {cheapest:.6g} USD per call.")
        chosen = max(ok, key=lambda p: (p["quality"], -p["cost"], p["cost_weight"]))
    else:
        assert min_quality is not None  # noqa: S101 - exactly one is set
        ok = [p for p in sweep if p["quality"] >= min_quality]
        if not ok:
            top = max(p["quality"] for p in sweep)
            raise EvalError(f"No cost weight reaches a replayed mean quality of {min_quality:g}; the best reaches "
                            f"{top:.6g}.")
        chosen = min(ok, key=lambda p: (p["cost"], -p["quality"], -p["cost_weight"]))
    return {"cost_weight": chosen["cost_weight"], "cost": chosen["cost"], "quality": chosen["quality"],
            "choices": chosen["choices"], "cost_form": result.document["cost_form"],
            "target": {"max_cost_per_call": max_cost_per_call, "min_quality": min_quality}}


def calibrated_policy_text(policy_text: str, *, path: str, cost_weight: float, cost_form: CostForm,
                           tasks: Sequence[str]) -> tuple[str, list[str]]:
    """A copy of the policy YAML with ``cost_weight`` (and ``cost_form``) on the replayed tasks.

    A policy task is replayed when it has the same name as an outcomes task or references
    ``outcomes:<task>``; when none is, every task gets the weight. Comments are not kept.
    """
    import yaml

    from ..policy import parse_policy, parse_yaml

    parse_policy(policy_text, path=path)  # valid before, so the copy is valid after
    data = parse_yaml(policy_text, path=path)
    wanted = set(tasks)
    hit = [name for name, spec in data["tasks"].items()
           if name in wanted or any(str(ref) in {f"outcomes:{t}" for t in wanted} for ref in spec.get("evidence", []))]
    targets = hit or list(data["tasks"])
    for name in targets:
        spec = data["tasks"][name]
        weights = dict(spec.get("weights") or {})
        weights["cost"] = float(cost_weight)
        spec["weights"] = weights
        spec["cost_form"] = cost_form
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    parse_policy(text, path=path)
    return text, targets


def replay_files(paths: Sequence[Path | str], **options: Any) -> ReplayResult:
    """Read (and merge) outcomes files, then ``replay`` them: the one call behind ``recsys eval replay``."""
    from .outcomes import read_many

    return replay(read_many(list(paths)), **options)
