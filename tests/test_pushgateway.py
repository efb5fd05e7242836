"""Job metrics pushed to a REAL Pushgateway (Debian's prometheus-pushgateway), read back from its /metrics."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from recsys_cli._base import AppState, RecsysTyper, cronjob, state
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.diagnostics.metrics import METRICS, JobReport, push_job_report
from recommender_core.store import Store

from ._pushgateway import PASSWORD, USER, Gateway
from .conftest import REPO_ROOT
from .test_snapshot import NOW, fill

pytestmark = pytest.mark.pushgateway
runner = CliRunner()
RECSYS = str(Path(sys.executable).with_name("recsys"))
SAMPLE_LMSYS = REPO_ROOT / "sample_mirror" / "lmsys"

def _by(samples: list[tuple[dict[str, str], float]], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(labels[k] for k in keys): value for labels, value in samples}


def _assert_grouping(samples: dict[str, list[tuple[dict[str, str], float]]], command: str) -> None:
    for name, rows in samples.items():
        if name.startswith("recsys_"):
            for labels, _ in rows:
                assert labels["command"] == command, (name, labels)
                assert labels.get("instance", "") == "", (name, labels)  # no pod or instance label
                assert not {"pod", "hostname"} & set(labels), (name, labels)


def test_snapshot_job_pushes_every_metric(gateway: Gateway, store: Store, database_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store)
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    # The store was filled at NOW; the job runs five minutes later by its own clock, whatever the date.
    clock = FixedClock(NOW + timedelta(minutes=5))
    result = runner.invoke(app, ["--database-url", database_url, "snapshot", "--json"], obj=AppState(clock=clock))
    assert result.exit_code == 0, result.output
    samples = gateway.scrape()
    _assert_grouping(samples, "snapshot")
    assert samples["recsys_job_success"] == [({"job": "recsys", "command": "snapshot", "instance": ""}, 1.0)]
    [(_, success_at)] = samples["recsys_job_last_success_timestamp_seconds"]
    assert success_at == clock.now().timestamp()  # the job's clock, like every time it reports
    assert "recsys_job_last_failure_timestamp_seconds" not in samples
    [(_, duration)] = samples["recsys_job_duration_seconds"]
    assert 0 < duration < 60
    ages = _by(samples["recsys_source_age_seconds"], "source")
    assert set(ages) == {("lmsys",), ("mteb",)}
    assert ages[("lmsys",)] - ages[("mteb",)] == pytest.approx(28 * 3600)
    assert _by(samples["recsys_source_stale"], "source")[("lmsys",)] == 1.0
    assert samples["recsys_scoring_run_age_seconds"][0][1] == 300
    assert _by(samples["recsys_utility_score"], "task", "model") == {("coding", "gpt-5"): 0.7,
                                                                       ("coding", "gpt-4.1"): 0.7}
    # the window of telemetry is the last 24 h of the real clock; fill() wrote its events at a fixed time
    assert "recsys_model_selected_total" not in samples and "recsys_model_selected_created" not in samples
    # snapshot orders stored scores, it makes no route() decision: no recommendation latency
    assert not {name for name in samples if "recommendation" in name}
    for name in samples:
        if name.startswith("recsys_"):
            assert "push" in METRICS[name].exposed_by, name


def test_ingest_counts_and_failure_then_success_keep_both_timestamps(gateway: Gateway) -> None:
    failed = JobReport(command="ingest-lmsys")
    failed.record_ingest("lmsys", rows=0, rejected=7)
    failed.finish(success=False)
    assert push_job_report(failed, gateway_url=gateway.url)
    samples = gateway.scrape()
    _assert_grouping(samples, "ingest-lmsys")
    assert samples["recsys_job_success"][0][1] == 0.0
    assert samples["recsys_job_last_failure_timestamp_seconds"][0][1] == pytest.approx(failed.finished)
    assert "recsys_job_last_success_timestamp_seconds" not in samples
    assert _by(samples["recsys_ingest_rejected_rows"], "source") == {("lmsys",): 7.0}

    ok = JobReport(command="ingest-lmsys")
    ok.record_ingest("lmsys", rows=7421, rejected=0)
    ok.set_gauge("recsys_scored_models", 12)
    with pytest.raises(ValueError, match="not a declared label-less pushed gauge"):
        ok.set_gauge("recsys_lmsys_categories", 26)  # undeclared: a programming error, caught at once
    with pytest.raises(ValueError, match="not a declared"):
        ok.set_gauge("recsys_ingest_rows", 1)  # declared, but with a label
    ok.finish(success=True)
    assert push_job_report(ok, gateway_url=gateway.url)
    samples = gateway.scrape()
    assert samples["recsys_job_success"][0][1] == 1.0
    assert samples["recsys_job_last_success_timestamp_seconds"][0][1] == pytest.approx(ok.finished)
    # the failure time is kept, so alerts can tell when the job last failed and last succeeded
    assert samples["recsys_job_last_failure_timestamp_seconds"][0][1] == pytest.approx(failed.finished)
    assert _by(samples["recsys_ingest_rows"], "source") == {("lmsys",): 7421.0}
    assert _by(samples["recsys_ingest_rejected_rows"], "source") == {("lmsys",): 0.0}
    assert samples["recsys_scored_models"][0][1] == 12 and "recsys_lmsys_categories" not in samples


def test_a_failing_cli_job_pushes_its_failure(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    result = runner.invoke(app, ["--database-url", "postgresql://recsys:pw@127.0.0.1:1/none", "snapshot"])
    assert result.exit_code == 1
    assert result.stderr.startswith("StoreUnavailableError: ")
    samples = gateway.scrape()
    _assert_grouping(samples, "snapshot")
    assert samples["recsys_job_success"][0][1] == 0.0
    assert "recsys_job_last_failure_timestamp_seconds" in samples


def _dry_run_app() -> typer.Typer:
    demo = RecsysTyper()

    @demo.command("score")
    @cronjob("score")
    def score(ctx: typer.Context,
              dry_run: Annotated[bool, typer.Option("--dry-run")] = False) -> None:
        report = state(ctx).report
        assert report is not None
        report.observe_recommendation_latency(0.0002, task="coding")

    @demo.callback()
    def root() -> None:
        pass

    return demo


def test_dry_run_pushes_nothing(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    demo = _dry_run_app()
    assert runner.invoke(demo, ["score", "--dry-run"]).exit_code == 0
    assert gateway.scrape() == {}
    assert runner.invoke(demo, ["score"]).exit_code == 0
    samples = gateway.scrape()
    _assert_grouping(samples, "score")
    assert _by(samples["recsys_recommendation_decisions"], "task") == {("coding",): 1.0}
    assert _by(samples["recsys_recommendation_latency_max_seconds"], "task") == {("coding",): 0.0002}


def test_basic_auth(auth_gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'recsys.db'}"
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", auth_gateway.url)
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_USERNAME", USER)
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_PASSWORD", "wrong-password")
    refused = runner.invoke(app, ["--database-url", db, "snapshot", "--json"])
    assert refused.exit_code == 0, refused.output  # the job's outcome does not depend on the push
    assert "could not push metrics to the Pushgateway" in refused.stderr and "401" in refused.stderr
    assert "wrong-password" not in refused.output
    assert auth_gateway.scrape() == {}

    monkeypatch.setenv("RECSYS_PUSHGATEWAY_PASSWORD", PASSWORD)
    result = runner.invoke(app, ["--database-url", db, "snapshot", "--json"])
    assert result.exit_code == 0 and "could not push" not in result.stderr
    samples = auth_gateway.scrape()
    _assert_grouping(samples, "snapshot")
    assert samples["recsys_job_success"][0][1] == 1.0


@pytest.fixture
def failing_gateway() -> Iterator[tuple[str, list[str]]]:
    """A local server that answers every push with 500, recording the methods it saw."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            seen.append(self.command)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = _fail

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_gateway_answering_500_changes_nothing(failing_gateway: tuple[str, list[str]], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = failing_gateway
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", url)
    result = runner.invoke(app, ["--database-url", f"sqlite:///{tmp_path / 'recsys.db'}", "snapshot", "--json"])
    assert result.exit_code == 0, result.output
    assert seen == ["POST"]  # exactly one push
    warnings = [line for line in result.stderr.splitlines() if "could not push" in line]
    assert len(warnings) == 1 and "HTTP Error 500" in warnings[0]


def test_a_gateway_that_never_answers_times_out(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as silent:  # listens, never accepts: the push waits for its timeout
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        report = JobReport(command="route-test")
        report.finish(success=True)
        started = time.monotonic()
        assert push_job_report(report, gateway_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                               timeout=0.5) is False
        assert time.monotonic() - started < 5
    assert "could not push metrics" in caplog.text


def test_the_default_push_timeout_is_ten_seconds() -> None:
    import inspect

    default: Callable[..., bool] = push_job_report
    assert inspect.signature(default).parameters["timeout"].default == 10.0


def test_route_test_job_pushes_one_latency_observation_per_case(gateway: Gateway, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n"
                     "  - {name: chat, task: chat, expect: {primary: gpt-4.1}}\n"
                     "  - {name: coding, task: coding, expect: {primary: claude-sonnet-4-5}}\n"
                     "  - {name: coding again, task: coding, expect: {primary_in: [claude-sonnet-4-5]}}\n")
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    result = runner.invoke(app, ["--database-url", f"sqlite:///{tmp_path / 'r.db'}", "route-test", str(cases)])
    assert result.exit_code == 0, result.output
    samples = gateway.scrape()
    _assert_grouping(samples, "route-test")
    assert samples["recsys_job_success"][0][1] == 1.0
    assert _by(samples["recsys_recommendation_decisions"], "task") == {("chat",): 1.0, ("coding",): 2.0}
    slowest = _by(samples["recsys_recommendation_latency_max_seconds"], "task")
    assert set(slowest) == {("chat",), ("coding",)} and all(0 < v < 1 for v in slowest.values())
    assert samples["recsys_route_test_cases"][0][1] == 3.0
    assert samples["recsys_route_test_failures"][0][1] == 0.0


def test_score_job_pushes_one_latency_observation_per_routable_task(gateway: Gateway, store: Store,
                                                                      database_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The slowest route() decision per task is pushed by score as well as route-test."""
    from .scoring_data import SMALL_POLICY, add_arena, add_mteb

    add_arena(store, [("alpha", "overall", 1300.0, 1250.0), ("beta", "overall", 1400.0, 1350.0),
                      ("alpha", "math", 1300.0, 1200.0), ("beta", "math", 1350.0, 1340.0)])
    add_mteb(store, [("emb-one", "TaskA", "Retrieval", 0.5)])
    policy = tmp_path / "policy.yaml"
    policy.write_text(SMALL_POLICY)
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    result = runner.invoke(app, ["--database-url", database_url, "score", "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    samples = gateway.scrape()
    _assert_grouping(samples, "score")
    assert _by(samples["recsys_recommendation_decisions"], "task") == {
        ("chat",): 1.0, ("math",): 1.0, ("retrieval",): 1.0}


def test_a_run_that_finds_its_lock_held_pushes_a_skip_and_no_failure(
        gateway: Gateway, store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 75 is not a failure: after a successful run, a run that finds the lock held adds only
    its skip timestamp; the success series and the last-success timestamp stay, no failure appears."""
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    command = ["--database-url", database_url, "ingest", "lmsys", "--source", str(SAMPLE_LMSYS)]
    ok = runner.invoke(app, command)
    assert ok.exit_code == 0, ok.output
    after_success = gateway.scrape()
    assert after_success["recsys_job_success"][0][1] == 1.0
    before_skip = time.time()
    with store.job_lock("ingest-lmsys"):  # another run of the job holds the lock
        skipped = runner.invoke(app, [*command, "--force"])
    assert skipped.exit_code == 75, skipped.output
    assert skipped.stderr.startswith("LockHeldError: ")
    samples = gateway.scrape()
    _assert_grouping(samples, "ingest-lmsys")
    [(_, skipped_at)] = samples["recsys_job_last_skipped_timestamp_seconds"]
    assert before_skip <= skipped_at <= time.time()
    assert "recsys_job_last_failure_timestamp_seconds" not in samples
    # every series of the successful run is still there, unchanged
    for name, rows in after_success.items():
        if name.startswith("recsys_"):
            assert samples[name] == rows, name
    assert METRICS["recsys_job_last_skipped_timestamp_seconds"].kind == "gauge"


class _TricklingGateway:
    """A real TCP server that accepts a push, then answers one byte every ``every`` seconds, so no
    single read ever times out. Counts the connections it accepted."""

    def __init__(self, every: float = 0.5, for_at_most: float = 60.0) -> None:
        self.every, self.for_at_most = every, for_at_most
        self.accepted = 0
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client: socket.socket) -> None:
        with client:
            client.recv(65536)
            started = time.monotonic()
            try:
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: ":
                    client.sendall(bytes([byte]))
                while not self.stop.wait(self.every) and time.monotonic() - started < self.for_at_most:
                    client.sendall(b"a")
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def trickling_gateway() -> Iterator[_TricklingGateway]:
    server = _TricklingGateway()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_trickling_gateway_cannot_hold_a_job_past_the_push_deadline(
        trickling_gateway: _TricklingGateway, tmp_path: Path, outcome: str) -> None:
    """A real gateway-like server accepts the push and answers a byte every 0.5 s: with the push
    deadline at 2 s (``RECSYS_PUSHGATEWAY_TIMEOUT_SECONDS``), the job (a real ``recsys`` process)
    ends within its own time plus the deadline, with one warning line and its own exit code."""
    url = f"sqlite:///{tmp_path / 'recsys.db'}" if outcome == "success" else "postgresql://recsys@127.0.0.1:1/none"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    command = [RECSYS, "--database-url", url, "snapshot", "--json"]

    def run(extra_env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                              env={**env, **extra_env})
        return done, time.monotonic() - started

    expected_code = 0 if outcome == "success" else 1
    baseline, alone = run({})  # the same job with no gateway: its own time
    assert baseline.returncode == expected_code, baseline.stderr
    pushed, elapsed = run({"RECSYS_PUSHGATEWAY_URL": trickling_gateway.url,
                           "RECSYS_PUSHGATEWAY_TIMEOUT_SECONDS": "2"})
    assert pushed.returncode == expected_code, pushed.stderr
    # one JSON document either way: the snapshot, or the error document of a failure (docs/json.md)
    document = json.loads(pushed.stdout)
    assert ("error" in document) == (outcome == "failure")
    assert elapsed < alone + 2 + 2, (elapsed, alone)
    warnings = [line for line in pushed.stderr.splitlines() if "could not push metrics" in line]
    assert len(warnings) == 1, pushed.stderr
    assert warnings[0].endswith(f"WARNING recsys.metrics: could not push metrics to the Pushgateway at "
                                f"{trickling_gateway.url}: no complete answer within 2 s")
    assert pushed.stderr.replace(warnings[0] + "\n", "") == baseline.stderr  # nothing else changed
    assert trickling_gateway.accepted == 1


def test_the_push_deadline_is_a_setting_with_a_ten_second_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from recommender_core.config import Settings

    assert Settings.load().pushgateway_timeout_seconds == 10.0
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_TIMEOUT_SECONDS", "2.5")
    assert Settings.load().pushgateway_timeout_seconds == 2.5


# --- every job, against the declarations --------------------------------------------------------------

def _families(gateway: Gateway) -> dict[tuple[str, str], Any]:
    """(command, family name) -> the family as the gateway exposes it, for every group of job "recsys"."""
    from prometheus_client.parser import text_string_to_metric_families

    host, port = gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    found: dict[tuple[str, str], Any] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("job") == "recsys":
                found[(sample.labels["command"], family.name)] = family
    return found


def _spend_logs_option(dsn: str) -> list[str]:
    """The DSN as `recsys ingest litellm` takes it: its --spend-logs-url option when it has one (the
    CronJob may pass it through the environment instead)."""
    from tests._deploy import resolve_command

    _, command, _ = resolve_command(["ingest", "litellm"])
    options = {opt for param in command.params for opt in param.opts}
    return ["--spend-logs-url", dsn] if "--spend-logs-url" in options else []


@pytest.mark.postgres
def test_every_job_pushes_only_declared_series_with_their_help_and_type(
        gateway: Gateway, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    """Each CronJob command, run for real on the sample mirror (ingest-litellm from a real LiteLLM_SpendLogs
    table), pushes to a real Pushgateway; everything it pushed is declared once in METRICS, with that HELP
    text, type and label set, and every declared pushed metric is pushed by some run."""
    from recommender_core.diagnostics.metrics import CRONJOB_COMMANDS
    from recommender_core.store.tables import TelemetryEvent

    from .conftest import REPO_ROOT

    litellm_dsn = str(request.getfixturevalue("spend_logs_dsn"))
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    monkeypatch.setenv("RECSYS_SPEND_LOGS_URL", litellm_dsn)
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    base = ["--database-url", postgres_url]
    assert runner.invoke(app, [*base, "db", "upgrade"]).exit_code == 0
    # telemetry of the last hour of the real clock, so the snapshot's 24 h window holds it
    now = datetime.now(UTC)
    telemetry = Store(postgres_url)
    try:
        with telemetry.session() as session:
            for i in range(12):
                session.add(TelemetryEvent(
                    event_id=f"t{i}", model_group="gpt-4.1", model="gpt-4.1-2025-04-14",
                    task="coding" if i % 2 else None, status="failure" if i == 0 else "success",
                    started_at=now - timedelta(minutes=i), latency_ms=float(100 + i)))
    finally:
        telemetry.dispose()
    # a failed run first (a case file that does not exist), so the failure time is pushed too
    failed = runner.invoke(app, [*base, "route-test", str(tmp_path / "missing.yaml")])
    assert failed.exit_code == 1, failed.output
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - {name: retrieval, task: retrieval, expect: {primary_in: [text-embedding-3-large,"
                     " text-embedding-3-small, huggingface/BAAI/bge-base-en-v1.5]}}\n", "utf-8")
    runs = {
        "ingest-lmsys": ["ingest", "lmsys", "--source", str(REPO_ROOT / "sample_mirror" / "lmsys")],
        "ingest-mteb": ["ingest", "mteb", "--source", str(REPO_ROOT / "sample_mirror" / "mteb")],
        "ingest-litellm": ["ingest", "litellm", *_spend_logs_option(litellm_dsn)],
        "telemetry-prune": ["telemetry", "prune"],
        "score": ["score"],
        "route-test": ["route-test", str(cases)],
        "snapshot": ["snapshot", "--json"],
    }
    assert set(runs) == set(CRONJOB_COMMANDS), "a new CronJob command needs a run here"
    for command, argv in runs.items():
        result = runner.invoke(app, [*base, *argv])
        assert result.exit_code == 0, f"{command}: {result.output}"

    families = _families(gateway)
    pushed: dict[str, set[str]] = {}
    for (command, name), family in families.items():
        if name in ("push_time_seconds", "push_failure_time_seconds"):
            continue  # the gateway's own, per group
        spec = METRICS.get(name)
        assert spec is not None, f"{command} pushed {name}, which METRICS does not declare"
        assert "push" in spec.exposed_by, f"{name} is declared as served by serve only"
        assert family.type == spec.kind, f"{name}: pushed as {family.type}, declared {spec.kind}"
        assert family.documentation == spec.help, f"{name}: HELP differs from its declaration"
        for sample in family.samples:
            assert sample.name == name, f"{sample.name}: a pushed series must be the metric itself"
            assert set(sample.labels) - {"job", "command", "instance"} == set(spec.labels), (name, sample.labels)
        pushed.setdefault(name, set()).add(command)
    assert {command for command, _ in families} == set(CRONJOB_COMMANDS), "every job pushed"
    # Pushed only by a run that exits 75 because another run holds its job's lock.
    skipped_only = {"recsys_job_last_skipped_timestamp_seconds"}
    declared = {name for name, spec in METRICS.items() if "push" in spec.exposed_by}
    assert declared - skipped_only <= set(pushed), f"declared but never pushed: {declared - set(pushed)}"
    # what an operator's dashboard reads, from the right jobs
    assert pushed["recsys_scored_models"] == {"score"}
    assert pushed["recsys_recommendation_latency_max_seconds"] == {"score", "route-test"}
    assert pushed["recsys_model_selected_calls"] == {"snapshot"}
    assert pushed["recsys_ingest_rows"] == {"ingest-lmsys", "ingest-mteb", "ingest-litellm"}
    samples = gateway.scrape()
    assert _by(samples["recsys_model_selected_calls"], "task", "model") == {
        ("coding", "gpt-4.1"): 6.0, ("untagged", "gpt-4.1"): 6.0}
    assert _by(samples["recsys_telemetry_calls"], "model") == {("gpt-4.1",): 12.0}
    assert _by(samples["recsys_telemetry_errors"], "model") == {("gpt-4.1",): 1.0}
    latency = _by(samples["recsys_telemetry_latency_seconds"], "model", "quantile")
    assert set(latency) == {("gpt-4.1", "0.5"), ("gpt-4.1", "0.95")}
    assert 0.1 <= latency[("gpt-4.1", "0.5")] <= latency[("gpt-4.1", "0.95")] <= 0.111
    route_test = {labels["command"]: value for labels, value in samples["recsys_job_last_failure_timestamp_seconds"]}
    assert set(route_test) == {"route-test"}


def test_a_rejected_push_shows_in_the_gateways_own_failure_time(gateway: Gateway) -> None:
    """RecsysPushFailing's premise, on the real gateway: a push it rejects sets the group's
    push_failure_time_seconds past its push_time_seconds, and the next accepted push clears that."""
    report, other = JobReport(command="score"), JobReport(command="snapshot")
    for each in (report, other):
        each.finish(success=True)
        assert push_job_report(each, gateway_url=gateway.url)
    host, port = gateway.url.removeprefix("http://").split(":")

    def post(body: str) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", "/metrics/job/recsys/command/score", body=body.encode(),
                         headers={"Content-Type": "text/plain; version=0.0.4"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    # a counter under a name the snapshot group holds as a gauge: inconsistent, so refused
    time.sleep(1.1)  # the gateway's times have a resolution of milliseconds; keep them apart
    assert post("# TYPE recsys_job_success counter\nrecsys_job_success 1\n") == 400
    samples = gateway.scrape()
    accepted = _by(samples["push_time_seconds"], "command")
    rejected = _by(samples["push_failure_time_seconds"], "command")
    assert rejected[("score",)] > accepted[("score",)] > 0
    assert rejected[("snapshot",)] == 0 < accepted[("snapshot",)]
    time.sleep(1.1)
    assert push_job_report(report, gateway_url=gateway.url)
    samples = gateway.scrape()
    assert _by(samples["push_time_seconds"], "command")[("score",)] > rejected[("score",)]
