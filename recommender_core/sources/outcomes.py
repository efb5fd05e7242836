"""The outcomes source: a team's own per-item eval results (the long outcomes format) as evidence.

``recsys ingest outcomes --source PATH`` reads one CSV, JSONL or parquet file (see
``recommender_core.eval.outcomes`` for the format and its validation) and stores one evidence row per
(task, model): ``value`` the mean score, ``samples`` the item count, ``lower``/``upper`` a 95% interval
(Wilson for 0/1 scores), ``category`` the task, and in ``extra`` the task's score range and the mean
``cost_usd`` per call when the file has it. The version is the file's sha256, so an unchanged file is a
no-op. Every row counts, whatever its ``split`` (the split matters to ``recsys eval replay`` only).
Policies reference it as ``outcomes:<task>``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from ..errors import ConfigError
from .base import Batch, EvidenceRecord, IngestOptions, Source, register_source

__all__ = ["OUTCOMES_JOB", "OutcomesSource", "records_from_stats"]

OUTCOMES_JOB = "ingest-outcomes"


def records_from_stats(stats: list) -> list[EvidenceRecord]:  # type: ignore[type-arg]
    """Evidence records of ``aggregate()`` results (shared with the replay, which builds them in memory)."""
    return [EvidenceRecord(
        model=s.model, category=s.task, value=s.mean, metric="mean_score", lower=s.lower, upper=s.upper,
        samples=s.count, extra={"binary": s.binary, "score_min": s.score_min, "score_max": s.score_max,
                                **({"cost_per_call": s.cost_per_call} if s.cost_per_call is not None else {})},
    ) for s in stats]


@register_source
class OutcomesSource(Source):
    """Per-item outcomes of the user's own evals, aggregated per (task, model)."""

    name: ClassVar[str] = "outcomes"
    job: ClassVar[str] = OUTCOMES_JOB
    SUPPORTS_INCREMENTAL: ClassVar[bool] = False

    def _path(self, options: IngestOptions) -> Path:
        if not options.mirror:
            raise ConfigError("recsys ingest outcomes needs --source PATH: a CSV, JSONL or parquet file in the "
                              "long outcomes format (task, item, model, score).")
        return Path(options.mirror)

    def resolve_version(self, options: IngestOptions) -> str:
        path = self._path(options)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            from ..errors import SourceError

            raise SourceError(f"Outcomes file {path} cannot be read ({exc.strerror or exc}); pass an existing "
                              "CSV, JSONL or parquet file with --source.", source=self.name) from exc
        return "sha256:" + digest.hexdigest()

    def load(self, version: str, options: IngestOptions) -> Batch:
        from ..eval.outcomes import aggregate, read_outcomes

        # more than 5% bad rows fails inside the read, naming the reasons; fewer are counted here
        outcomes = read_outcomes(self._path(options))
        batch = Batch(records=records_from_stats(aggregate(outcomes)))
        for reason, count in outcomes.rejected.items():
            batch.reject(reason, count)
        import numpy as np

        items = np.unique(outcomes.task_codes * (len(outcomes.items) + 1) + outcomes.item_codes).shape[0]
        batch.details.update({"items": int(items), "tasks": len(outcomes.tasks), "models": len(outcomes.models),
                              "rows_read": outcomes.rows_read})
        return batch

    def _check_rejections(self, batch: Batch) -> None:
        # The 5% rule counts file rows, not the aggregated records: read_outcomes enforced it already.
        if not batch.records:
            super()._check_rejections(Batch())
