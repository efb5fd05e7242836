"""Job metrics pushed to a REAL Pushgateway (Debian's prometheus-pushgateway), read back from its /metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated

import pytest
import typer
from recsys_cli._base import AppState, RecsysTyper, cronjob, state
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.clock import FixedClock
from recommender_core.diagnostics.metrics import LATENCY_BUCKETS, METRICS, JobReport, push_job_report
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
    assert _by(samples["recsys_model_selected_total"], "task", "model") == {
        ("coding", "gpt-4.1"): 15, ("untagged", "gpt-4.1"): 5, ("untagged", "gpt-5"): 1}
    assert "recsys_model_selected_created" not in samples
    assert _by(samples["recsys_recommendation_latency_seconds_count"], "task") == {("coding",): 1.0}
    buckets = _by(samples["recsys_recommendation_latency_seconds_bucket"], "task", "le")
    assert len(buckets) == len(LATENCY_BUCKETS) + 1 and buckets[("coding", "+Inf")] == 1.0
    # every metric pushed is named in the table (push_time_seconds etc. are the gateway's own)
    for name in samples:
        if name.startswith("recsys_"):
            base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            assert "push" in METRICS[base].exposed_by, name


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
    ok.gauges["lmsys_configs"] = 1  # free-form gauges get the prefix once, whichever way they are named
    ok.gauges["recsys_lmsys_categories"] = 26
    ok.finish(success=True)
    assert push_job_report(ok, gateway_url=gateway.url)
    samples = gateway.scrape()
    assert samples["recsys_job_success"][0][1] == 1.0
    assert samples["recsys_job_last_success_timestamp_seconds"][0][1] == pytest.approx(ok.finished)
    # the failure time is kept, so alerts can tell when the job last failed and last succeeded
    assert samples["recsys_job_last_failure_timestamp_seconds"][0][1] == pytest.approx(failed.finished)
    assert _by(samples["recsys_ingest_rows"], "source") == {("lmsys",): 7421.0}
    assert _by(samples["recsys_ingest_rejected_rows"], "source") == {("lmsys",): 0.0}
    assert samples["recsys_lmsys_configs"][0][1] == 1 and samples["recsys_lmsys_categories"][0][1] == 26


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
    assert _by(samples["recsys_recommendation_latency_seconds_count"], "task") == {("coding",): 1.0}
    assert _by(samples["recsys_recommendation_latency_seconds_bucket"], "task", "le")[("coding", "0.00025")] == 1


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
    assert _by(samples["recsys_recommendation_latency_seconds_count"], "task") == {("chat",): 1.0,
                                                                                   ("coding",): 2.0}
    assert samples["recsys_route_test_cases"][0][1] == 3.0
    assert samples["recsys_route_test_failures"][0][1] == 0.0


def test_score_job_pushes_one_latency_observation_per_routable_task(gateway: Gateway, store: Store,
                                                                      database_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 7: the recommendation latency histogram is fed by score as well as route-test."""
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
    assert _by(samples["recsys_recommendation_latency_seconds_count"], "task") == {
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
    assert pushed.stdout.startswith("{") == (outcome == "success")
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
