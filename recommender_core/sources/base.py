"""The Source plugin base and registry, with the ingest run as a template method.

A source only says how to find its current version cheaply (``resolve_version``) and how to read
its rows (``load``). ``Source.run`` does the rest the same way for every source: take the job lock,
record the run, skip an unchanged version, enforce the rejection threshold, and write the evidence
and the run's outcome in one transaction, so a failure at any point leaves the previous evidence
current and the failed run recorded.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from sqlmodel import Session

from ..config import Settings
from ..errors import SourceSchemaError
from ..policy import Policy
from ..store import Store
from ..store.bulk import insert_evidence
from ..store.runs import RunHandle, current_ingest_run, finish_ingest_run, ingest_job
from ..store.tables import RunStatus
from .validate import screen

__all__ = [
    "MAX_REJECTED_FRACTION",
    "SOURCES",
    "Batch",
    "EvidenceRecord",
    "IngestOptions",
    "IngestResult",
    "ProgressFactory",
    "Source",
    "register_source",
]

# More rejected rows than this fraction fails the whole run, with nothing written.
MAX_REJECTED_FRACTION = 0.05


@dataclass(frozen=True)
class IngestOptions:
    """What the user asked for (CLI flags and settings)."""

    mirror: str | None = None  # --source URL|PATH (or RECSYS_<SOURCE>_URL)
    force: bool = False
    dry_run: bool = False
    all_models: bool = False  # mteb --all
    keep_runs: int = 30


@dataclass(frozen=True)
class EvidenceRecord:
    """One validated evidence value, before it is stored."""

    model: str
    category: str
    value: float
    metric: str = "rating"
    task_type: str | None = None
    lower: float | None = None
    upper: float | None = None
    samples: int | None = None
    rank: int | None = None
    revision: str | None = None
    split: str | None = None
    subset_count: int | None = None
    published_on: date | None = None
    organization: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Everything one load produced: accepted records, rejections counted per reason, and notes."""

    records: list[EvidenceRecord] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    # Rows that are neither evidence nor errors (e.g. a legacy "-" rating means unrated).
    skipped: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] += count

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass(frozen=True)
class IngestResult:
    """The outcome of one ingest, for the CLI to render and the metrics to push."""

    source: str
    status: str  # success | unchanged | dry-run
    source_version: str
    run_id: int | None
    rows_accepted: int
    rows_rejected: int
    rejected_reasons: Mapping[str, int]
    skipped: Mapping[str, int]
    details: Mapping[str, Any]


# A progress reporter: called with (done, total or None); the CLI passes a rich progress bar.
ProgressFactory = Callable[[str], Callable[[int, int | None], None]]


class Source(abc.ABC):
    """An evidence source plugin. Subclasses set ``name`` and ``job`` and implement two methods."""

    name: ClassVar[str]
    job: ClassVar[str]
    SUPPORTS_INCREMENTAL: ClassVar[bool] = True

    def __init__(self, *, settings: Settings, policy: Policy, progress: ProgressFactory | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.progress = progress

    @abc.abstractmethod
    def resolve_version(self, options: IngestOptions) -> str:
        """The version of the data the source would deliver now (a dataset sha, a commit, a fingerprint)."""

    @abc.abstractmethod
    def load(self, version: str, options: IngestOptions) -> Batch:
        """Read, parse and validate every row of ``version``."""

    def scope(self, options: IngestOptions) -> str | None:
        """What part of the source a run covers (configs, tracked models), or None when it is always all.

        A run is ``unchanged`` only when both the version and the scope equal the current run's, so
        asking for more (a new config, a new candidate) is ingested at once, not at the next upstream
        change. Computed without I/O: it is compared before anything is fetched.
        """
        return None

    def save_state(self, session: Session, *, now: datetime) -> None:  # noqa: B027 - an optional hook
        """Write incremental cursors (``SourceState``, updated at ``now``) inside the run's write transaction."""

    def close(self) -> None:  # noqa: B027 - an optional hook: most sources hold nothing to release
        """Release network clients and temporary files."""

    # --- the template ---------------------------------------------------------------------------

    def _check_rejections(self, batch: Batch) -> None:
        total = len(batch.records) + batch.rows_rejected
        if total == 0:
            raise SourceSchemaError(f"{self.name}: the source holds no rows; nothing was written. Check that "
                                    f"--source (or RECSYS_{self.name.upper()}_URL) points at {self.name} data.",
                                    source=self.name)
        if batch.rows_rejected / total > MAX_REJECTED_FRACTION:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in batch.rejected.most_common(5))
            raise SourceSchemaError(
                f"{self.name}: {batch.rows_rejected} of {total} rows were rejected ({reasons}), more than "
                f"{MAX_REJECTED_FRACTION:.0%}; nothing was written and the previous evidence stays current.",
                source=self.name)

    def _result(self, status: str, version: str, run_id: int | None, batch: Batch | None) -> IngestResult:
        return IngestResult(
            source=self.name, status=status, source_version=version, run_id=run_id,
            rows_accepted=len(batch.records) if batch else 0, rows_rejected=batch.rows_rejected if batch else 0,
            rejected_reasons=dict(batch.rejected) if batch else {}, skipped=dict(batch.skipped) if batch else {},
            details=dict(batch.details) if batch else {},
        )

    def _fill(self, handle: RunHandle, batch: Batch) -> None:
        handle.rows_accepted = len(batch.records)
        handle.rows_rejected = batch.rows_rejected
        handle.details = {"rejected": dict(batch.rejected), "skipped": dict(batch.skipped), **batch.details}

    def run(self, store: Store, options: IngestOptions) -> IngestResult:
        """Ingest once: lock, record, skip if unchanged, validate, write atomically, record the outcome."""
        if options.dry_run:
            version = self.resolve_version(options)
            batch = self.load(version, options)
            screen(self.name, batch)
            self._check_rejections(batch)
            return self._result("dry-run", version, None, batch)

        with ingest_job(store, job=self.job, source=self.name, keep_runs=options.keep_runs) as handle:
            version = self.resolve_version(options)
            handle.source_version = version
            scope = self.scope(options)
            current = current_ingest_run(store, self.name)
            if (current is not None and current.source_version == version and not options.force
                    and (scope is None or (current.details or {}).get("scope") == scope)):
                handle.status = RunStatus.UNCHANGED
                handle.details = {"current_run_id": current.id}
                return self._result(RunStatus.UNCHANGED, version, handle.run_id, None)
            batch = self.load(version, options)
            screen(self.name, batch)  # the one point where rows are accepted: sources/validate.py
            if scope is not None:
                batch.details["scope"] = scope
            self._fill(handle, batch)
            self._check_rejections(batch)
            with store.session() as session:
                handle.claim(session.connection())  # still this run's job? else write nothing
                insert_evidence(session, run_id=handle.run_id, source=self.name, source_version=version,
                                records=batch.records)
                now = store.clock.now()
                self.save_state(session, now=now)
                handle.status = RunStatus.SUCCESS
                finish_ingest_run(session, handle, now=now)
            return self._result(RunStatus.SUCCESS, version, handle.run_id, batch)


SOURCES: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: add a Source to the registry that every user-facing list comes from."""
    if cls.name in SOURCES and SOURCES[cls.name] is not cls:
        raise RuntimeError(f"two sources are registered as {cls.name!r}")
    SOURCES[cls.name] = cls
    return cls
