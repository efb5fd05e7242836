"""MTEB results (embeddings-benchmark/results): the ``mteb`` source plugin (README, "MTEB evidence").

The plugin class declares what the CLI, the policy and scoring ask for; reading a mirror, the
GitHub API or the Hugging Face parquet lives in ``load``, imported only when a run loads data.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..base import (
    Batch,
    EvidenceValue,
    IngestOptions,
    IngestResult,
    ProgressFactory,
    Quality,
    Source,
    SourceOption,
    register_source,
)
from .constants import UNMAPPED_TASK, UNMAPPED_TASKS

if TYPE_CHECKING:
    import httpx

    from ...config import Settings
    from ...policy import Policy, Task
    from ..base import PreviousRun
    from ..http import HttpSettings
    from .load import MtebReader, TaskMap

__all__ = ["NAME", "MtebSource", "unmapped_tasks_text"]

NAME = "mteb"


def unmapped_tasks_text(names: Sequence[str], *, shown: int = 5) -> str:
    """One line naming the MTEB tasks the task map does not know, and what to do about it."""
    more = len(names) - shown
    listed = ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")
    return (f"MTEB tasks missing from the task map ({len(names)}): {listed}; their scores count only as "
            "mteb:task/<name>, in no mteb:type/...: regenerate the task map (README, 'MTEB evidence').")


@register_source
class MtebSource(Source):
    """MTEB per-task results: a local mirror, the GitHub API (policy candidates), or the HF parquet (--all)."""

    name: ClassVar[str] = NAME
    job: ClassVar[str] = "ingest-mteb"
    summary: ClassVar[str] = "Ingest MTEB embedding benchmark results into the evidence store."
    mirror_help: ClassVar[str] = ("A local folder: a clone or mirror of embeddings-benchmark/results (not a URL); "
                                  "env RECSYS_MTEB_URL.")
    options: ClassVar[tuple[SourceOption, ...]] = (
        SourceOption("all_models", "--all", "Every model, from the bulk mteb/results dataset."),
    )
    cronjob: ClassVar[bool] = True
    task_kinds: ClassVar[frozenset[str]] = frozenset({"embedding"})
    reference_example: ClassVar[str] = "mteb:type/Retrieval"

    def __init__(self, *, settings: Settings, policy: Policy, progress: ProgressFactory | None = None,
                 all_models: bool = False, tasks: TaskMap | None = None,
                 transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None,
                 http_settings: HttpSettings | None = None, sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(settings=settings, policy=policy, progress=progress, transport=transport, client=client,
                         http_settings=http_settings, sleep=sleep)
        self.all_models = all_models
        self._tasks = tasks

    # --- declarations ---

    @classmethod
    def check_selector(cls, text: str, selector: str) -> None:
        if not selector.startswith(("type/", "task/")):
            raise ValueError(f"MTEB evidence {text!r} must be 'mteb:type/<TaskType>' or 'mteb:task/<TaskName>'")

    @classmethod
    def quality(cls, ref: str, selector: str, rows: Sequence[EvidenceValue], names: Sequence[str],
                task: Task) -> Quality:
        """Mean task score over the selected tasks, with a coverage floor (``scoring.normalise``)."""
        from ...scoring.normalise import MTEB_MIN_COVERAGE

        kind, _, wanted = selector.partition("/")
        mteb = [r for r in rows if r.source == NAME and r.candidate is not None
                and (r.category == wanted if kind == "task" else r.task_type == wanted)]
        if not mteb:
            reason = f"no current evidence for {ref} (run 'recsys ingest mteb')"
            return Quality({}, dict.fromkeys(names, reason))
        scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in mteb:
            assert r.candidate is not None  # noqa: S101 - filtered above
            scores[r.candidate][r.category].append(min(max(r.value, 0.0), 1.0))
        universe = sorted({r.category for r in mteb})
        qualities: dict[str, float] = {}
        missing: dict[str, str] = {}
        for name in names:
            tasks = scores.get(name)
            if not tasks:
                missing[name] = f"no {ref} results for this model"
                continue
            coverage = len(tasks) / len(universe)
            if coverage < MTEB_MIN_COVERAGE:
                missing[name] = (f"{ref}: covers {len(tasks)} of {len(universe)} tasks ({coverage:.0%}), "
                                 f"below the required {MTEB_MIN_COVERAGE:.0%}")
                continue
            per_task = [sum(v) / len(v) for _, v in sorted(tasks.items())]
            qualities[name] = sum(per_task) / len(per_task)
        return Quality(qualities, missing, {"tasks": len(universe), "min_coverage": MTEB_MIN_COVERAGE})

    @classmethod
    def notes(cls, result: IngestResult) -> list[str]:
        unmapped = result.details.get(UNMAPPED_TASK)
        if not unmapped:
            return []
        return [f"{UNMAPPED_TASK}: {unmapped} (stored, task_type null)",
                unmapped_tasks_text(result.details.get(UNMAPPED_TASKS) or [])]

    @classmethod
    def result_document(cls, result: IngestResult) -> dict[str, Any]:
        return {"source": result.source, "status": result.status, "source_version": result.source_version,
                "run_id": result.run_id, "rows": result.rows_accepted, "rejected_rows": result.rows_rejected,
                "rejected": dict(Counter(result.rejected_reasons).most_common()), "skipped": dict(result.skipped),
                **{k: v for k, v in result.details.items() if k != "rejected_examples"},
                "rejected_examples": result.details.get("rejected_examples", {})}

    # --- loading (``load``) ---

    @property
    def tasks(self) -> TaskMap:
        """The task map, loaded when first needed (an unchanged run never needs it)."""
        if self._tasks is None:
            from .load import load_task_map

            self._tasks = load_task_map()
        return self._tasks

    def _reader(self) -> MtebReader:
        from .load import MtebReader

        return MtebReader(self)

    def scope(self, options: IngestOptions) -> str | None:
        """Network mode tracks the policy's embedding candidates: a new candidate (or alias) is fetched at
        once, not at the next upstream commit. A mirror and ``--all`` always cover every model."""
        if self.mirror(options) or self.all_models:
            return None
        lines = [f"{name}={','.join(sorted(self.policy.candidates[name].aliases.get(self.name, ())))}"
                 for name in sorted(self.policy.candidates_of_kind("embedding"))]
        return "candidates:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def resolve_version(self, options: IngestOptions) -> str:
        return self._reader().resolve_version(options)

    def load(self, version: str, options: IngestOptions, previous: PreviousRun | None = None) -> Batch:
        return self._reader().load(version, options, previous)
