"""Job metrics pushed to a Prometheus Pushgateway by every CronJob command.

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

Every metric recsys exposes, pushed or served by ``recsys serve``, is declared once in ``METRICS``
below with its type, labels and HELP text; nothing is pushed or served that is not declared there, so
alerting rules, the Grafana dashboard and their tests reference the table instead of a second list.
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
    "METRICS",
    "PUSH_COMMANDS",
    "PUSH_JOB",
    "TELEMETRY_QUANTILES",
    "JobReport",
    "MetricSpec",
    "push_job_report",
]

log = logging.getLogger("recsys.metrics")

PUSH_JOB = "recsys"
# The `command` label values, which are also the Dockerfile targets and CronJob names.
CRONJOB_COMMANDS = (
    "ingest-lmsys", "ingest-mteb", "ingest-litellm", "score", "snapshot", "route-test", "telemetry-prune",
)
# Commands that push like a CronJob but ship no CronJob of their own: a team runs `recsys ingest outcomes`
# from its eval pipeline (or a Job it writes), after its nightly evals.
PUSH_COMMANDS = (*CRONJOB_COMMANDS, "ingest-outcomes")


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

# Every series is a gauge of a state or of the last run: a Pushgateway group is replaced by each
# push, so a pushed counter or histogram would restart at every run and rate() over it would mean
# nothing. Windowed counts (telemetry of the last 24 h) are gauges too: they fall as the window moves.
METRICS: Mapping[str, MetricSpec] = {spec.name: spec for spec in (
    # --- every job's outcome -------------------------------------------------------------------
    MetricSpec("recsys_job_duration_seconds", "gauge", (), "Wall time of the last run of the job.", _PUSH),
    MetricSpec("recsys_job_success", "gauge", (),
               "1 if the last run of the job succeeded, 0 if it failed (a run skipped with exit 75 pushes neither).",
               _PUSH),
    MetricSpec("recsys_job_last_success_timestamp_seconds", "gauge", (),
               "Unix time of the last successful run (pushed by successful runs only).", _PUSH),
    MetricSpec("recsys_job_last_failure_timestamp_seconds", "gauge", (),
               "Unix time of the last failed run (pushed by failed runs only).", _PUSH),
    MetricSpec("recsys_job_last_skipped_timestamp_seconds", "gauge", (),
               "Unix time of the last run that exited 75 because another run of the job held its lock "
               "(pushed by skipped runs only; such a run pushes nothing else).", _PUSH),
    # --- ingest -------------------------------------------------------------------------------
    MetricSpec("recsys_ingest_rows", "gauge", ("source",), "Rows accepted by the last ingest.", _PUSH),
    MetricSpec("recsys_ingest_rejected_rows", "gauge", ("source",), "Rows rejected by the last ingest.", _PUSH),
    # --- score --------------------------------------------------------------------------------
    MetricSpec("recsys_scored_models", "gauge", (),
               "(task, model) pairs the last score run ranked, over all tasks (0: nothing can be routed by score).",
               _PUSH),
    MetricSpec("recsys_excluded_models", "gauge", (),
               "(task, model) pairs the last score run excluded, over all tasks, each with a reason.", _PUSH),
    # --- route-test ---------------------------------------------------------------------------
    MetricSpec("recsys_route_test_cases", "gauge", (), "Route-test cases the last route-test run checked.", _PUSH),
    MetricSpec("recsys_route_test_failures", "gauge", (),
               "Route-test cases whose expectations failed in the last route-test run.", _PUSH),
    # --- route() decisions timed by a run (route-test: one per case; score: one per routable task) --
    MetricSpec("recsys_recommendation_decisions", "gauge", ("task",),
               "route() decisions the last run of the job made and timed, per task.", _PUSH),
    MetricSpec("recsys_recommendation_latency_max_seconds", "gauge", ("task",),
               "Wall time of the slowest route() decision the last run of the job made, per task.", _PUSH),
    # --- telemetry-prune ----------------------------------------------------------------------
    MetricSpec("recsys_telemetry_pruned_events", "gauge", (),
               "Raw telemetry events the last telemetry-prune run deleted.", _PUSH),
    # --- freshness and rankings (snapshot, serve) ----------------------------------------------
    MetricSpec("recsys_source_age_seconds", "gauge", ("source",),
               "Seconds since the source was last ingested or confirmed unchanged (cache freshness).", _BOTH),
    MetricSpec("recsys_source_stale", "gauge", ("source",),
               "1 when the source is older than RECSYS_STALE_AFTER_HOURS or never succeeded, else 0.", _BOTH),
    MetricSpec("recsys_scoring_run_age_seconds", "gauge", (),
               "Seconds since the current scoring run was computed.", _BOTH),
    MetricSpec("recsys_utility_score", "gauge", ("task", "model"),
               "Utility of the current top N models per task in the current scoring run.", _PUSH),
    # --- LiteLLM telemetry over the snapshot's window (the last 24 h) --------------------------
    MetricSpec("recsys_model_selected_calls", "gauge", ("task", "model"),
               "LiteLLM calls per task and model in the last 24 h of stored telemetry (a window: it also falls).",
               _BOTH),
    MetricSpec("recsys_telemetry_calls", "gauge", ("model",),
               "LiteLLM calls per model group in the last 24 h of stored telemetry, failures included.", _PUSH),
    MetricSpec("recsys_telemetry_errors", "gauge", ("model",),
               "Failed LiteLLM calls per model group in the last 24 h of stored telemetry.", _PUSH),
    MetricSpec("recsys_telemetry_latency_seconds", "gauge", ("model", "quantile"),
               "LiteLLM call latency per model group in the last 24 h of stored telemetry, at quantile 0.5 and "
               "0.95 (cache hits excluded).", _PUSH),
    # --- serve only ---------------------------------------------------------------------------
    MetricSpec("recsys_build_info", "gauge", ("version",), "Always 1; the recsys version serving.", _SERVE),
    MetricSpec("recsys_store_up", "gauge", (), "1 when the store answered the last scrape, else 0.", _SERVE),
)}

# The telemetry latency quantiles the snapshot document carries (its latency_p50_ms, latency_p95_ms).
TELEMETRY_QUANTILES = {"0.5": "latency_p50_ms", "0.95": "latency_p95_ms"}


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
    # declared label-less gauges (see set_gauge): name -> value
    gauges: dict[str, float] = field(default_factory=dict)
    # per source: rows accepted / rejected by an ingest, and the age of its current data
    ingest_rows: dict[str, int] = field(default_factory=dict)
    ingest_rejected_rows: dict[str, int] = field(default_factory=dict)
    source_age_seconds: dict[str, float] = field(default_factory=dict)
    source_stale: dict[str, bool] = field(default_factory=dict)
    scoring_run_age_seconds: float | None = None
    # (task, model) -> value
    model_selected_calls: dict[tuple[str, str], int] = field(default_factory=dict)
    utility_score: dict[tuple[str, str], float] = field(default_factory=dict)
    # model -> value; (model, quantile) -> seconds
    telemetry_calls: dict[str, int] = field(default_factory=dict)
    telemetry_errors: dict[str, int] = field(default_factory=dict)
    telemetry_latency_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    # (task, seconds) of each route() decision the run timed
    recommendation_latency: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.command not in PUSH_COMMANDS:
            raise ValueError(f"unknown command label {self.command!r}; use one of {PUSH_COMMANDS}")
        self.started = self.clock.now().timestamp()
        self._started_monotonic = time.monotonic()
        self._finished_monotonic: float | None = None

    def set_gauge(self, name: str, value: float) -> None:
        """Set one declared, label-less gauge of ``METRICS`` (a name missing there is a programming error)."""
        spec = METRICS.get(name)
        if spec is None or spec.kind != "gauge" or spec.labels or "push" not in spec.exposed_by:
            raise ValueError(f"{name!r} is not a declared label-less pushed gauge; declare it in METRICS first")
        self.gauges[name] = float(value)

    def record_ingest(self, source: str, *, rows: int, rejected: int) -> None:
        self.ingest_rows[source] = rows
        self.ingest_rejected_rows[source] = rejected

    def observe_recommendation_latency(self, seconds: float, *, task: str) -> None:
        """One real ``route()`` decision's wall time (route-test and score call this per decision)."""
        self.recommendation_latency.append((task, seconds))

    def record_snapshot(self, document: Mapping[str, Any], *, top: int = 3) -> None:
        """Source freshness, scoring run age, the top ``top`` utilities of each task and the telemetry
        of the window, from a snapshot document."""
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
        telemetry = document.get("telemetry") or {}
        for entry in telemetry.get("models", []):
            model = entry["model"]
            self.telemetry_calls[model] = int(entry["calls"])
            self.telemetry_errors[model] = int(entry["errors"])
            for quantile, key in TELEMETRY_QUANTILES.items():
                if entry.get(key) is not None:
                    self.telemetry_latency_seconds[(model, quantile)] = float(entry[key]) / 1000
        for entry in telemetry.get("selections", []):
            self.model_selected_calls[(entry["task"], entry["model"])] = int(entry["calls"])

    def finish(self, *, success: bool, skipped: bool = False) -> None:
        """Record the end of the run; ``skipped``: it found the lock held and did nothing (exit 75)."""
        self.finished = self.clock.now().timestamp()
        self._finished_monotonic = time.monotonic()
        self.success = success and not skipped
        self.skipped = skipped

    @property
    def duration_seconds(self) -> float:
        return (self._finished_monotonic or time.monotonic()) - self._started_monotonic


