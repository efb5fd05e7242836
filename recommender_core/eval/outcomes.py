"""The long outcomes format: read, validate and aggregate per-item results of models.

One row per (item, model): ``task``, ``item`` (unique within a task), ``model``, ``score`` (finite; higher
is better; 0/1 for pass/fail), and optionally ``cost_usd`` (finite, >= 0, per call), ``latency_ms``,
``input_tokens``, ``output_tokens`` and ``split`` (``evidence`` | ``outcome``). CSV, JSONL or parquet by
extension. Bad rows are rejected and counted per reason (the reason names the rule, never the value);
more than ``MAX_REJECTED_FRACTION`` of them fails the whole read, like any source's ingest.

Arrays stay in numpy from the pyarrow read to the aggregates: a 150,000-row file aggregates in
milliseconds.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import SourceSchemaError

__all__ = [
    "MAX_REJECTED_FRACTION",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "Outcomes",
    "TaskModelStats",
    "aggregate",
    "read_many",
    "read_outcomes",
    "wilson_interval",
]

REQUIRED_COLUMNS = ("task", "item", "model", "score")
OPTIONAL_COLUMNS = ("cost_usd", "latency_ms", "input_tokens", "output_tokens", "split")
SPLITS = ("evidence", "outcome")
MAX_REJECTED_FRACTION = 0.05
Z95 = 1.959963984540054
SUFFIXES = {".csv": "csv", ".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet",
            ".pq": "parquet"}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Outcomes:
    """Validated outcome rows as columns. Strings are factorised: ``task_codes`` index ``tasks`` and so on.

    ``cost`` and the token columns are NaN where the file has no value; ``split`` is -1 (none), 0
    (evidence) or 1 (outcome).
    """

    path: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    items: tuple[str, ...]
    task_codes: IntArray
    item_codes: IntArray
    model_codes: IntArray
    score: FloatArray
    cost: FloatArray
    input_tokens: FloatArray
    output_tokens: FloatArray
    split: npt.NDArray[np.int8]
    rows_read: int
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return int(self.score.shape[0])

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def binary_tasks(self) -> npt.NDArray[np.bool_]:
        """Per task: True when every score of the task is 0 or 1 (pass/fail)."""
        nonbinary = (self.score != 0.0) & (self.score != 1.0)
        counts = np.bincount(self.task_codes[nonbinary], minlength=len(self.tasks))
        return np.asarray(counts == 0)


@dataclass(frozen=True)
class TaskModelStats:
    """One (task, model) aggregate: the evidence row an outcomes source writes."""

    task: str
    model: str
    mean: float
    count: int
    lower: float
    upper: float
    binary: bool
    score_min: float
    score_max: float
    cost_per_call: float | None


def _fail(path: str, message: str) -> SourceSchemaError:
    return SourceSchemaError(f"Outcomes file {path}: {message}", source="outcomes")


def _read_table(path: Path) -> Any:
    import pyarrow as pa

    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise _fail(str(path), f"unknown extension '{path.suffix}'; use .csv, .jsonl or .parquet.")
    if not path.is_file():
        raise _fail(str(path), "does not exist; pass a CSV, JSONL or parquet file in the long outcomes format.")
    try:
        if kind == "csv":
            import pyarrow.csv as pacsv

            # ids stay strings ("007" is not 7); numbers are parsed below, row by row when needed
            strings = {c: pa.string() for c in ("task", "item", "model", "split")}
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=strings))
        if kind == "json":
            import pyarrow.json as pajson

            return pajson.read_json(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(str(path), f"cannot be parsed as {kind} ({first[:200]}); check the file's format.") from exc


def _strings(column: Any) -> tuple[IntArray, tuple[str, ...], npt.NDArray[np.bool_]]:
    """Factorised string column: codes, the values, and a mask of missing or empty entries."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    column = pc.utf8_trim_whitespace(column)
    encoded = column.combine_chunks().dictionary_encode() if isinstance(column, pa.ChunkedArray) \
        else column.dictionary_encode()
    values = tuple(str(v) for v in encoded.dictionary.to_pylist())
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    missing = codes < 0
    empty = [i for i, v in enumerate(values) if v == ""]
    if empty:
        missing |= np.isin(codes, empty)
    return codes, values, missing


