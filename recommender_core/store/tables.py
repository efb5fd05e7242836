"""SQLModel tables: the whole domain, so later features add columns, not concepts.

Evidence keeps upstream names verbatim; matching to the user's candidates happens on read
(``recommender_core.identity``), so a new alias takes effect without re-ingesting.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "BenchmarkEvidence",
    "IngestRun",
    "RunStatus",
    "ScoringRun",
    "SourceState",
    "TelemetryEvent",
    "TelemetryRollup",
    "TelemetryRollupDirty",
    "UTCDateTime",
    "UtilityScore",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise TypeError("naive datetimes are ambiguous; pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets a real BIGINT identity.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


class RunStatus:
    """Run statuses, shared by ingest and scoring runs."""

    RUNNING = "running"
    SUCCESS = "success"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    ABANDONED = "abandoned"

    ALL = (RUNNING, SUCCESS, UNCHANGED, FAILED, ABANDONED)


class IngestRun(SQLModel, table=True):
    """One run of an ingest job; evidence rows belong to exactly one run."""

    __tablename__ = "ingest_run"
    __table_args__ = (sa.Index("ix_ingest_run_source_status", "source", "status"),)

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    source: str = Field(max_length=64, index=True)
    status: str = Field(max_length=16)
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = _ts()
    source_version: str | None = Field(default=None, max_length=256)
    rows_accepted: int = 0
    rows_rejected: int = 0
    # {"reason": count} for rejected rows, and anything else worth showing in a run summary.
    details: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class BenchmarkEvidence(SQLModel, table=True):
    """One measured value: a model's score on a category or task, from one ingest run."""

    __tablename__ = "benchmark_evidence"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "model", "category", "metric", name="uq_evidence_run_model_category"),
        sa.Index("ix_evidence_source_model", "source", "model"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    run_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("ingest_run.id", ondelete="CASCADE"),
                                            nullable=False, index=True))
    source: str = Field(max_length=64)
    model: str = Field(max_length=512)  # the upstream name, verbatim
    category: str = Field(max_length=256)  # Arena: "<config>/<category>"; MTEB: the task name
    task_type: str | None = Field(default=None, max_length=64)  # MTEB task type
    metric: str = Field(default="rating", max_length=64)
    value: float
    lower: float | None = None
    upper: float | None = None
    samples: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    rank: int | None = None
    revision: str | None = Field(default=None, max_length=256)
    split: str | None = Field(default=None, max_length=64)
    subset_count: int | None = None
    source_version: str | None = Field(default=None, max_length=256)
    published_on: date | None = None
    organization: str | None = Field(default=None, max_length=256)
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))


class SourceState(SQLModel, table=True):
    """Incremental cursors a source keeps between runs (a tree sha per model, a start-time cursor)."""

    __tablename__ = "source_state"

    source: str = Field(max_length=64, primary_key=True)
    key: str = Field(max_length=512, primary_key=True)
    value: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class TelemetryEvent(SQLModel, table=True):
    """One LiteLLM call attempt. Never holds prompt or response text.

    On Postgres the table is partitioned by UTC day of ``started_at`` (migration 0005,
    ``store.partitions``): its primary key is ``(id, started_at)`` and its unique key
    ``(event_id, started_at)``, since a partitioned table's keys must hold the partition key (``id``
    stays unique through its sequence, and the ORM maps it alone). SQLite keeps ``UNIQUE (event_id)``.
    """

    __tablename__ = "telemetry_event"
    __table_args__ = (
        sa.Index("ix_telemetry_started_at", "started_at"),
        sa.UniqueConstraint("event_id").ddl_if(dialect="sqlite"),
        sa.UniqueConstraint("event_id", "started_at", name="uq_telemetry_event_id_started")
        .ddl_if(dialect="postgresql"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=128)
    trace_id: str | None = Field(default=None, max_length=128)
    origin: str = Field(default="callback", max_length=16)  # callback | spend_logs
    model_group: str | None = Field(default=None, max_length=256)
    model: str = Field(max_length=256)
    provider: str | None = Field(default=None, max_length=64)
    task: str | None = Field(default=None, max_length=128)
    # Which rule gave the task (telemetry.events.TaskSource): spend_logs_metadata, request_tag, ...
    task_source: str | None = Field(default=None, max_length=32)
    status: str = Field(max_length=16)  # success | failure
    error_class: str | None = Field(default=None, max_length=128)
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    ended_at: datetime | None = _ts()
    latency_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    cache_hit: bool = False
    tags: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))


