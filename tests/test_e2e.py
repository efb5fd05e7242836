"""The whole pipeline on Postgres, in one test, the way the CronJobs run it: `db upgrade`, `ingest lmsys`
(replayed from its cassette), `ingest mteb` (the real MTEB slice), telemetry from real litellm calls
through TelemetryCallback, `score`, `snapshot --json` (schema-valid), `route-test` passing and then
failing after a policy change, `export litellm-router` loaded by a real litellm.Router, and every
job's metrics read back from a real Pushgateway.

Importing litellm is slow here, so this module holds only this test.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa
import vcr
import yaml
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.store import Store
from recommender_core.store.tables import TelemetryEvent

from ._pushgateway import Gateway
from .conftest import REPO_ROOT, real_data

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.pushgateway,
    pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning:pydantic"),
]

SCHEMA = json.loads((REPO_ROOT / "docs" / "snapshot.schema.json").read_text())
DEFAULT_POLICY = REPO_ROOT / "recommender_core" / "data" / "default_policy.yaml"
PROMPT = "E2E-PROMPT-TEXT-NOT-TO-BE-STORED"
ANSWER = "E2E-ANSWER-TEXT-NOT-TO-BE-STORED"
V2 = {"ENABLE_MODEL_RECOMMENDER_V2": "true"}


@pytest.fixture
def mteb_slice(tmp_path: Path) -> Path:
    archive_path = real_data("mteb", "results-slice-9-models.tar.gz")
    target = tmp_path / "mteb-slice"
    with tarfile.open(archive_path) as archive:
        archive.extractall(target, filter="data")
    return target


def _telemetry(url: str) -> int:
    """Real litellm calls (mock_response) through the callback, tagged with tasks; returns the events made."""
    from recommender_core import TelemetryCallback

    store = Store(url)
    callback = TelemetryCallback(store=store, flush_interval=0.05)
    saved = list(litellm.callbacks)
    litellm.callbacks = [callback]
    calls = 0
    try:
        for model, task in [("gpt-4o-mini", "chat"), ("gpt-4.1", "chat"), ("claude-haiku-4-5", "coding"),
                            ("gpt-4o-mini", "coding"), ("claude-sonnet-4-5", "chat")]:
            for _ in range(3):
                litellm.completion(model=model, messages=[{"role": "user", "content": PROMPT}],
                                   mock_response=ANSWER, metadata={"tags": [f"task:{task}"]})
                calls += 1
        with pytest.raises(litellm.InternalServerError):
            litellm.completion(model="gpt-4.1", messages=[{"role": "user", "content": PROMPT}],
                               mock_response=Exception("upstream down"), metadata={"tags": ["task:chat"]})
        calls += 1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stats = callback.stats()
            if stats.written + stats.queued + stats.dropped >= calls:
                break
            time.sleep(0.02)
        assert callback.flush(timeout=15)
        assert callback.stats().dropped == 0
    finally:
        litellm.callbacks = saved
        callback.close(timeout=5)
        store.dispose()
    return calls


def test_the_whole_pipeline_on_postgres(postgres_url: str, gateway: Gateway, mteb_slice: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)

    def recsys(*args: str, env: dict[str, str] | None = None, code: int = 0) -> Any:
        result = runner.invoke(app, ["--database-url", postgres_url, *args], env=env)
        assert result.exit_code == code, (args, result.output)
        return result

    recsys("db", "upgrade")
    # ignore_localhost: the Pushgateway push at the end of the job is real, not replayed
    with vcr.VCR(cassette_library_dir=str(REPO_ROOT / "cassettes"), record_mode="none", ignore_localhost=True,
                 match_on=("method", "scheme", "host", "port", "path", "query")).use_cassette(
            "lmsys_download.yaml") as tape:
        lmsys = json.loads(recsys("ingest", "lmsys", "--json").stdout)
        assert tape.all_played
    assert (lmsys["status"], lmsys["rows"], lmsys["rejected_rows"]) == ("success", 78, 0)
    mteb = json.loads(recsys("ingest", "mteb", "--source", str(mteb_slice), "--json").stdout)
    assert mteb["status"] == "success" and mteb["details"]["models"] == 9 and mteb["rows"] > 1000

    calls = _telemetry(postgres_url)
    store = Store(postgres_url)
    try:
        with store.session() as session:
            events = list(session.execute(sa.select(TelemetryEvent)).scalars())
    finally:
        store.dispose()
    assert len(events) == calls
    dump = json.dumps([e.model_dump(mode="json") for e in events])
    assert PROMPT not in dump and ANSWER not in dump  # telemetry stores no prompt or response text

    scored = json.loads(recsys("score", "--json").stdout)
    assert scored["tasks"]["chat"]["scored"] >= 5 and scored["tasks"]["retrieval"]["scored"] >= 2

    snapshot = json.loads(recsys("snapshot", "--json").stdout)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(snapshot)
    text = json.dumps(snapshot)
    assert "gpt-4o-mini" in text and "BAAI/bge-base-en-v1.5" in text

    decision = json.loads(recsys("route", "chat", "--json", env=V2).stdout)
    primary = decision["primary"]
    cases = tmp_path / "cases.yaml"
    cases.write_text(yaml.safe_dump({"cases": [
        {"name": "chat goes to today's best", "task": "chat", "expect": {"primary": primary}},
        {"name": "coding never goes to an embedding model", "task": "coding",
         "expect": {"excludes": ["text-embedding-3-large", "text-embedding-3-small"]}},
    ]}))
    passed = json.loads(recsys("route-test", str(cases), "--json", env=V2).stdout)
    assert passed["failed"] == 0

    # a policy change: the chat primary is no longer a candidate; after re-scoring, the case fails (exit 3)
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    del policy["candidates"][primary]
    for task in policy["tasks"].values():
        if primary in task.get("static_order", []):
            task["static_order"].remove(primary)
    changed = tmp_path / "policy.yaml"
    changed.write_text(yaml.safe_dump(policy))
    recsys("score", "--policy", str(changed))
    failed = recsys("route-test", str(cases), "--policy", str(changed), env=V2, code=3)
    assert failed.stderr == f"RouteTestFailed: 1 of 2 route-test cases failed in {cases}.\n"
    assert "FAIL  chat goes to today's best  [chat]" in failed.stdout and f"expected {primary!r}" in failed.stdout

    out = tmp_path / "router.yaml"
    recsys("export", "litellm-router", "--policy", str(changed), "-o", str(out), env=V2)
    config = yaml.safe_load(out.read_text())
    settings = config["router_settings"]
    new = json.loads(recsys("route", "chat", "--policy", str(changed), "--json", env=V2).stdout)
    assert new["primary"] != primary and settings["model_group_alias"]["task/chat"] == new["primary"]
    for deployment in config["model_list"]:
        deployment["litellm_params"].update(api_key="sk-test", model="openai/" + deployment["model_name"],
                                            mock_response=f"served by {deployment['model_name']}")
    router = litellm.Router(model_list=config["model_list"], num_retries=0, **settings)
    response = router.completion(model="task/chat", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == f"served by {new['primary']}"

    # every job's metrics, read back from the Pushgateway
    samples = gateway.scrape()
    success = {labels["command"]: value for labels, value in samples["recsys_job_success"]}
    assert success == {"ingest-lmsys": 1.0, "ingest-mteb": 1.0, "score": 1.0, "snapshot": 1.0, "route-test": 0.0}
    rows = {labels["source"]: value for labels, value in samples["recsys_ingest_rows"]}
    assert rows == {"lmsys": 78.0, "mteb": float(mteb["rows"])}
    failures = {labels["command"]: value for labels, value in samples["recsys_route_test_failures"]}
    assert failures == {"route-test": 1.0}
    assert {labels["command"] for labels, _ in samples["recsys_job_last_success_timestamp_seconds"]} == {
        "ingest-lmsys", "ingest-mteb", "score", "snapshot", "route-test"}
