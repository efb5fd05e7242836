"""LiteLLM's own proxy server (`litellm --config`, from the pinned litellm; its server modules are
in the dev extra) started on the exported config, with the recsys callback loaded by module path,
and requests sent over HTTP. Nothing here imports litellm in the test process: the proxy runs in
its own process, offline (it reads no remote price map and contacts no provider).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from recommender_core.policy import load_policy
from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent
from recommender_core.telemetry.spend_logs import ingest_spend_logs

from ._exported_config import chains, export, sample_store, served_model, with_credentials
from .conftest import skip_or_fail

HERE = Path(__file__).resolve().parent
# The module path a proxy's config names to load recsys' TelemetryCallback (see the README).
RECSYS_CALLBACK = "recommender_core.telemetry.proxy.telemetry"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _litellm_cli() -> str:
    cli = Path(sys.executable).with_name("litellm")
    if not cli.exists():
        skip_or_fail("the 'litellm' command is missing; install recsys with its dev extra (pip install -e '.[dev]')")
    try:
        import fastapi  # noqa: F401 - the proxy's web framework, from the dev extra
        import uvicorn  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"LiteLLM's proxy server needs {exc.name}; install recsys with its dev extra")
    return str(cli)


class Proxy:
    """A running `litellm --config` process on a free loopback port."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.key = "sk-" + secrets.token_hex(32)  # the proxy refuses to start without a strong master key
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = log
        port = self.url.rsplit(":", 1)[1]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [_litellm_cli(), "--config", str(config), "--host", "127.0.0.1", "--port", port],
                cwd=config.parent, stdout=out, stderr=subprocess.STDOUT,
                env={**env, "LITELLM_MASTER_KEY": self.key})

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the proxy exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        pytest.fail(f"the proxy did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.url}{path}", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {self.key}"})
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod: the proxy exits and recsys' callback flushes at exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "proxy"
    folder.mkdir()
    # The test's stand-in for the proxy's own SpendLogs writer, loaded like any callback module.
    shutil.copy(HERE / "_spend_logs_writer.py", folder / "_spend_logs_writer.py")
    yield folder


@pytest.mark.postgres
def test_the_exported_config_served_by_litellms_proxy_over_http(
        store: Store, database_url: str, spend_logs_dsn: str, proxy_dir: Path) -> None:
    """The export (V2 on), with credentials edited in and the primary most tasks share down (a closed
    port), is LiteLLM's proxy config as is. Over HTTP every task is served by its own first fallback
    when its primary is down, else by its primary. The proxy loads TelemetryCallback from the module
    path the README gives, which records each attempt under its task; the SpendLogs rows written for
    the same calls, imported afterwards, add nothing.

    The events are read while the proxy runs: stopped with SIGTERM, uvicorn re-raises the signal once
    its graceful shutdown is done, so exit handlers never run and the callback's last batch (up to
    its flush interval) is lost; importing the SpendLogs recovers what the proxy logged of it (README)."""
    sample_store(database_url)
    config = export(database_url, proxy_dir / "exported.yaml", v2=True)
    orders = chains(database_url, config, v2=True)
    shared = max({chain[0] for chain in orders.values()},
                 key=lambda primary: sum(chain[0] == primary for chain in orders.values()))
    assert sum(chain[0] == shared for chain in orders.values()) > 1
    served = with_credentials(config, down={shared})
    served["router_settings"]["num_retries"] = 0  # the operator's choice: retrying a closed port only waits
    served["litellm_settings"] = {"callbacks": [RECSYS_CALLBACK, "_spend_logs_writer.writer"]}
    config_file = proxy_dir / "config.yaml"
    config_file.write_text(yaml.safe_dump(served, sort_keys=False))

    env = {"PATH": os.environ["PATH"], "HOME": str(proxy_dir), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "RECSYS_DATABASE_URL": database_url, "RECSYS_TEST_SPEND_LOGS_DSN": spend_logs_dsn}
    proxy = Proxy(config_file, env, proxy_dir / "proxy.log")
    policy = load_policy(None)
    try:
        proxy.wait_ready()
        for task, chain in orders.items():
            body: dict[str, Any] = {"model": f"task/{task}", "metadata": {"spend_logs_metadata": {"task": task}}}
            if policy.tasks[task].kind == "embedding":
                answer = proxy.post("/v1/embeddings", {**body, "input": ["hi"]})
                model = served_model(config, embedding=answer["data"][0]["embedding"])
            else:
                answer = proxy.post("/v1/chat/completions", {**body, "messages": [{"role": "user", "content": "hi"}]})
                model = served_model(config, content=answer["choices"][0]["message"]["content"])
            assert model == (chain[1] if chain[0] == shared else chain[0]), task
        failed = [task for task, chain in orders.items() if chain[0] == shared]
        events = _events_when(store, len(orders) + len(failed))
    finally:
        proxy.stop()
    assert len(events) == len(orders) + len(failed), "one event per attempt"
    assert {e.task for e in events} == set(orders)
    assert {e.task_source for e in events} == {"spend_logs_metadata"}
    assert sorted(e.task for e in events if e.status == "failure") == sorted(failed)
    result = ingest_spend_logs(store, dsn=spend_logs_dsn)
    assert result.read > 0 and result.inserted == 0, "the imported rows are the attempts called back"


def _events_when(store: Store, count: int, timeout: float = 30.0) -> list[TelemetryEvent]:
    """The stored events once `count` are there (the proxy runs its logging hooks in the background
    and the callback writes in batches), or whatever is there after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with store.session() as session:
            events = list(session.execute(sa.select(TelemetryEvent)).scalars())
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
