"""Job metrics pushed to a Prometheus Pushgateway by every CronJob command (DESIGN.md section 9).

One push at the end of a job, success or failure, with ``job="recsys"`` and the grouping key
``{command="<job name>"}`` (never a pod or instance label, so each push replaces the last).
A push that fails is logged once, never allowed to change the job's own outcome.

The push is a POST (``pushadd``), which replaces the pushed metric names of the group and keeps the
others: a failed run adds ``recsys_job_last_failure_timestamp_seconds`` and keeps the last success's
``recsys_job_last_success_timestamp_seconds``, so "no success for N hours" stays computable. A run
that found its job's lock held (exit 75) did nothing, so it is neither a success nor a failure: it
pushes ``recsys_job_last_skipped_timestamp_seconds`` alone, and every other series of the group
(the last run's success, its timestamps) stays as it was.

A push has one total deadline (``timeout``, 10 s by default): a gateway that accepts and then
answers a byte at a time cannot hold a job past it.

Every metric recsys exposes, pushed or served by ``recsys serve``, is named in ``METRICS`` below, so
alerting rules (and their tests) can reference the table instead of a second list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "CRONJOB_COMMANDS",
    "LATENCY_BUCKETS",
    "METRICS",
    "PUSH_JOB",
    "JobReport",
    "MetricSpec",
    "StaticCollector",
    "counter_family",
    "histogram_family",
    "push_job_report",
]

log = logging.getLogger("recsys.metrics")

PUSH_JOB = "recsys"
# The `command` label values, which are also the Dockerfile targets and CronJob names.
CRONJOB_COMMANDS = (
    "ingest-lmsys", "ingest-mteb", "ingest-litellm", "score", "snapshot", "route-test", "telemetry-prune",
)

# Route decisions take microseconds (DESIGN.md 6 and the routing benchmark), a slow one milliseconds.
LATENCY_BUCKETS = (0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
                   0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its full name, Prometheus type, labels, meaning, and who exposes it.

    ``exposed_by``: ``push`` (CronJobs, to the Pushgateway, with ``job`` and ``command`` labels added),
    ``serve`` (``recsys serve`` ``/metrics``), or both.
    """

    name: str
    kind: Literal["gauge", "counter", "histogram"]
    labels: tuple[str, ...]
    help: str
    exposed_by: tuple[str, ...]


_PUSH = ("push",)
_SERVE = ("serve",)
_BOTH = ("push", "serve")

METRICS: Mapping[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("recsys_job_duration_seconds", "gauge", (), "Wall time of the last run of the job.", _PUSH),
    MetricSpec("recsys_job_success", "gauge", (), "1 if the last run of the job succeeded, else 0.", _PUSH),
    MetricSpec("recsys_job_last_success_timestamp_seconds", "gauge", (),
               "Unix time of the last successful run (pushed by successful runs only).", _PUSH),
    MetricSpec("recsys_job_last_failure_timestamp_seconds", "gauge", (),
               "Unix time of the last failed run (pushed by failed runs only).", _PUSH),
    MetricSpec("recsys_job_last_skipped_timestamp_seconds", "gauge", (),
               "Unix time of the last run that found the job's lock held by another run and did nothing "
               "(exit 75; pushed by those runs only, alone).", _PUSH),
    MetricSpec("recsys_ingest_rows", "gauge", ("source",), "Rows accepted by the last ingest.", _PUSH),
    MetricSpec("recsys_ingest_rejected_rows", "gauge", ("source",), "Rows rejected by the last ingest.", _PUSH),
    MetricSpec("recsys_source_age_seconds", "gauge", ("source",),
               "Seconds since the source was last ingested or confirmed unchanged (cache freshness).", _BOTH),
    MetricSpec("recsys_source_stale", "gauge", ("source",),
               "1 when the source is older than RECSYS_STALE_AFTER_HOURS or never succeeded, else 0.", _BOTH),
    MetricSpec("recsys_scoring_run_age_seconds", "gauge", (),
               "Seconds since the current scoring run was computed.", _BOTH),
    MetricSpec("recsys_recommendation_latency_seconds", "histogram", ("task",),
               "Time to compute one recommendation (route decision) in a job: route-test, score, snapshot.",
               _PUSH),
    MetricSpec("recsys_route_decision_latency_seconds", "histogram", ("task",),
               "Time this server took to rank each task's candidates when it rebuilt its snapshot.", _SERVE),
    MetricSpec("recsys_model_selected_total", "counter", ("task", "model"),
               "LiteLLM calls per task and model in the stored telemetry (drops when old events are pruned).",
               _BOTH),
    MetricSpec("recsys_utility_score", "gauge", ("task", "model"),
               "Utility of the current top N models per task in the current scoring run.", _PUSH),
    MetricSpec("recsys_build_info", "gauge", ("version",), "Always 1; the recsys version serving.", _SERVE),
    MetricSpec("recsys_store_up", "gauge", (), "1 when the store answered the last scrape, else 0.", _SERVE),
)}


