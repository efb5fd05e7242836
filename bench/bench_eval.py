"""``recsys eval replay`` on 150,000 outcome rows vs a bare pyarrow load plus a numpy per-(task, model) mean.

Target (issue 18): a replay of 150,000 rows (11 models, 10 tasks), with a 32-point cost-weight sweep (the
product's scoring and route() once per point) and 200 bootstrap repeats, within 20x the time to load the
same parquet file with pyarrow and take the mean score per (task, model) with numpy, measured in the same run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import Result, interleaved_medians

MODELS = 11
TASKS = 10
ROWS = 150_000
ROUNDS = 5


def _write(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(18)
    items = ROWS // MODELS
    task = np.repeat(np.arange(items) % TASKS, MODELS)
    item = np.repeat(np.arange(items), MODELS)
    model = np.tile(np.arange(MODELS), items)
    skill = rng.uniform(0.4, 0.9, size=(TASKS, MODELS))
    price = np.geomspace(0.0002, 0.02, MODELS)
    score = (rng.random(task.shape[0]) < skill[task, model]).astype(np.float64)
    cost = price[model] * rng.uniform(0.5, 1.5, size=task.shape[0])
    pq.write_table(pa.table({
        "task": pa.array([f"task-{t}" for t in range(TASKS)])[0:TASKS].take(pa.array(task)),
        "item": pa.array(item.astype(str)), "model": pa.array([f"model-{m:02d}" for m in range(MODELS)]).take(
            pa.array(model)),
        "score": score, "cost_usd": cost}), path)


def _bare(path: Path) -> float:
    import pyarrow.parquet as pq

    start = time.perf_counter()
    table = pq.read_table(path)
    task = table.column("task").combine_chunks().dictionary_encode()
    model = table.column("model").combine_chunks().dictionary_encode()
    key = task.indices.to_numpy() * len(model.dictionary) + model.indices.to_numpy()
    score = table.column("score").to_numpy()
    counts = np.bincount(key)
    means = np.bincount(key, weights=score) / np.maximum(counts, 1)
    assert means.shape[0] == TASKS * MODELS
    return time.perf_counter() - start


def _replay(path: Path) -> float:
    from recommender_core.eval.replay import replay_files

    start = time.perf_counter()
    result = replay_files([path], points=32, repeats=200)
    assert len(result.sweep) == 32
    return time.perf_counter() - start


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outcomes.parquet"
        _write(path)
        _bare(path)
        _replay(path)  # warm imports and the page cache for both
        spread: list[float] = []

        def ours() -> float:
            spread.append(_replay(path))
            return spread[-1]

        replay_s, bare_s = interleaved_medians(ours, lambda: _bare(path), rounds=ROUNDS)
    return [Result(name=f"eval replay ({ROWS} rows, {MODELS} models, {TASKS} tasks, 32 points, 200 repeats)",
                   figure=replay_s, baseline=bare_s, unit="s",
                   baseline_name="pyarrow load + numpy per-(task, model) mean", target=20.0,
                   notes=f"median of {ROUNDS} interleaved rounds; replay spread {min(spread):.3f}-{max(spread):.3f} s"
                         f" (stdev {statistics.pstdev(spread):.3f})")]
