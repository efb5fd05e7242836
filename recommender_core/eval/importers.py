"""Readers for published routing data, writing the long outcomes format (``recsys eval import``).

- ``routellm``: RouteLLM's per-prompt results (lm-sys/RouteLLM, ``routellm/evals``). An MMLU response CSV
  (``mmlu_<subject>.csv``; task ``mmlu/<subject>``) or ``gsm8k_responses.csv`` (task ``gsm8k``) has one
  boolean column per model, used as it is (True = 1). ``judgements.jsonl`` of MT-Bench (GPT-4 judge, 1-10
  per turn) is read with the ``question.jsonl`` beside it for the category (task ``mt-bench/<category>``);
  an item is a question, its score the mean of its two turns, as RouteLLM's ``benchmarks.py`` averages them.
  Prompts listed in a ``contaminated_prompts.jsonl`` found beside the file (or one folder up) are dropped,
  as RouteLLM does.
- ``arena-bench``: arena-bench-v1 (lmarena/arena-hard-auto, Dec 2023): ``model_judgment/<model>.jsonl``
  with a GPT-4 ``score`` (1-10) per question; the task is the question's category from ``question.jsonl``.
  The judge's own file (``*judgment_judge_any*``) is skipped.
- ``routerbench``: RouterBench's wide table (Martian, ``routerbench_0shot``) exported to CSV or parquet
  (never a pickle: recsys does not unpickle downloaded data): ``sample_id``, ``eval_name`` (the task), one
  score column per model and ``<model>|total_cost`` (USD per call), used as they are.

Cost per call: ``<model>|total_cost`` where the data has it; otherwise a flat price per model, litellm's
price table (the name, or the entry listed in ``PRICE_KEYS``) times the dataset's typical tokens:
input = mean prompt characters / 4 over the whole dataset (all 57 MMLU subjects together), output = mean
response characters / 4 where responses are present (GSM8K), else ``DEFAULT_OUTPUT_TOKENS`` per dataset. A model
litellm has no price for is left out, and
``ImportResult.dropped_models`` says so. A flat price per model keeps APGR's cost share equal to
RouteLLM's share of calls to the strong model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SourceSchemaError, UsageError

__all__ = ["DEFAULT_OUTPUT_TOKENS", "FORMATS", "PRICE_KEYS", "ImportResult", "import_files", "write_outcomes"]

FORMATS = ("routellm", "routerbench", "arena-bench")
CHARS_PER_TOKEN = 4.0
# Output tokens assumed where the data holds no responses (a letter for MMLU, a chat answer otherwise).
DEFAULT_OUTPUT_TOKENS = {"mmlu": 1.0, "mt-bench": 400.0, "arena-bench": 400.0}
# Upstream name -> litellm price-table entry, where the plain name is not in the table. A hosted
# open-weight price is the cheapest serverless offer the table lists for that exact model.
PRICE_KEYS = {
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "deepinfra/mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.1": "anyscale/mistralai/Mistral-7B-Instruct-v0.1",
    "Llama-2-70b-chat": "anyscale/meta-llama/Llama-2-70b-chat-hf",
}


@dataclass
class ImportResult:
    """Long-format rows and what was left out."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped_models: dict[str, str] = field(default_factory=dict)
    decontaminated: int = 0
    no_score: int = 0  # judgments without a score (arena-bench: the judge gave no verdict)
    files: int = 0

    @property
    def tasks(self) -> int:
        return len({r["task"] for r in self.rows})

    @property
    def models(self) -> int:
        return len({r["model"] for r in self.rows})

    @property
    def items(self) -> int:
        return len({(r["task"], r["item"]) for r in self.rows})


def _bad(path: Path, message: str) -> SourceSchemaError:
    return SourceSchemaError(f"{path}: {message}", source="import")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with path.open(encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                if line.strip():
                    value = json.loads(line)
                    if not isinstance(value, dict):
                        raise _bad(path, f"line {n} is not a JSON object; is this a JSONL file of records?")
                    rows.append(value)
    except json.JSONDecodeError as exc:
        raise _bad(path, f"line {exc.lineno} is not valid JSON; pass the file as published.") from exc
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror or exc}).") from exc
    return rows


def _contaminated(path: Path) -> set[str]:
    for folder in (path.parent, path.parent.parent):
        candidate = folder / "contaminated_prompts.jsonl"
        if candidate.is_file():
            return {str(r.get("eval_prompt", "")) for r in _jsonl(candidate)}
    return set()


def _price(model: str) -> tuple[float, float] | None:
    from ..identity import name_forms
    from ..scoring.prices import load_price_table

    prices = load_price_table().prices
    for key in (PRICE_KEYS.get(model), model, *name_forms(model)):
        if key and key in prices:
            p = prices[key]
            return p.input_per_token, p.output_per_token
    return None


