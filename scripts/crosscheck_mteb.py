"""Cross-check recsys's MTEB task scores against mteb's own ``TaskResult.get_score`` on a mirror.

Two steps, because mteb-core is not a recsys dependency (install it in a throwaway environment):

    /tmp/mteb-venv/bin/python scripts/crosscheck_mteb.py reference MIRROR > /tmp/mteb-ref.json
    .venv/bin/python scripts/crosscheck_mteb.py compare MIRROR /tmp/mteb-ref.json

``reference`` writes mteb's score of every result file for the split recsys would evaluate (``test``, else
the only split, else the task's single evaluation split present); ``compare`` parses the same files with
recsys and prints agreements and differences.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["compare", "reference"]


def _files(mirror: Path) -> list[Path]:
    results = mirror / "results" if (mirror / "results").is_dir() else mirror
    return sorted(p for p in results.glob("*/*/*.json") if p.name != "model_meta.json")


def reference(mirror: Path) -> dict[str, Any]:
    import logging
    import warnings

    from mteb.results.task_result import TaskResult

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    out: dict[str, Any] = {}
    for path in _files(mirror):
        key = path.relative_to(mirror).as_posix()
        try:
            result = TaskResult.from_disk(path)
            splits = list(result.scores)
            split = "test" if "test" in splits else splits[0] if len(splits) == 1 else None
            if split is None:  # the task's own evaluation split, when exactly one is present
                evaluated = [s for s in result.task.metadata.eval_splits if s in splits]
                split = evaluated[0] if len(evaluated) == 1 else None
            out[key] = result.get_score(splits=[split]) if split else None
        except Exception as exc:  # mteb raises many types on old files; record them as no score
            out[key] = f"error: {type(exc).__name__}"
    return out


def compare(mirror: Path, ref_path: Path) -> int:
    from recommender_core.sources.mteb import Rejected, load_task_map, parse_result

    tasks = load_task_map()
    ref = json.loads(ref_path.read_text())
    agree = differ = skipped = 0
    for path in _files(mirror):
        key = path.relative_to(mirror).as_posix()
        expected = ref.get(key)
        try:
            ours = parse_result(path.read_bytes(), file_task=path.stem, tasks=tasks).value
        except Rejected:
            skipped += 1
            continue
        if isinstance(expected, float) and not math.isnan(expected) and abs(expected - ours) < 1e-9:
            agree += 1
        else:
            differ += 1
            print(f"differs: {key}: recsys {ours} mteb {expected}")
    print(f"agree {agree}, differ {differ}, rejected by recsys {skipped}")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        json.dump(reference(Path(sys.argv[2])), sys.stdout)
    else:
        raise SystemExit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
