"""The demo's last words: ``recsys snapshot --summary``, the top pick per task and what decided it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.policy import load_policy
from recommender_core.routing.summary import COMPONENTS, deciding_component
from recommender_core.routing.table import ScoreRow

from .conftest import REPO_ROOT

runner = CliRunner()


def _row(model: str, **components: float) -> ScoreRow:
    values = {"quality": 0.5, "cost": 0.5, "latency": 0.5, "reliability": 0.5, **components}
    return ScoreRow(model=model, utility=0.5, cost_per_1k_tokens=1.0, latency_p95_ms=100.0, **values)


def test_the_deciding_component_is_the_largest_weighted_lead() -> None:
    weights = {"quality": 0.6, "cost": 0.2, "latency": 0.1, "reliability": 0.1}
    # quality leads by 0.05 (weighted 0.03), cost by 0.2 (weighted 0.04): cost decided it
    assert deciding_component(_row("a", quality=0.55, cost=0.7), _row("b"), weights) == "cost"
    assert deciding_component(_row("a", quality=0.6, cost=0.7), _row("b"), weights) == "quality"
    # a pick that leads nowhere (a tie broken by the total order) is put down to quality
    assert deciding_component(_row("a"), _row("b"), weights) == "quality"


@pytest.mark.routing
def test_the_summary_names_each_tasks_route_and_its_deciding_component_in_under_30_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    base = ["--database-url", f"sqlite:///{tmp_path / 'demo.db'}"]
    for source in ("lmsys", "mteb"):
        assert runner.invoke(app, [*base, "ingest", source, "--source",
                                   str(REPO_ROOT / "sample_mirror" / source)]).exit_code == 0
    assert runner.invoke(app, [*base, "score"]).exit_code == 0
    result = runner.invoke(app, [*base, "snapshot", "--summary"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) < 30 and all(len(line) <= 80 for line in lines), lines
    policy = load_policy()
    for task, spec in policy.tasks.items():
        decision = json.loads(runner.invoke(app, [*base, "route", task, "--json"]).stdout)
        first, second = decision["candidates"][:2]
        total = sum(getattr(spec.weights, c) for c in COMPONENTS)
        leads = {c: getattr(spec.weights, c) * (first[c] - second[c]) / total for c in COMPONENTS}
        component = max(COMPONENTS, key=lambda c: leads[c])
        at = next(i for i, line in enumerate(lines) if line.split()[:1] == [task])
        assert lines[at].split() == [task, decision["primary"]]
        assert lines[at + 1].strip().startswith(f"decided by {component}: {first[component]:.3f} vs "
                                                f"{second[component]:.3f} for ")