def _truthy(value: Any, path: Path, column: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return 1.0
    if text in ("false", "0", "0.0"):
        return 0.0
    raise _bad(path, f"column '{column}' holds {text[:20]!r}, not a boolean; RouteLLM's CSVs hold True/False.")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    import csv

    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot be read as CSV ({exc}).") from exc


def _routellm_csv(path: Path, result: ImportResult, pending: dict[str, list[tuple[str, str, float, dict[str,
float]]]],
                  *, decontaminate: bool) -> None:
    """Collect a RouteLLM CSV's rows; the costs are set per dataset (all MMLU subjects together) afterwards."""
    columns, rows = _read_csv(path)
    if "prompt" not in columns:
        raise _bad(path, "has no 'prompt' column; pass RouteLLM's mmlu_<subject>.csv or gsm8k_responses.csv.")
    models = [c for c in columns if c != "prompt" and not c.endswith("_response")]
    if not models:
        raise _bad(path, "has no model columns.")
    match = re.fullmatch(r"mmlu_(.+)\.csv", path.name)
    task = f"mmlu/{match.group(1)}" if match else path.stem.removesuffix("_responses")
    dataset = "mmlu" if match else task
    dirty = _contaminated(path) if decontaminate else set()
    kept = [(i, r) for i, r in enumerate(rows) if r["prompt"] not in dirty]
    result.decontaminated += len(rows) - len(kept)
    for i, r in kept:
        scores = {m: _truthy(r[m], path, m) for m in models}
        out_chars = {f"{m}|out": float(len(r.get(f"{m}_response") or "")) for m in models
                     if f"{m}_response" in columns}
        pending.setdefault(dataset, []).append((task, str(i), float(len(r["prompt"])), {**scores, **out_chars}))


def _routellm_rows(pending: dict[str, list[tuple[str, str, float, dict[str, float]]]], result: ImportResult, *,
                   per_item: bool = False) -> None:
    """One flat price per model and dataset: the dataset's mean tokens times litellm's price (``per_item``:
    each item's own prompt and response length instead)."""
    for dataset, rows in pending.items():
        models = [k for k in rows[0][3] if not k.endswith("|out")]
        input_tokens = sum(r[2] for r in rows) / len(rows) / CHARS_PER_TOKEN
        for model in models:
            price = _price(model)
            if price is None:
                result.dropped_models[model] = "no price in litellm's price table"
                continue
            if f"{model}|out" in rows[0][3]:
                output_tokens = sum(r[3][f"{model}|out"] for r in rows) / len(rows) / CHARS_PER_TOKEN
            else:
                output_tokens = DEFAULT_OUTPUT_TOKENS.get(dataset, 1.0)
            cost = price[0] * input_tokens + price[1] * output_tokens
            for task, item, chars, values in rows:
                if per_item:
                    out = values.get(f"{model}|out")
                    cost = price[0] * chars / CHARS_PER_TOKEN + price[1] * (
                        out / CHARS_PER_TOKEN if out is not None else DEFAULT_OUTPUT_TOKENS.get(dataset, 1.0))
                result.rows.append({"task": task, "item": item, "model": model, "score": values[model],
                                    "cost_usd": cost})


def _mt_bench(path: Path, result: ImportResult, *, decontaminate: bool) -> None:
    questions_path = path.parent / "question.jsonl"
    if not questions_path.is_file():
        raise _bad(path, "needs MT-Bench's question.jsonl beside it (for the categories).")
    questions = {str(q["question_id"]): q for q in _jsonl(questions_path)}
    dirty = _contaminated(path) if decontaminate else set()
    keep = {qid for qid, q in questions.items() if not any(t in dirty for t in q.get("turns", []))}
    result.decontaminated += len(questions) - len(keep)
    scores: dict[tuple[str, str], list[float]] = {}
    for r in _jsonl(path):
        qid = str(r.get("question_id"))
        if qid not in keep:
            continue
        try:
            score = float(r["score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(path, f"question {qid} has no numeric 'score'.") from exc
        scores.setdefault((qid, str(r["model"])), []).append(score)
    models = sorted({m for _, m in scores})
    input_tokens = {qid: sum(len(t) for t in questions[qid].get("turns", [])) / CHARS_PER_TOKEN for qid in keep}
    mean_input = sum(input_tokens.values()) / max(len(input_tokens), 1)
    for model in models:
        price = _price(model)
        if price is None:
            result.dropped_models[model] = "no price in litellm's price table"
            continue
        cost = price[0] * mean_input + price[1] * DEFAULT_OUTPUT_TOKENS["mt-bench"]
        for (qid, m), values in sorted(scores.items()):
            if m != model:
                continue
            category = str(questions[qid].get("category", "uncategorised"))
            result.rows.append({"task": f"mt-bench/{category}", "item": qid, "model": model,
                                "score": sum(values) / len(values), "cost_usd": cost})


def _arena_bench(paths: Sequence[Path], result: ImportResult) -> None:
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.jsonl")) if p.is_dir() else [p])
    files = [f for f in files if "judge_any" not in f.name and f.name != "question.jsonl"]
    if not files:
        raise UsageError("arena-bench: give the model_judgment folder or its <model>.jsonl files.")
    question_file = next((f.parent.parent / "question.jsonl" for f in files
                          if (f.parent.parent / "question.jsonl").is_file()), None)
    questions = {str(q["question_id"]): q for q in _jsonl(question_file)} if question_file else {}
    if questions:
        mean_input = sum(len(" ".join(map(str, q.get("turns", [])))) for q in questions.values()) \
            / len(questions) / CHARS_PER_TOKEN
    else:
        mean_input = 200.0
    for f in files:
        rows = _jsonl(f)
        if not rows:
            continue
        model = str(rows[0].get("model", f.stem))
        price = _price(model)
        if price is None:
            result.dropped_models[model] = "no price in litellm's price table"
            continue
        cost = price[0] * mean_input + price[1] * DEFAULT_OUTPUT_TOKENS["arena-bench"]
        for r in rows:
            qid = str(r.get("question_id"))
            if r.get("score") is None:  # the judge gave no verdict: no outcome for this item
                result.no_score += 1
                continue
            try:
                score = float(r["score"])
            except (TypeError, ValueError) as exc:
                raise _bad(f, f"question {qid} has a 'score' that is not a number.") from exc
            category = str(questions.get(qid, {}).get("category", "arena-bench-v1"))
            result.rows.append({"task": category, "item": qid, "model": model, "score": score, "cost_usd": cost})


def _routerbench(path: Path, result: ImportResult) -> None:
    import pyarrow as pa

    if path.suffix.lower() in (".pkl", ".pickle"):
        raise _bad(path, "is a pickle; recsys never unpickles downloaded data. Export it to CSV or parquet first "
                         "(pandas: pd.read_pickle(p).to_parquet('routerbench.parquet')).")
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _bad(path, f"cannot be read ({str(exc).splitlines()[0]}).") from exc
    columns = table.column_names
    for needed in ("sample_id", "eval_name"):
        if needed not in columns:
            raise _bad(path, f"has no '{needed}' column; RouterBench's table has sample_id, eval_name, a score "
                             "column per model and <model>|total_cost.")
    models = [c for c in columns if f"{c}|total_cost" in columns]
    if not models:
        raise _bad(path, "has no '<model>|total_cost' columns next to the model score columns.")
    data = table.select(["sample_id", "eval_name", *models, *(f"{m}|total_cost" for m in models)]).to_pylist()
    for r in data:
        for m in models:
            score, cost = r[m], r[f"{m}|total_cost"]
            if score is None or cost is None:
                continue
            result.rows.append({"task": str(r["eval_name"]), "item": str(r["sample_id"]), "model": m,
                                "score": float(score), "cost_usd": float(cost)})


def import_files(fmt: str, paths: Iterable[Path | str], *, decontaminate: bool = True,
                 per_item_cost: bool = False) -> ImportResult:
    """Read published files of ``fmt`` into long-format rows."""
    if fmt not in FORMATS:
        raise UsageError(f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}.")
    files = [Path(p) for p in paths]
    for p in files:
        if not p.exists():
            raise UsageError(f"{p} does not exist.")
    result = ImportResult(files=len(files))
    if fmt == "arena-bench":
        _arena_bench(files, result)
    pending: dict[str, list[tuple[str, str, float, dict[str, float]]]] = {}
    for p in files:
        if fmt == "routerbench":
            _routerbench(p, result)
        elif fmt == "routellm":
            for f in (sorted(p.glob("*.csv")) if p.is_dir() else [p]):
                if f.suffix == ".jsonl":
                    _mt_bench(f, result, decontaminate=decontaminate)
                else:
                    _routellm_csv(f, result, pending, decontaminate=decontaminate)
    _routellm_rows(pending, result, per_item=per_item_cost)
    if not result.rows:
        raise SourceSchemaError(f"{fmt}: the files hold no usable rows (models without a price are left out: "
                                f"{', '.join(sorted(result.dropped_models)) or 'none'}).", source="import")
    return result


def write_outcomes(rows: Sequence[dict[str, Any]], path: Path | str) -> None:
    """Write long-format rows as parquet, CSV or JSONL (by extension)."""
    import pyarrow as pa

    out = Path(path)
    columns = ["task", "item", "model", "score", "cost_usd"]
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with out.open("w", encoding="utf-8") as handle:
            for r in rows:
                handle.write(json.dumps({c: r.get(c) for c in columns}, allow_nan=False) + "\n")
    else:
        raise UsageError(f"-o {out}: use a .parquet, .csv or .jsonl file name.")