class TelemetryRollup(SQLModel, table=True):
    """Aggregates of the telemetry of one (model, task) in one UTC hour; mergeable across hours.

    Maintained by ``telemetry.rollups.catch_up_rollups`` (the hours marked in
    ``telemetry_rollup_dirty`` are recomputed from the raw events). ``model`` is the LiteLLM
    ``model_group``, else the model name; ``task`` None holds the untagged calls. The cost
    definition is ``telemetry.rollups.cost_per_1k_tokens``; ``latency_sketch`` is a
    ``telemetry.sketch.LatencySketch`` as JSON.
    """

    __tablename__ = "telemetry_rollup"
    __table_args__ = (sa.Index("ix_rollup_hour", "hour_start", "all_tasks"),)

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    hour_start: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    span_hours: int = 1  # 24: a day's per-model row (all_tasks), merged from its 24 hour rows
    model: str = Field(max_length=256)
    task: str | None = Field(default=None, max_length=128)  # None: calls without a task
    # True: the model's row with every task merged (task None), which per-model reads use alone.
    all_tasks: bool = False
    calls: int = 0  # successes and failures
    errors: int = 0
    cost_calls: int = 0  # calls that reported a cost
    cost_total: float = 0.0
    priced_calls: int = 0  # calls that reported a cost and at least one token
    priced_cost: float = 0.0
    priced_tokens: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    prompt_tokens: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    completion_tokens: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    latency_samples: int = 0  # successful calls, not cache hits, with a latency
    latency_sketch: dict[str, int] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    computed_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class TelemetryRollupDirty(SQLModel, table=True):
    """An hour (or a day, keyed ``-epoch_day - 1``) whose rollups are out of date.

    A trigger on ``telemetry_event`` marks the hour of every inserted event in the inserting
    transaction (bumping ``version``); the catch-up locks the mark, rebuilds the hour and deletes the
    mark in one transaction, so an insert that commits meanwhile marks the hour again."""

    __tablename__ = "telemetry_rollup_dirty"

    hour: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))  # epoch hours
    version: int = Field(default=1, sa_column=sa.Column(sa.BigInteger, nullable=False))


class ScoringRun(SQLModel, table=True):
    """One computed utility table; exactly one successful run is current."""

    __tablename__ = "scoring_run"

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    status: str = Field(max_length=16)
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = _ts()
    policy_hash: str | None = Field(default=None, max_length=128)
    is_current: bool = Field(default=False, index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class UtilityScore(SQLModel, table=True):
    """Utility of one model for one task in one scoring run, with every component kept."""

    __tablename__ = "utility_score"
    __table_args__ = (sa.UniqueConstraint("run_id", "task", "model", name="uq_utility_run_task_model"),)

    id: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True, autoincrement=True))
    run_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("scoring_run.id", ondelete="CASCADE"),
                                            nullable=False, index=True))
    task: str = Field(max_length=128)
    model: str = Field(max_length=256)
    utility: float | None = None  # None when excluded
    quality: float | None = None
    cost: float | None = None
    latency: float | None = None
    reliability: float | None = None
    cost_per_1k_tokens: float | None = None
    latency_p95_ms: float | None = None
    success_rate: float | None = None
    excluded: bool = False
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    evidence: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
