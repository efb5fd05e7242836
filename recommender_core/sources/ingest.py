"""The ingest run, the same for every source (``Source.run`` calls it).

Lock, record, skip an unchanged version, load with the previous run handed in, enforce the
rejection threshold, then write the evidence, the source's state and the run's outcome in one
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session

from ..store import Store
from ..store.bulk import insert_evidence
from ..store.runs import current_ingest_run, finish_ingest_run, ingest_job
from ..store.tables import BenchmarkEvidence, RunStatus, SourceState
from .base import Batch, EvidenceRecord, IngestOptions, IngestResult, PreviousRun
from .validate import screen

if TYPE_CHECKING:
    from datetime import datetime

    from .base import Source

__all__ = ["previous_run", "run_ingest"]


def previous_run(store: Store, source: str) -> PreviousRun | None:
    """The current run of ``source`` with its state; its evidence is read when first asked for."""
    current = current_ingest_run(store, source)
    if current is None or current.id is None:
        return None
    run_id = current.id
    state_table = SourceState.__table__  # type: ignore[attr-defined]
    with store.session() as session:
        state = {key: value for key, value in session.execute(
            sa.select(state_table.c.key, state_table.c.value).where(state_table.c.source == source)).all()}

    @cache
    def evidence() -> Sequence[EvidenceRecord]:
        table = BenchmarkEvidence.__table__  # type: ignore[attr-defined]
        with store.session() as session:
            rows = session.execute(sa.select(table).where(table.c.run_id == run_id,
                                                          table.c.source == source)).mappings().all()
        return tuple(EvidenceRecord(model=r["model"], category=r["category"], value=r["value"], metric=r["metric"],
                                    task_type=r["task_type"], lower=r["lower"], upper=r["upper"],
                                    samples=r["samples"], rank=r["rank"], revision=r["revision"], split=r["split"],
                                    subset_count=r["subset_count"], published_on=r["published_on"],
                                    organization=r["organization"], extra=r["extra"] or {})
                     for r in rows)

    return PreviousRun(run_id=run_id, source_version=current.source_version, state=state, read_evidence=evidence)


def _result(source: Source, status: str, version: str, run_id: int | None, batch: Batch | None) -> IngestResult:
    return IngestResult(
        source=source.name, status=status, source_version=version, run_id=run_id,
        rows_accepted=len(batch.records) if batch else 0, rows_rejected=batch.rows_rejected if batch else 0,
        rejected_reasons=dict(batch.rejected) if batch else {}, skipped=dict(batch.skipped) if batch else {},
        details=dict(batch.details) if batch else {},
    )


def _write_state(session: Session, source: str, state: dict[str, str], *, now: datetime) -> None:
    for key, value in state.items():
        row = session.get(SourceState, (source, key))
        if row is None:
            session.add(SourceState(source=source, key=key, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now


def run_ingest(source: Source, store: Store, options: IngestOptions) -> IngestResult:
    """Ingest ``source`` once into ``store`` (see the module docstring)."""
    if options.dry_run:
        version = source.resolve_version(options)
        batch = source.load(version, options, previous_run(store, source.name))
        screen(source.name, batch)
        source.check_rejections(batch)
        return _result(source, "dry-run", version, None, batch)

    with ingest_job(store, job=source.job, source=source.name, keep_runs=options.keep_runs) as handle:
        version = source.resolve_version(options)
        handle.source_version = version
        scope = source.scope(options)
        current = current_ingest_run(store, source.name)
        if (current is not None and current.source_version == version and not options.force
                and (scope is None or (current.details or {}).get("scope") == scope)):
            handle.status = RunStatus.UNCHANGED
            handle.details = {"current_run_id": current.id}
            return _result(source, RunStatus.UNCHANGED, version, handle.run_id, None)
        batch = source.load(version, options, previous_run(store, source.name))
        screen(source.name, batch)  # the one point where rows are accepted: sources/validate.py
        if scope is not None:
            batch.details["scope"] = scope
        handle.rows_accepted = len(batch.records)
        handle.rows_rejected = batch.rows_rejected
        handle.details = {"rejected": dict(batch.rejected), "skipped": dict(batch.skipped), **batch.details}
        source.check_rejections(batch)
        with store.session() as session:
            handle.claim(session.connection())  # still this run's job? else write nothing
            insert_evidence(session, run_id=handle.run_id, source=source.name, source_version=version,
                            records=batch.records)
            now = store.clock.now()
            _write_state(session, source.name, batch.state, now=now)
            source.save_state(session, now=now)
            handle.status = RunStatus.SUCCESS
            finish_ingest_run(session, handle, now=now)
        return _result(source, RunStatus.SUCCESS, version, handle.run_id, batch)
