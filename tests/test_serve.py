"""Contract tests of `recsys serve`: a real server on a free loopback port, on both backends."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recommender_core import __version__
from recommender_core.clock import FixedClock
from recommender_core.diagnostics.metrics import METRICS
from recommender_core.diagnostics.server import DiagnosticsApp, make_server
from recommender_core.errors import ConfigError
from recommender_core.policy import load_policy
from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent

from .conftest import store_at
from .test_snapshot import NOW, fill, validate


@dataclass
class FakeMonotonic:
    """A monotonic clock (seconds) the test moves by hand, for cache expiry."""

    value: float = 1000.0

    def __call__(self) -> float:
        return self.value


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> dict[str, object]:
        document = json.loads(self.body)
        assert isinstance(document, dict)
        return document


@contextmanager
def running(app: DiagnosticsApp) -> Iterator[tuple[str, int]]:
    server = make_server(app, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get(address: tuple[str, int], path: str, method: str = "GET") -> Reply:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return Reply(response.status, response.getheader("Content-Type") or "", response.read())
    finally:
        conn.close()


def make_app(store: Store, monotonic: FakeMonotonic | None = None) -> DiagnosticsApp:
    """The app over ``store``, read at the fixed ``NOW`` the test data was written around."""
    return DiagnosticsApp(store=store_at(store, FixedClock(NOW)), policy=load_policy(), v2_enabled=True,
                          version=__version__, monotonic=monotonic or FakeMonotonic())


@pytest.fixture
def served(store: Store) -> Iterator[tuple[str, int]]:
    fill(store)
    with running(make_app(store)) as address:
        yield address


def test_snapshot_endpoint_serves_the_schema_valid_document(served: tuple[str, int]) -> None:
    reply = get(served, "/snapshot")
    assert reply.status == 200 and reply.content_type == "application/json"
    doc = reply.json()
    validate(doc)
    tasks = doc["tasks"]
    assert isinstance(tasks, dict) and [m["model"] for m in tasks["coding"]] == ["gpt-5", "gpt-4.1"]
    top = get(served, "/snapshot?task=coding&top=1").json()
    validate(top)
    assert [m["model"] for m in top["tasks"]["coding"]] == ["gpt-5"]  # type: ignore[index]
    assert get(served, "/snapshot", method="HEAD").body == b""


BAD_QUERIES = [
    ("top=0", "'top' must be a whole number from 1 to 10000, got '0'"),
    ("top=x", "'top' must be a whole number from 1 to 10000, got 'x'"),
    ("top=-1", "'top' must be a whole number from 1 to 10000, got '-1'"),
    ("task=", "'task' is empty"),
    ("task=nope", "Unknown task 'nope'. Tasks: chat,"),
    ("task=chat&task=coding", "'task' given 2 times"),
    ("bogus=1", "Unknown query parameter 'bogus'"),
    ("top", "Malformed query string 'top'"),
]


def test_bad_query_parameters_get_400_with_a_json_error(served: tuple[str, int]) -> None:
    for query, message in BAD_QUERIES:
        reply = get(served, f"/snapshot?{query}")
        assert reply.status == 400 and reply.content_type == "application/json", query
        body = reply.json()
        assert body["error"] == "Bad Request" and message in str(body["message"]), (query, body)


def test_unknown_paths_get_404_and_other_methods_are_refused(served: tuple[str, int]) -> None:
    reply = get(served, "/nope")
    assert reply.status == 404 and reply.content_type == "application/json"
    assert reply.json()["message"] == "No such path '/nope'. Paths: /healthz, /livez, /metrics, /snapshot."
    assert get(served, "/snapshot", method="POST").status == 501
    assert get(served, "/metrics?x=1").status == 400


def test_healthz_is_200_when_the_store_answers(served: tuple[str, int]) -> None:
    reply = get(served, "/healthz")
    assert (reply.status, reply.content_type, reply.json()) == (200, "application/json", {"status": "ok"})


def test_healthz_is_503_with_the_reason_when_the_store_is_down(tmp_path: Path) -> None:
    down = Store("postgresql://recsys:s3cret@127.0.0.1:1/recsys")
    try:
        with running(make_app(down)) as address:
            reply = get(address, "/healthz")
            assert reply.status == 503
            body = reply.json()
            assert body["status"] == "unavailable"
            assert "127.0.0.1:1" in str(body["reason"]) and "s3cret" not in reply.body.decode()
            # the other endpoints say so too: /snapshot 503, /metrics still scrapes with store_up 0
            assert get(address, "/snapshot").status == 503
            # ...but the process is alive: liveness stays 200, so Kubernetes does not restart the pod
            live = get(address, "/livez")
            assert (live.status, live.json()) == (200, {"status": "alive"})
            metrics = get(address, "/metrics")
            assert metrics.status == 200
            assert "recsys_store_up 0.0" in metrics.body.decode()
            # docs/metrics.md: never empty, even with the store down
            assert f'recsys_build_info{{version="{__version__}"}} 1.0' in metrics.body.decode()
    finally:
        down.dispose()
    # an SQLite store without the schema answers but cannot serve: 503 says to migrate
    empty = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with running(make_app(empty)) as address:
            reply = get(address, "/healthz")
            assert reply.status == 503 and "recsys db upgrade" in str(reply.json()["reason"])
    finally:
        empty.dispose()


def test_livez_checks_only_the_process(memory_store: Store) -> None:
    """/livez never waits for the store or for a snapshot being rebuilt (it holds no lock)."""
    app = make_app(memory_store)
    with app._build_lock:  # another thread is rebuilding a snapshot
        assert app.handle("GET", "/livez").status == 200
    memory_store.dispose()
    assert app.handle("GET", "/livez").status == 200
    assert app.handle("GET", "/livez?deep=1").status == 400
    assert app.handle("POST", "/livez").status == 405


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    result: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return result


def test_metrics_endpoint(served: tuple[str, int]) -> None:
    reply = get(served, "/metrics")
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    samples = _samples(text)
    assert samples["recsys_build_info"] == [({"version": __version__}, 1.0)]
    assert samples["recsys_store_up"] == [({}, 1.0)]
    assert dict((labels["source"], value) for labels, value in samples["recsys_source_age_seconds"]) == {
        "lmsys": 30 * 3600.0, "mteb": 2 * 3600.0}
    assert dict((labels["source"], value) for labels, value in samples["recsys_source_stale"]) == {
        "lmsys": 1.0, "mteb": 0.0}
    assert samples["recsys_scoring_run_age_seconds"] == [({}, 0.0)]
    # calls of the last 24 h only: the 25 h old gpt-5 call is out of the window
    selected = {(labels["task"], labels["model"]): value for labels, value in samples["recsys_model_selected_calls"]}
    assert selected == {("coding", "gpt-4.1"): 15, ("untagged", "gpt-4.1"): 5}
    # every metric served is declared in the module-level table, as served by `serve`, with its HELP
    for family in text_string_to_metric_families(text):
        assert "serve" in METRICS[family.name].exposed_by, family.name
        assert METRICS[family.name].kind == family.type, family.name
        assert METRICS[family.name].help == family.documentation, family.name


def test_cache_expiry(store: Store) -> None:
    fill(store)
    clock = FakeMonotonic()
    app = make_app(store, clock)
    with running(app) as address:
        first = get(address, "/snapshot").json()
        with store.session() as s:
            s.add(TelemetryEvent(event_id="new", model="gpt-5", status="success", started_at=NOW, latency_ms=5.0))
        assert get(address, "/snapshot").json() == first  # served from the cache
        clock.value += 4.9
        assert get(address, "/snapshot").json() == first
        clock.value += 0.2  # past the 5 s cache
        # the expired copy is served at once while a background thread rebuilds it
        assert get(address, "/snapshot").json() == first
        assert app.wait_for_refreshes(timeout=30)
        fresh = get(address, "/snapshot").json()
        models = {m["model"] for m in fresh["telemetry"]["models"]}  # type: ignore[index]
        assert "gpt-5" in models
        # serve times no route() decision: it exposes no latency of its own
        assert "latency" not in get(address, "/metrics").body.decode()


def test_port_in_use_is_a_clear_error(memory_store: Store) -> None:
    app = make_app(memory_store)
    first = make_server(app, host="127.0.0.1", port=0)
    try:
        port = first.server_address[1]
        with pytest.raises(ConfigError, match=f"Cannot listen on 127.0.0.1:{port}: .*Choose another host or port"):
            make_server(app, host="127.0.0.1", port=int(port))
    finally:
        first.server_close()


def test_recsys_serve_command_end_to_end(tmp_path: Path) -> None:
    """The installed entry point: bind port 0, answer /healthz and /snapshot, stop on SIGINT."""
    env = {**os.environ, "RECSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'recsys.db'}"}
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent))
    assert recsys is not None, "the recsys console script is installed next to the test interpreter"
    # As from a terminal, where Ctrl-C is not ignored: a suite started in the background by a
    # non-interactive shell (CI) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([recsys, "serve", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("recsys serve: http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert get(("127.0.0.1", port), "/healthz").status == 200
        doc = get(("127.0.0.1", port), "/snapshot").json()
        validate(doc)
        assert doc["next_steps"] == ["recsys ingest lmsys", "recsys ingest mteb", "recsys score"]
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    assert proc.returncode == 0


def test_an_expired_entry_is_served_while_another_thread_rebuilds(memory_store: Store) -> None:
    clock = FakeMonotonic()
    app = make_app(memory_store, clock)
    first = app.handle("GET", "/snapshot")
    assert first.status == 200
    clock.value += 10  # expired
    with app._build_lock:  # another thread is building: the refresh waits for it, the request does not
        assert app.handle("GET", "/snapshot") is first
        assert app.handle("GET", "/snapshot") is first  # one background refresh per key, not one per request
        assert len(app._refreshing) == 1
    assert app.wait_for_refreshes(timeout=30)
    rebuilt = app.handle("GET", "/snapshot")
    assert rebuilt.status == 200 and rebuilt is not first
    # a key never built has nothing stale to give: it waits for the builder instead
    assert app.handle("GET", "/snapshot?top=1").status == 200


def test_closing_the_server_waits_for_a_background_rebuild(memory_store: Store) -> None:
    """A rebuild's daemon thread still working while ``recsys serve`` exited raced the interpreter's
    exit handlers (CI saw ``RuntimeError: dictionary changed size during iteration`` from
    ``weakref.finalize`` on serve's stderr): closing the server now waits for the rebuild."""
    clock = FakeMonotonic()
    app = make_app(memory_store, clock)
    server = make_server(app, host="127.0.0.1", port=0)
    assert app.handle("GET", "/snapshot").status == 200
    clock.value += 10  # expired: the next request starts a background rebuild
    app._build_lock.acquire()  # the rebuild waits for this lock, released a second from now
    release = threading.Timer(1.0, app._build_lock.release)
    release.start()
    try:
        assert app.handle("GET", "/snapshot").status == 200
        assert app._refreshing  # the rebuild is waiting
        server.server_close()
        assert not app._refreshing  # the rebuild had ended when close returned
        assert not app._build_lock.locked()
    finally:
        release.join(timeout=5)
