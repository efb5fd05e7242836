"""Read model over stored evidence (``recsys evidence``): current rows, matched to candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from .policy import Policy
from .store import Store
from .store.tables import BenchmarkEvidence, IngestRun, RunStatus

__all__ = ["EvidenceRow", "current_run_ids", "evidence_names", "evidence_selectors", "list_evidence", "unmapped_tasks",
           "unmatched_models"]


@dataclass(frozen=True)
class EvidenceRow:
    """One current evidence value, with the candidate its upstream name maps to (or None)."""

    source: str
    model: str
    candidate: str | None
    category: str
    task_type: str | None
    metric: str
    value: float
    lower: float | None
    upper: float | None
    samples: int | None
    rank: int | None
    revision: str | None
    split: str | None
    source_version: str | None
    run_id: int
    published_on: date | None = None
    organization: str | None = None
    subset_count: int | None = None  # MTEB: how many subsets the task score averages

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["published_on"] = self.published_on.isoformat() if self.published_on else None
        return document


def current_run_ids(store: Store, sources: Sequence[str] | None = None) -> dict[str, int]:
    """The latest successful ingest run per source: the runs whose evidence is current."""
    with store.session() as session:
        query = (
            select(IngestRun.source, sa.func.max(IngestRun.id))
            .where(col(IngestRun.status) == RunStatus.SUCCESS)
            .group_by(col(IngestRun.source))
        )
        if sources:
            query = query.where(col(IngestRun.source).in_(list(sources)))
        return {source: int(run_id) for source, run_id in session.exec(query).all() if run_id is not None}


def list_evidence(
    store: Store,
    policy: Policy,
    *,
    source: str | None = None,
    model: str | None = None,
    category: str | None = None,
    limit: int | None = None,
) -> list[EvidenceRow]:
    """Current evidence, filtered; ``model`` matches the upstream name or the candidate it maps to."""
    run_ids = current_run_ids(store, [source] if source else None)
    if not run_ids:
        return []
    matchers = {s: policy.matcher(s) for s in run_ids}
    rows: list[EvidenceRow] = []
    with store.session() as session:
        query = select(BenchmarkEvidence).where(col(BenchmarkEvidence.run_id).in_(list(run_ids.values())))
        if category is not None:
            query = query.where(col(BenchmarkEvidence.category) == category)
        query = query.order_by(col(BenchmarkEvidence.source), col(BenchmarkEvidence.category),
                               col(BenchmarkEvidence.value).desc(), col(BenchmarkEvidence.model))
        wanted = model.strip().lower() if model else None
        for ev in session.exec(query):
            candidate = matchers[ev.source].candidate_for(ev.model)
            if wanted is not None and wanted not in (ev.model.lower(), (candidate or "").lower()):
                continue
            assert ev.id is not None  # noqa: S101 - rows read from the table always have a key
            rows.append(EvidenceRow(
                source=ev.source, model=ev.model, candidate=candidate, category=ev.category,
                task_type=ev.task_type, metric=ev.metric, value=ev.value, lower=ev.lower, upper=ev.upper,
                samples=ev.samples, rank=ev.rank, revision=ev.revision, split=ev.split,
                source_version=ev.source_version, run_id=ev.run_id, published_on=ev.published_on,
                organization=ev.organization, subset_count=ev.subset_count,
            ))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def evidence_names(store: Store) -> dict[str, list[str]]:
    """Per source, the distinct upstream model names in its current evidence, sorted."""
    result: dict[str, list[str]] = {}
    with store.session() as session:
        for source, run_id in sorted(current_run_ids(store).items()):
            names = session.exec(
                select(BenchmarkEvidence.model).where(col(BenchmarkEvidence.run_id) == run_id).distinct()
            ).all()
            result[source] = sorted(names)
    return result


def evidence_selectors(store: Store) -> dict[str, set[str]]:
    """Per source with current evidence, every selector a policy reference can name and find rows for:
    each category as it is (``text/coding``) and as ``task/<category>``, and ``type/<task_type>``."""
    result: dict[str, set[str]] = {}
    with store.session() as session:
        for source, run_id in sorted(current_run_ids(store).items()):
            pairs = session.exec(
                select(BenchmarkEvidence.category, BenchmarkEvidence.task_type)
                .where(col(BenchmarkEvidence.run_id) == run_id).distinct()).all()
            found = result.setdefault(source, set())
            for category, task_type in pairs:
                found.update((category, f"task/{category}"))
                if task_type:
                    found.add(f"type/{task_type}")
    return result


def unmatched_models(store: Store, policy: Policy) -> dict[str, list[str]]:
    """Per source, distinct current evidence names that match no candidate, sorted."""
    result: dict[str, list[str]] = {}
    for source, names in evidence_names(store).items():
        matcher = policy.matcher(source)
        result[source] = [n for n in names if matcher.candidate_for(n) is None]
    return result


def unmapped_tasks(store: Store) -> list[str]:
    """MTEB tasks in the current evidence that the shipped task map does not know (``task_type`` null), sorted.

    Their scores are usable through ``mteb:task/<name>`` but belong to no ``mteb:type/...``; regenerating the
    task map (README, "MTEB evidence") gives them a type.
    """
    run_id = current_run_ids(store, ["mteb"]).get("mteb")
    if run_id is None:
        return []
    with store.session() as session:
        names = session.exec(
            select(BenchmarkEvidence.category).where(col(BenchmarkEvidence.run_id) == run_id,
                                                     col(BenchmarkEvidence.task_type).is_(None)).distinct()
        ).all()
    return sorted(names)