@dataclass
class JobReport:
    """What one job run reports; commands fill it in, the CLI pushes it when the job ends."""

    command: str
    # Where the pushed timestamps come from (the CLI passes its clock); durations are monotonic.
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)
    started: float = field(init=False)  # Unix time, from ``clock``
    finished: float | None = None
    success: bool | None = None
    # True when the run did nothing because another run holds the job's lock (exit 75).
    skipped: bool = False
    # per source: rows accepted / rejected by an ingest, and the age of its current data
    ingest_rows: dict[str, int] = field(default_factory=dict)
    ingest_rejected_rows: dict[str, int] = field(default_factory=dict)
    source_age_seconds: dict[str, float] = field(default_factory=dict)
    source_stale: dict[str, bool] = field(default_factory=dict)
    scoring_run_age_seconds: float | None = None
    # (task, model) -> value
    model_selected: dict[tuple[str, str], int] = field(default_factory=dict)
    utility_score: dict[tuple[str, str], float] = field(default_factory=dict)
    # (task, seconds) observations of recommendation latency
    recommendation_latency: list[tuple[str, float]] = field(default_factory=list)
    # free-form gauges other jobs add: name (the recsys_ prefix is added when missing) -> value
    gauges: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.command not in CRONJOB_COMMANDS:
            raise ValueError(f"unknown command label {self.command!r}; use one of {CRONJOB_COMMANDS}")
        self.started = self.clock.now().timestamp()
        self._started_monotonic = time.monotonic()
        self._finished_monotonic: float | None = None

    def record_ingest(self, source: str, *, rows: int, rejected: int) -> None:
        self.ingest_rows[source] = rows
        self.ingest_rejected_rows[source] = rejected

    def observe_recommendation_latency(self, seconds: float, *, task: str) -> None:
        """One route decision's wall time (route-test and score call this per decision)."""
        self.recommendation_latency.append((task, seconds))

    def record_snapshot(self, document: Mapping[str, Any], *, top: int = 3) -> None:
        """Source freshness, scoring run age and the top ``top`` utilities of each task, from a snapshot."""
        for source in document.get("sources", []):
            if source["age_seconds"] is not None:
                self.source_age_seconds[source["source"]] = float(source["age_seconds"])
            self.source_stale[source["source"]] = bool(source["stale"])
        run = document.get("scoring_run")
        if run is not None and run.get("age_seconds") is not None:
            self.scoring_run_age_seconds = float(run["age_seconds"])
        for task, ranked in document.get("tasks", {}).items():
            for entry in ranked[:top]:
                if entry["utility"] is not None:
                    self.utility_score[(task, entry["model"])] = float(entry["utility"])

    def finish(self, *, success: bool, skipped: bool = False) -> None:
        """Record the end of the run; ``skipped``: it found the lock held and did nothing (exit 75)."""
        self.finished = self.clock.now().timestamp()
        self._finished_monotonic = time.monotonic()
        self.success = success and not skipped
        self.skipped = skipped

    @property
    def duration_seconds(self) -> float:
        return (self._finished_monotonic or time.monotonic()) - self._started_monotonic


def _help(name: str) -> str:
    return METRICS[name].help


def histogram_family(name: str, observations: list[tuple[str, float]]) -> Any:
    """A HistogramMetricFamily (label ``task``) from raw observations, without ``_created`` samples."""
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, METRICS[name].help, labels=["task"])
    by_task: dict[str, list[float]] = {}
    for task, seconds in observations:
        by_task.setdefault(task, []).append(seconds)
    for task, values in sorted(by_task.items()):
        buckets = [(repr(bound), float(sum(1 for v in values if v <= bound))) for bound in LATENCY_BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([task], buckets, sum(values))
    return family


def counter_family(name: str, values: Mapping[tuple[str, str], int]) -> Any:
    """A CounterMetricFamily (labels ``task``, ``model``), without ``_created`` samples."""
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name.removesuffix("_total"), METRICS[name].help, labels=["task", "model"])
    for (task, model), count in sorted(values.items()):
        family.add_metric([task, model], count)
    return family


