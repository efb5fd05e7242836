"""Outcomes: a team's own per-item eval results, the ``outcomes`` source plugin (docs/decision-quality.md).

``recsys ingest outcomes --source PATH`` reads one CSV, JSONL or parquet file in the long outcomes format
(``recommender_core.eval.outcomes`` reads and validates it) and stores one evidence row per (task, model):
``value`` the mean score, ``samples`` the item count, ``lower``/``upper`` a 95% interval (Wilson for 0/1
scores), ``category`` the task, and in ``extra`` the task's score range and, when every row has
``cost_usd``, the mean cost per call. The version is the file's sha256, so an unchanged file is a no-op.
Every row counts, whatever its ``split`` (the split matters to ``recsys eval replay`` only). Policies
reference it as ``outcomes:<task>``, for chat and embedding tasks alike.

Quality is the mean score scaled to [0, 1]: scores already in [0, 1] as they are, other scales (a 1-10
judge) by the task's lowest and highest score in the file. The observed cost per call goes to scoring in
the quality's details (``cost_per_call``), where it is the cost unless telemetry has enough calls.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..base import Batch, EvidenceRecord, EvidenceValue, IngestOptions, Quality, Source, register_source

if TYPE_CHECKING:
    from ...eval.outcomes import TaskModelStats
    from ...policy import Task
    from ..base import PreviousRun

__all__ = ["NAME", "OutcomesSource", "records_from_stats"]

NAME = "outcomes"


def records_from_stats(stats: Sequence[TaskModelStats]) -> list[EvidenceRecord]:
    """Evidence records of ``aggregate()`` results (the replay builds the same rows in memory)."""
    return [EvidenceRecord(
        model=s.model, category=s.task, value=s.mean, metric="mean_score", lower=s.lower, upper=s.upper,
        samples=s.count, extra={"binary": s.binary, "score_min": s.score_min, "score_max": s.score_max,
                                **({"cost_per_call": s.cost_per_call} if s.cost_per_call is not None else {})},
    ) for s in stats]


def _pick(rows: Sequence[EvidenceValue]) -> EvidenceValue:
    # several upstream names can map to one candidate: the best-sampled wins
    return sorted(rows, key=lambda r: (-(r.samples or 0), -r.value, r.model))[0]


@register_source
class OutcomesSource(Source):
    """Per-item outcomes of the user's own evals, aggregated per (task, model)."""

    name: ClassVar[str] = NAME
    job: ClassVar[str] = "ingest-outcomes"
    summary: ClassVar[str] = "Ingest per-item outcomes (your own evals) as evidence per (task, model)."
    mirror_help: ClassVar[str] = ("An outcomes file (task, item, model, score[, cost_usd, split]): CSV, JSONL or "
                                  "parquet; env RECSYS_OUTCOMES_URL.")
    task_kinds: ClassVar[frozenset[str]] = frozenset({"chat", "embedding"})
    reference_example: ClassVar[str] = "outcomes:<task>"
    evidence_extra: ClassVar[bool] = True
    # run by a team after its evals (no CronJob is deployed for it), yet it pushes its metrics
    pushes_metrics: ClassVar[bool] = True

    @classmethod
    def quality(cls, ref: str, selector: str, rows: Sequence[EvidenceValue], names: Sequence[str],
                task: Task) -> Quality:
        found = [r for r in rows if r.source == NAME and r.category == selector and r.candidate is not None]
        if not found:
            return Quality({}, dict.fromkeys(names, f"no current evidence for {ref} (run 'recsys ingest outcomes')"))
        by_candidate: dict[str, list[EvidenceValue]] = defaultdict(list)
        for r in found:
            assert r.candidate is not None  # noqa: S101 - filtered above
            by_candidate[r.candidate].append(r)
        qualities: dict[str, float] = {}
        missing: dict[str, str] = {}
        costs: dict[str, list[float]] = {}
        for name in names:
            if name not in by_candidate:
                missing[name] = f"no {ref} outcomes for this model"
                continue
            row = _pick(by_candidate[name])
            lo, hi = float(row.extra.get("score_min", 0.0)), float(row.extra.get("score_max", 1.0))
            if lo >= 0.0 and hi <= 1.0:
                lo, hi = 0.0, 1.0
            qualities[name] = min(max((row.value - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 1.0
            if row.extra.get("cost_per_call") is not None:
                costs[name] = [float(row.extra["cost_per_call"]), float(row.samples or 0)]
        return Quality(qualities, missing, {"items": max((r.samples or 0) for r in found), "cost_per_call": costs})

    def _path(self, options: IngestOptions) -> Path:
        chosen = self.mirror(options)
        if not chosen:
            from ...errors import ConfigError

            raise ConfigError("recsys ingest outcomes needs --source PATH: a CSV, JSONL or parquet file in the "
                              "long outcomes format (task, item, model, score).")
        return Path(chosen)

    def resolve_version(self, options: IngestOptions) -> str:
        path = self._path(options)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            from ...errors import SourceError

            raise SourceError(f"Outcomes file {path} cannot be read ({exc.strerror or exc}); pass an existing "
                              "CSV, JSONL or parquet file with --source.", source=self.name) from exc
        return "sha256:" + digest.hexdigest()

    def load(self, version: str, options: IngestOptions, previous: PreviousRun | None = None) -> Batch:
        import numpy as np

        from ...eval.outcomes import aggregate, read_outcomes

        # more than 5% bad rows fails inside the read (rows, not aggregates, are what the rule counts)
        outcomes = read_outcomes(self._path(options))
        batch = Batch(records=records_from_stats(aggregate(outcomes)))
        for reason, count in outcomes.rejected.items():
            batch.reject(reason, count)
        items = np.unique(outcomes.task_codes * (len(outcomes.items) + 1) + outcomes.item_codes).shape[0]
        batch.details.update({"items": int(items), "tasks": len(outcomes.tasks), "models": len(outcomes.models),
                              "rows_read": outcomes.rows_read})
        return batch

    def check_rejections(self, batch: Batch) -> None:
        # The 5% rule counts file rows, not the aggregated records: read_outcomes enforced it already.
        if not batch.records:
            super().check_rejections(Batch())
