"""The exported LiteLLM config under test: the demo's store, `recsys export litellm-router`, the
order each task must follow, and the file with credentials edited in the way an operator would."""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import yaml
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.policy import load_policy

from .conftest import REPO_ROOT


def closed_port_url() -> str:
    """An address on loopback where nothing listens: a call to it really fails (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def sample_store(database_url: str) -> None:
    """The demo's store: the sample mirrors ingested and scored with the default policy."""
    for argv in (["db", "upgrade"], ["ingest", "lmsys", "--source", str(REPO_ROOT / "sample_mirror" / "lmsys")],
                 ["ingest", "mteb", "--source", str(REPO_ROOT / "sample_mirror" / "mteb")], ["score"]):
        result = CliRunner().invoke(app, ["--database-url", database_url, *argv])
        assert result.exit_code == 0, (argv, result.output)


def export(database_url: str, path: Path, *, v2: bool) -> dict[str, Any]:
    """`recsys export litellm-router -o PATH` under the flag, read back."""
    env = {"ENABLE_MODEL_RECOMMENDER_V2": "true" if v2 else "false"}
    result = CliRunner().invoke(app, ["--database-url", database_url, "export", "litellm-router", "-o", str(path)],
                                env=env)
    assert result.exit_code == 0, result.output
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    assert config["x-recsys"]["v2_enabled"] is v2
    return config


def chains(database_url: str, config: dict[str, Any], *, v2: bool) -> dict[str, list[str]]:
    """Per task, the exported order (alias target, then its fallbacks), checked against
    `recsys route TASK --json` under the same flag and scores."""
    policy = load_policy(None)
    settings = config["router_settings"]
    fallbacks = {alias: chain for entry in settings["fallbacks"] for alias, chain in entry.items()}
    env = {"ENABLE_MODEL_RECOMMENDER_V2": "true" if v2 else "false"}
    found: dict[str, list[str]] = {}
    for task in sorted(policy.tasks):
        alias = f"task/{task}"
        found[task] = [settings["model_group_alias"][alias], *fallbacks.get(alias, [])]
        result = CliRunner().invoke(app, ["--database-url", database_url, "route", task, "--json"], env=env)
        if result.exit_code == 1 and task in config["x-recsys"]["static_tasks"]:  # nothing qualifies: static
            result = CliRunner().invoke(app, ["route", task, "--json"], env={"ENABLE_MODEL_RECOMMENDER_V2": "false"})
        assert result.exit_code == 0, result.output
        decision = json.loads(result.stdout)
        assert found[task] == [decision["primary"], *decision["fallbacks"]], task
    return found


def with_credentials(config: dict[str, Any], *, down: set[str]) -> dict[str, Any]:
    """The exported config with credentials edited in: the models in `down` point at a closed port,
    the others answer with mock_response (chat: "served by <name>"; embedding: [their index])."""
    policy = load_policy(None)
    closed = closed_port_url()
    edited = copy.deepcopy(config)
    for i, deployment in enumerate(edited["model_list"]):
        name = deployment["model_name"]
        params = deployment["litellm_params"]
        params.update(model=f"openai/{name}", api_key="sk-test")
        if name in down:
            params["api_base"] = closed
        elif policy.candidates[name].kind == "embedding":
            params["mock_response"] = [float(i)]
        else:
            params["mock_response"] = f"served by {name}"
    return edited


def served_model(config: dict[str, Any], *, content: str | None = None, embedding: list[float] | None = None) -> str:
    """The model that answered, from a chat answer's text or an embedding's vector."""
    if embedding is not None:
        return str(config["model_list"][int(embedding[0])]["model_name"])
    assert content is not None
    return content.removeprefix("served by ")