class StaticCollector:
    """A collector that yields prebuilt metric families."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


def _registry(report: JobReport) -> CollectorRegistry:
    # Each metric is created with its literal name (not built in a loop), so tools that read this
    # module's source (the alert-rule checks of the deployment tests) see every name pushed.
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    if report.skipped:
        # Alone, so the POST leaves the last real run's series (success, timestamps, counts) intact.
        Gauge("recsys_job_last_skipped_timestamp_seconds", _help("recsys_job_last_skipped_timestamp_seconds"),
              registry=registry).set(report.finished or report.clock.now().timestamp())
        return registry

    def per_label(metric: Gauge, values: Mapping[Any, float]) -> None:
        for key, value in sorted(values.items()):
            metric.labels(*(key if isinstance(key, tuple) else (key,))).set(value)

    Gauge("recsys_job_duration_seconds", _help("recsys_job_duration_seconds"),
          registry=registry).set(report.duration_seconds)
    Gauge("recsys_job_success", _help("recsys_job_success"), registry=registry).set(1 if report.success else 0)
    finished = report.finished if report.finished is not None else report.clock.now().timestamp()
    if report.success:
        Gauge("recsys_job_last_success_timestamp_seconds", _help("recsys_job_last_success_timestamp_seconds"),
              registry=registry).set(finished)
    else:
        Gauge("recsys_job_last_failure_timestamp_seconds", _help("recsys_job_last_failure_timestamp_seconds"),
              registry=registry).set(finished)
    if report.ingest_rows:
        per_label(Gauge("recsys_ingest_rows", _help("recsys_ingest_rows"), ["source"], registry=registry),
                  report.ingest_rows)
    if report.ingest_rejected_rows:
        per_label(Gauge("recsys_ingest_rejected_rows", _help("recsys_ingest_rejected_rows"), ["source"],
                        registry=registry), report.ingest_rejected_rows)
    if report.source_age_seconds:
        per_label(Gauge("recsys_source_age_seconds", _help("recsys_source_age_seconds"), ["source"],
                        registry=registry), report.source_age_seconds)
    if report.source_stale:
        per_label(Gauge("recsys_source_stale", _help("recsys_source_stale"), ["source"], registry=registry),
                  {source: float(stale) for source, stale in report.source_stale.items()})
    if report.scoring_run_age_seconds is not None:
        Gauge("recsys_scoring_run_age_seconds", _help("recsys_scoring_run_age_seconds"),
              registry=registry).set(report.scoring_run_age_seconds)
    if report.utility_score:
        per_label(Gauge("recsys_utility_score", _help("recsys_utility_score"), ["task", "model"],
                        registry=registry), report.utility_score)
    # Built as metric families: prometheus_client's Counter and Histogram would add `_created` samples.
    families = []
    if report.model_selected:
        families.append(counter_family("recsys_model_selected_total", report.model_selected))
    if report.recommendation_latency:
        families.append(histogram_family("recsys_recommendation_latency_seconds", report.recommendation_latency))
    if families:
        registry.register(StaticCollector(families))
    for name, gauge_value in sorted(report.gauges.items()):
        # Accept the name with or without its prefix: "scored_models" and "recsys_scored_models" alike.
        full = name if name.startswith("recsys_") else f"recsys_{name}"
        Gauge(full, f"{full.replace('_', ' ')}.", registry=registry).set(gauge_value)
    return registry


def _split_credentials(url: str, username: str | None,
                       password: str | None) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host:port`` -> (``http://host:port``, user, pw): urllib cannot send userinfo,
    so credentials in the URL become basic auth (explicit username/password settings win)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, username, password
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    if username is None and parts.username is not None:
        username, password = unquote(parts.username), password or unquote(parts.password or "")
    return clean, username, password


def push_job_report(report: JobReport, *, gateway_url: str | None, username: str | None = None,
                    password: str | None = None, timeout: float = 10.0) -> bool:
    """Push ``report`` if a gateway is configured; True when pushed. Never raises for push failures.

    ``timeout`` bounds the whole push, not each socket read: the request runs in a daemon thread
    this call waits for at most ``timeout`` seconds; a push still going then is given up (the
    thread ends with its socket timeout, or with the process).
    """
    if not gateway_url:
        return False
    from prometheus_client import pushadd_to_gateway
    from prometheus_client.exposition import basic_auth_handler, default_handler

    from ..redact import first_line, redact_url

    display_url = redact_url(gateway_url)
    gateway_url, username, password = _split_credentials(gateway_url, username, password)

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        if username is not None:
            return basic_auth_handler(url, method, timeout, headers, data, username, password or "")
        return default_handler(url, method, timeout, headers, data)

    registry = _registry(report)
    errors: list[str] = []

    def push() -> None:
        try:
            pushadd_to_gateway(gateway_url, job=PUSH_JOB, registry=registry,
                               grouping_key={"command": report.command}, timeout=timeout, handler=handler)
        except Exception as exc:
            # Only the text leaves the thread: the exception (an HTTPError holds the response's
            # socket) dies here instead of in a reference cycle through this frame.
            errors.append(first_line(exc))

    pusher = threading.Thread(target=push, name="recsys-metrics-push", daemon=True)
    pusher.start()
    pusher.join(timeout)
    if pusher.is_alive():
        log.warning("could not push metrics to the Pushgateway at %s: no complete answer within %g s",
                    display_url, timeout)
        return False
    if errors:
        log.warning("could not push metrics to the Pushgateway at %s: %s", display_url, errors[0])
        return False
    return True
