"""Cross-check recsys's MTEB task scores against mteb's own ``TaskResult.get_score``, file by file.

Two steps, because mteb-core is not a recsys dependency (install it in a throwaway environment):

    python3.11 -m venv /tmp/mteb-venv && /tmp/mteb-venv/bin/pip install mteb-core
    /tmp/mteb-venv/bin/python scripts/crosscheck_mteb.py reference SLICE.tar.gz > tests/data/mteb_slice_scores.json
    .venv/bin/python scripts/crosscheck_mteb.py compare SLICE.tar.gz tests/data/mteb_slice_scores.json

``MIRROR`` is a clone or mirror of embeddings-benchmark/results, or a ``.tar.gz`` of one (unpacked into a
temporary folder; its sha256 is recorded). ``reference`` loads every result file with mteb
(``TaskResult.from_disk``: mteb's legacy conversion, renames and case-insensitive task lookup) and writes
``get_score(splits=S)``, or why mteb gives no score. ``S`` is the split rule recsys documents, taken from
mteb's own task metadata: ``test`` when the task evaluates it; else every evaluation split of the task the
file holds; else ``test`` when present; else the only split; for a task mteb does not know, every split.
``compare`` parses the same files with recsys and prints, per rejection reason, how many files and how many
of them mteb scores; it exits 1 when a score differs by 1e-9 or more, or when recsys rejects a file mteb scores.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["TOLERANCE", "compare", "reference"]

TOLERANCE = 1e-9


@contextmanager
def _mirror(path: Path) -> Iterator[tuple[Path, str | None]]:
    """(the results folder, sha256 of the archive or None)."""
    if path.is_dir():
        yield (path / "results" if (path / "results").is_dir() else path), None
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="mteb-crosscheck-") as tmp, tarfile.open(path) as archive:
        archive.extractall(tmp, filter="data")
        yield Path(tmp) / "results", digest


def _files(results: Path) -> list[Path]:
    """Result files as every recsys mode reads them: ``<model>/<revision>/<Task>.json``."""
    return sorted(p for p in results.glob("*/*/*.json") if p.name != "model_meta.json")


def _mteb_splits(present: list[str], eval_splits: list[str] | None) -> list[str] | None:
    if eval_splits is not None:
        evaluated = [s for s in eval_splits if s in present]
        if "test" in evaluated:
            return ["test"]
        if evaluated:
            return evaluated
    if "test" in present:
        return ["test"]
    if len(present) == 1 or eval_splits is None:
        return present or None
    return None


def reference(mirror: Path) -> dict[str, Any]:
    import logging
    import warnings
    from importlib.metadata import version

    from mteb.get_tasks import _TASKS_REGISTRY
    from mteb.results.task_result import TaskResult, outdated_tasks, renamed_tasks

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    folded = {name.lower(): task for name, task in _TASKS_REGISTRY.items()}

    def eval_splits(name: str) -> list[str] | None:
        task = outdated_tasks.get(name) or _TASKS_REGISTRY.get(renamed_tasks.get(name, name)) \
            or folded.get(name.lower())
        return None if task is None else list(task.metadata.eval_splits)

    scores: dict[str, dict[str, float | str]] = {}
    with _mirror(mirror) as (results, digest):
        files = _files(results)
        for path in files:
            folder = path.parent.relative_to(results).as_posix()
            value: float | str
            try:
                result = TaskResult.from_disk(path)
                splits = _mteb_splits(list(result.scores), eval_splits(result.task_name))
                if splits is None:
                    value = "no split: several splits, none of them an evaluation split of the task"
                else:
                    number = float(result.get_score(splits=splits))
                    value = number if math.isfinite(number) else "nan: a subset has no main score"
            except Exception as exc:  # mteb raises many types on files it cannot load; each is "no score"
                value = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
            scores.setdefault(folder, {})[path.stem] = value
    return {"generated_by": "scripts/crosscheck_mteb.py reference", "mteb_version": version("mteb-core"),
            "archive_sha256": digest, "files": len(files), "scores": scores}


def _ours(path: Path) -> tuple[float | None, str | None]:
    from recommender_core.sources.mteb.load import Rejected, load_task_map, parse_result

    try:
        return parse_result(path.read_bytes(), file_task=path.stem, tasks=load_task_map()).value, None
    except Rejected as exc:
        return None, exc.reason


def compare(mirror: Path, ref_path: Path) -> int:
    ref = json.loads(ref_path.read_text(encoding="utf-8"))["scores"]
    outcome: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    scored_by_mteb: Counter[str] = Counter()
    examples: dict[str, str] = {}
    problems: list[str] = []
    with _mirror(mirror) as (results, _digest):
        for path in _files(results):
            key = path.relative_to(results).as_posix()
            expected = ref.get(path.parent.relative_to(results).as_posix(), {}).get(path.stem)
            mteb_scores = isinstance(expected, float)
            ours, reason = _ours(path)
            if reason is not None:
                reasons[reason] += 1
                scored_by_mteb[reason] += mteb_scores
                examples.setdefault(reason, key)
                outcome["rejected, mteb scores it" if mteb_scores else "rejected, mteb gives no score"] += 1
                if mteb_scores:
                    problems.append(f"rejected as {reason} but mteb scores {expected}: {key}")
            elif not mteb_scores:
                outcome["scored, mteb gives no score"] += 1
                print(f"recsys only: {key}: recsys {ours}, mteb {expected}")
            elif abs(expected - ours) < TOLERANCE:
                outcome["scored, equal to mteb"] += 1
            else:
                outcome["scored, differs from mteb"] += 1
                problems.append(f"differs: {key}: recsys {ours} mteb {expected}")
    for line in problems:
        print(line)
    for name, count in sorted(outcome.items()):
        print(f"{name}: {count}")
    for reason, count in reasons.most_common():
        print(f"rejected {reason}: {count} (mteb scores {scored_by_mteb[reason]}), e.g. {examples[reason]}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("reference", "compare"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "reference":
        json.dump(reference(Path(sys.argv[2])), sys.stdout, indent=0, sort_keys=True)
        sys.stdout.write("\n")
    else:
        raise SystemExit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
