"""A real Prometheus Pushgateway (Debian's prometheus-pushgateway) for the tests, on a free loopback port."""

from __future__ import annotations

import base64
import http.client
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

USER = "recsys"
PASSWORD = "recsys-push-secret"
# bcrypt hash of PASSWORD (cost 10), made once with libxcrypt through Python's crypt module:
# crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**10)). A fixed value keeps the
# test free of a bcrypt dependency; the gateway itself checks it (test_pushgateway shows wrong passwords are refused).
PASSWORD_BCRYPT = "$2b$10$S.49G38Cu58K2fBNau3l6uAH1PQqhMxrTJx2EOe4VdeRyt5Yt4Zqa"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Gateway:
    url: str
    auth: tuple[str, str] | None = None

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Every sample of job "recsys", by sample name."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {}
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        try:
            conn.request("GET", "/metrics", headers=headers)
            response = conn.getresponse()
            body = response.read().decode()
            assert response.status == 200, body
        finally:
            conn.close()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.labels.get("job") == "recsys":
                    samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples


def start_pushgateway(tmp_path: Path, *extra: str) -> Iterator[str]:
    """Run a gateway for as long as the generator is open; yields its URL."""
    from .conftest import require_binary  # conftest imports this module: import on use

    binary = require_binary("prometheus-pushgateway",
                            "install Debian's package: apt-get install prometheus-pushgateway")
    port = free_port()
    log = (tmp_path / f"pushgateway-{port}.log").open("w")
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", *extra],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"pushgateway did not start: {(tmp_path / log.name).read_text()}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
