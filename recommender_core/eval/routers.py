"""The replay's routers as configurations (a cost and a score per outcome item) and their measurement: the
baselines (task-oracle, oracle, RouterBench's cascade), the stratified bootstrap, and every figure of the document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from .decide import ReplayData
from .metrics import aiq, apgr, cpt

__all__ = ["ORACLE_STEPS", "measure"]

ORACLE_STEPS = 41
TASK_CI_ROUTERS = ("recsys-utility", "recsys-cascade", "zero")
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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

def _points(cost: FloatArray, score: FloatArray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in zip(cost, score, strict=True)]


def measure(routers: Mapping[str, _Router], data: ReplayData, usable: Sequence[int], task: IntArray,
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


