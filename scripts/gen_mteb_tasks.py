"""Regenerate recommender_core/data/mteb_tasks.json from the `mteb` package's own task definitions.

Run it in a throwaway virtual environment (mteb-core is heavy and is NOT a recsys dependency):

    python3.11 -m venv /tmp/mteb-venv && /tmp/mteb-venv/bin/pip install -U mteb-core
    /tmp/mteb-venv/bin/python scripts/gen_mteb_tasks.py > recommender_core/data/mteb_tasks.json

For every task mteb registers (superseded, private and beta tasks included, since old results still name
them) it records the task type, the main metric and the evaluation splits (recsys averages a task's evaluation
splits when it has no `test` split, as mteb does); historic names that mteb itself maps when loading old
results (`renamed_tasks`, `outdated_tasks`) are added under their old names. The file records the mteb
version it came from; update the version the README names when it changes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any

__all__ = ["build", "main"]


def build() -> dict[str, Any]:
    import mteb
    from mteb.get_tasks import _TASKS_REGISTRY
    from mteb.results.task_result import outdated_tasks, renamed_tasks

    tasks: dict[str, dict[str, Any]] = {}
    for name, task in sorted(_TASKS_REGISTRY.items()):
        meta = task.metadata
        tasks[name] = {"type": str(meta.type), "main_score": str(meta.main_score),
                       "eval_splits": list(meta.eval_splits)}
    for old, new in sorted(renamed_tasks.items()):
        if old not in tasks and new in tasks:
            tasks[old] = dict(tasks[new])
    for name, task in sorted(outdated_tasks.items()):
        meta = task.metadata
        tasks.setdefault(name, {"type": str(meta.type), "main_score": str(meta.main_score),
                                "eval_splits": list(meta.eval_splits)})
    return {"generated_by": "scripts/gen_mteb_tasks.py", "mteb_version": version("mteb-core")
            if _has("mteb-core") else mteb.__version__, "tasks": tasks}


def _has(dist: str) -> bool:
    try:
        version(dist)
    except Exception:
        return False
    return True


def main() -> None:
    json.dump(build(), sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