def _registry(report: JobReport) -> CollectorRegistry:
    """The run's series, each a gauge declared in ``METRICS`` and set only when the run has a value."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    if report.skipped:
        # Alone, so the POST leaves the last real run's series (success, timestamps, counts) intact.
        spec = METRICS["recsys_job_last_skipped_timestamp_seconds"]
        Gauge(spec.name, spec.help, registry=registry).set(report.finished or report.clock.now().timestamp())
        return registry

    def gauge(name: str, values: Mapping[Any, float]) -> None:
        if not values:
            return
        spec = METRICS[name]
        metric = Gauge(name, spec.help, list(spec.labels), registry=registry)
        for key, value in sorted(values.items()):
            if spec.labels:
                metric.labels(*(key if isinstance(key, tuple) else (key,))).set(value)
            else:
                metric.set(value)

    gauge("recsys_job_duration_seconds", {(): report.duration_seconds})
    gauge("recsys_job_success", {(): 1 if report.success else 0})
    finished = report.finished if report.finished is not None else report.clock.now().timestamp()
    if report.success:
        gauge("recsys_job_last_success_timestamp_seconds", {(): finished})
    else:
        gauge("recsys_job_last_failure_timestamp_seconds", {(): finished})
    for name, value in sorted(report.gauges.items()):
        gauge(name, {(): value})
    gauge("recsys_ingest_rows", report.ingest_rows)
    gauge("recsys_ingest_rejected_rows", report.ingest_rejected_rows)
    gauge("recsys_source_age_seconds", report.source_age_seconds)
    gauge("recsys_source_stale", {source: float(stale) for source, stale in report.source_stale.items()})
    if report.scoring_run_age_seconds is not None:
        gauge("recsys_scoring_run_age_seconds", {(): report.scoring_run_age_seconds})
    gauge("recsys_utility_score", report.utility_score)
    gauge("recsys_model_selected_calls", report.model_selected_calls)
    gauge("recsys_telemetry_calls", report.telemetry_calls)
    gauge("recsys_telemetry_errors", report.telemetry_errors)
    gauge("recsys_telemetry_latency_seconds", report.telemetry_latency_seconds)
    by_task: dict[str, list[float]] = {}
    for task, seconds in report.recommendation_latency:
        by_task.setdefault(task, []).append(seconds)
    gauge("recsys_recommendation_decisions", {task: float(len(v)) for task, v in by_task.items()})
    gauge("recsys_recommendation_latency_max_seconds", {task: max(v) for task, v in by_task.items()})
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
