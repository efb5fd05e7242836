"""Job metrics pushed to a Prometheus Pushgateway by every CronJob command (DESIGN.md section 9).

One push at the end of a job, success or failure, with ``job="recsys"`` and the grouping key
``{command="<job name>"}`` (never a pod or instance label, so each push replaces the last).
A push that fails is logged and counted, never allowed to change the job's own outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["CRONJOB_COMMANDS", "PUSH_JOB", "JobReport", "push_job_report"]

log = logging.getLogger("recsys.metrics")

PUSH_JOB = "recsys"
# The `command` label values, which are also the Dockerfile targets and CronJob names.
CRONJOB_COMMANDS = (
    "ingest-lmsys", "ingest-mteb", "ingest-litellm", "score", "snapshot", "route-test", "telemetry-prune",
)


@dataclass
class JobReport:
    """What one job run reports; commands fill it in, the CLI pushes it when the job ends."""

    command: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    success: bool | None = None
    # per source: rows accepted / rejected by an ingest, and the age of its current data
    ingest_rows: dict[str, int] = field(default_factory=dict)
    ingest_rejected_rows: dict[str, int] = field(default_factory=dict)
    source_age_seconds: dict[str, float] = field(default_factory=dict)
    # free-form gauges other jobs add: name (without the recsys_ prefix) -> value
    gauges: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.command not in CRONJOB_COMMANDS:
            raise ValueError(f"unknown command label {self.command!r}; use one of {CRONJOB_COMMANDS}")

    def record_ingest(self, source: str, *, rows: int, rejected: int) -> None:
        self.ingest_rows[source] = rows
        self.ingest_rejected_rows[source] = rejected

    def finish(self, *, success: bool) -> None:
        self.finished = time.time()
        self.success = success

    @property
    def duration_seconds(self) -> float:
        return (self.finished or time.time()) - self.started


def _registry(report: JobReport) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge("recsys_job_duration_seconds", "Wall time of the last run of the job.", registry=registry).set(
        report.duration_seconds)
    Gauge("recsys_job_success", "1 if the last run of the job succeeded, else 0.", registry=registry).set(
        1 if report.success else 0)
    finished = report.finished or time.time()
    if report.success:
        Gauge("recsys_job_last_success_timestamp_seconds", "Unix time of the last successful run.",
              registry=registry).set(finished)
    else:
        Gauge("recsys_job_last_failure_timestamp_seconds", "Unix time of the last failed run.",
              registry=registry).set(finished)
    if report.ingest_rows:
        rows = Gauge("recsys_ingest_rows", "Rows accepted by the last ingest.", ["source"], registry=registry)
        for source, value in report.ingest_rows.items():
            rows.labels(source=source).set(value)
    if report.ingest_rejected_rows:
        rejected = Gauge("recsys_ingest_rejected_rows", "Rows rejected by the last ingest.", ["source"],
                         registry=registry)
        for source, count in report.ingest_rejected_rows.items():
            rejected.labels(source=source).set(count)
    if report.source_age_seconds:
        age = Gauge("recsys_source_age_seconds", "Age of the current data of each source.", ["source"],
                    registry=registry)
        for source, seconds in report.source_age_seconds.items():
            age.labels(source=source).set(seconds)
    for name, gauge_value in sorted(report.gauges.items()):
        Gauge(f"recsys_{name}", f"recsys {name.replace('_', ' ')}.", registry=registry).set(gauge_value)
    return registry


def push_job_report(report: JobReport, *, gateway_url: str | None, username: str | None = None,
                    password: str | None = None, timeout: float = 10.0) -> bool:
    """Push ``report`` if a gateway is configured; True when pushed. Never raises for push failures."""
    if not gateway_url:
        return False
    from prometheus_client import push_to_gateway
    from prometheus_client.exposition import basic_auth_handler, default_handler

    from ..redact import redact_url

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        if username is not None:
            return basic_auth_handler(url, method, timeout, headers, data, username, password or "")
        return default_handler(url, method, timeout, headers, data)

    try:
        push_to_gateway(gateway_url, job=PUSH_JOB, registry=_registry(report),
                        grouping_key={"command": report.command}, timeout=timeout, handler=handler)
    except Exception as exc:
        log.warning("could not push metrics to the Pushgateway at %s: %s", redact_url(gateway_url),
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return True