def _numbers(column: Any) -> FloatArray:
    """A float column; entries that are missing or not numbers become NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int8())
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    out = np.full(len(column), np.nan)
    for i, value in enumerate(column.to_pylist()):
        if isinstance(value, bool):
            out[i] = float(value)
        elif isinstance(value, int | float):
            out[i] = float(value)
        elif isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "false"):
                out[i] = 1.0 if text == "true" else 0.0
            else:
                try:
                    out[i] = float(text)
                except ValueError:
                    out[i] = math.nan
    return out


def read_outcomes(path: Path | str, *, max_rejected: float = MAX_REJECTED_FRACTION) -> Outcomes:
    """Read and validate an outcomes file; raises SourceSchemaError (one line) when it cannot be used."""
    file = Path(path)
    table = _read_table(file)
    where = str(file)
    names = set(table.column_names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise _fail(where, f"has no column {', '.join(repr(m) for m in missing)}; the long format needs "
                           f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}).")
    n = table.num_rows
    if n == 0:
        raise _fail(where, "holds no rows; nothing to read.")
    rejected: Counter[str] = Counter()
    keep = np.ones(n, dtype=bool)

    def reject(mask: npt.NDArray[np.bool_], reason: str) -> None:
        new = mask & keep
        count = int(new.sum())
        if count:
            rejected[reason] += count
            keep[new] = False

    task_codes, tasks, task_missing = _strings(table.column("task"))
    item_codes, items, item_missing = _strings(table.column("item"))
    model_codes, models, model_missing = _strings(table.column("model"))
    reject(task_missing, "task: missing or empty")
    reject(item_missing, "item: missing or empty")
    reject(model_missing, "model: missing or empty")
    score = _numbers(table.column("score"))
    reject(~np.isfinite(score), "score: not a finite number")

    def optional(name: str, *, nonnegative: bool = True) -> FloatArray:
        if name not in names:
            return np.full(n, np.nan)
        values = _numbers(table.column(name))
        raw_null = np.asarray(table.column(name).is_null().to_numpy(zero_copy_only=False), dtype=bool)
        bad = ~raw_null & ~np.isfinite(values)
        if nonnegative:
            bad |= np.isfinite(values) & (values < 0)
        reject(bad, f"{name}: not a finite number >= 0")
        return values

    cost = optional("cost_usd")
    optional("latency_ms")
    input_tokens = optional("input_tokens")
    output_tokens = optional("output_tokens")
    split = np.full(n, -1, dtype=np.int8)
    if "split" in names:
        codes, values, empty = _strings(table.column("split"))
        lookup = np.array([SPLITS.index(v) if v in SPLITS else -2 for v in values] or [-2], dtype=np.int8)
        split = np.where(empty, -1, lookup[np.maximum(codes, 0)]).astype(np.int8)
        reject(split == -2, "split: not 'evidence' or 'outcome'")
    # duplicates of (task, item, model): the first row counts, the others are rejected
    valid = np.flatnonzero(keep)
    key = (task_codes[valid] * (len(items) + 1) + item_codes[valid]) * (len(models) + 1) + model_codes[valid]
    _, first = np.unique(key, return_index=True)
    duplicate = np.ones(valid.shape[0], dtype=bool)
    duplicate[first] = False
    dup_mask = np.zeros(n, dtype=bool)
    dup_mask[valid[duplicate]] = True
    reject(dup_mask, "duplicate (task, item, model)")

    total_rejected = sum(rejected.values())
    if total_rejected / n > max_rejected:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in rejected.most_common(5))
        raise _fail(where, f"{total_rejected} of {n} rows were rejected ({reasons}), more than "
                           f"{max_rejected:.0%}; fix the file (nothing was used).")
    idx = np.flatnonzero(keep)
    return _compact(where, tasks, models, items, task_codes[idx], item_codes[idx], model_codes[idx], score[idx],
                    cost[idx], input_tokens[idx], output_tokens[idx], split[idx], n, rejected)


def _compact(path: str, tasks: tuple[str, ...], models: tuple[str, ...], items: tuple[str, ...],
             task_codes: IntArray, item_codes: IntArray, model_codes: IntArray, score: FloatArray,
             cost: FloatArray, input_tokens: FloatArray, output_tokens: FloatArray,
             split: npt.NDArray[np.int8], rows_read: int, rejected: Counter[str]) -> Outcomes:
    """Drop dictionary entries no kept row uses (a rejected row's model is not a model of the file)."""

    def squeeze(codes: IntArray, values: tuple[str, ...]) -> tuple[IntArray, tuple[str, ...]]:
        used, inverse = np.unique(codes, return_inverse=True)
        return inverse.astype(np.int64), tuple(values[i] for i in used)

    tc, tv = squeeze(task_codes, tasks)
    mc, mv = squeeze(model_codes, models)
    ic, iv = squeeze(item_codes, items)
    return Outcomes(path=path, tasks=tv, models=mv, items=iv, task_codes=tc, item_codes=ic, model_codes=mc,
                    score=score, cost=cost, input_tokens=input_tokens, output_tokens=output_tokens, split=split,
                    rows_read=rows_read, rejected=rejected)


def read_many(paths: list[Path | str] | tuple[Path | str, ...]) -> Outcomes:
    """Several outcomes files as one (each validated on its own; a (task, item, model) twice is rejected)."""
    if not paths:
        raise _fail("(none)", "give at least one outcomes file.")
    parts = [read_outcomes(p) for p in paths]
    if len(parts) == 1:
        return parts[0]

    def names(attr: str, codes: str) -> npt.NDArray[np.str_]:
        return np.concatenate([np.asarray(getattr(o, attr), dtype=object)[getattr(o, codes)] for o in parts])

    tasks, task_codes = np.unique(names("tasks", "task_codes"), return_inverse=True)
    items, item_codes = np.unique(names("items", "item_codes"), return_inverse=True)
    models, model_codes = np.unique(names("models", "model_codes"), return_inverse=True)
    rejected: Counter[str] = Counter()
    for o in parts:
        rejected.update(o.rejected)
    key = (task_codes * (len(items) + 1) + item_codes) * (len(models) + 1) + model_codes
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(key.shape[0], dtype=bool)
    keep[first] = True
    if (~keep).any():
        rejected["duplicate (task, item, model)"] += int((~keep).sum())

    def cat(attr: str) -> Any:
        return np.concatenate([getattr(o, attr) for o in parts])[keep]

    return _compact(", ".join(str(p) for p in paths), tuple(map(str, tasks)), tuple(map(str, models)),
                    tuple(map(str, items)), task_codes[keep].astype(np.int64), item_codes[keep].astype(np.int64),
                    model_codes[keep].astype(np.int64), cat("score"), cat("cost"), cat("input_tokens"),
                    cat("output_tokens"), cat("split"), sum(o.rows_read for o in parts), rejected)


def wilson_interval(successes: FloatArray, n: FloatArray, z: float = Z95) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a proportion (vectorised)."""
    n = np.maximum(n, 1.0)
    p = np.clip(successes / n, 0.0, 1.0)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def aggregate(outcomes: Outcomes, rows: npt.NDArray[np.bool_] | None = None) -> list[TaskModelStats]:
    """Per (task, model) over ``rows`` (default all): mean, count and a 95% interval.

    The interval is Wilson's for a pass/fail task, else the normal one, mean +- 1.96 sd / sqrt(n).
    ``cost_per_call`` is the mean ``cost_usd`` when every row of the pair has one, else None.
    """
    mask = np.ones(outcomes.rows, dtype=bool) if rows is None else rows
    n_models = len(outcomes.models)
    key = outcomes.task_codes[mask] * n_models + outcomes.model_codes[mask]
    size = len(outcomes.tasks) * n_models
    score = outcomes.score[mask]
    cost = outcomes.cost[mask]
    count: FloatArray = np.bincount(key, minlength=size).astype(np.float64)
    total = np.bincount(key, weights=score, minlength=size)
    squares = np.bincount(key, weights=score * score, minlength=size)
    known = np.isfinite(cost)
    cost_count = np.bincount(key[known], minlength=size)
    cost_total = np.bincount(key[known], weights=cost[known], minlength=size)
    mean = np.divide(total, count, out=np.zeros(size), where=count > 0)
    var = np.maximum(np.divide(squares, count, out=np.zeros(size), where=count > 0) - mean * mean, 0.0)
    sd = np.sqrt(var * np.divide(count, count - 1, out=np.zeros(size), where=count > 1))
    half = Z95 * np.divide(sd, np.sqrt(count), out=np.zeros(size), where=count > 0)
    w_lower, w_upper = wilson_interval(total.astype(np.float64), count)
    binary = outcomes.binary_tasks()
    task_of = outcomes.task_codes[mask]
    t_size = len(outcomes.tasks)
    lo = np.full(t_size, np.inf)
    hi = np.full(t_size, -np.inf)
    np.minimum.at(lo, task_of, score)
    np.maximum.at(hi, task_of, score)
    result: list[TaskModelStats] = []
    for k in np.flatnonzero(count > 0):
        t, m = divmod(int(k), n_models)
        is_binary = bool(binary[t])
        result.append(TaskModelStats(
            task=outcomes.tasks[t], model=outcomes.models[m], mean=float(mean[k]), count=int(count[k]),
            lower=float(w_lower[k] if is_binary else mean[k] - half[k]),
            upper=float(w_upper[k] if is_binary else mean[k] + half[k]), binary=is_binary,
            score_min=float(lo[t]), score_max=float(hi[t]),
            cost_per_call=float(cost_total[k] / cost_count[k]) if cost_count[k] == count[k] else None))
    return result
