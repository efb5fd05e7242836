"""The Grafana dashboard (k8s/grafana/recsys-dashboard.json): every panel query parses (each wrapped in
a rule file for `promtool check rules`) and names only metrics that recsys declares, that the
PrometheusRule records, that the Pushgateway exposes per group, or that the pinned litellm defines
(read from its own source, not from a list kept here)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender_core.diagnostics.metrics import METRICS
from tests._deploy import K8S, PUSHGATEWAY_SERIES, promql_metric_names, render, wrong_job_selectors
from tests.conftest import require_binary

DASHBOARD = K8S / "grafana" / "recsys-dashboard.json"
PROMTOOL_HOW = "install Debian's `prometheus` package (apt-get install prometheus); .ci/run does"
# Grafana's own variables, given a value promtool accepts; dashboard variables get a regex for all.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$task": ".*"}
# What the dashboard must show (the issue's list), by the series each panel reads.
REQUIRED_SERIES = {
    "freshness per source": "recsys_source_age_seconds",
    "job outcomes": "recsys_job_success",
    "job durations": "recsys_job_duration_seconds",
    "the utility table per task": "recsys_utility_score",
    "telemetry error rate per model": "recsys_telemetry_errors",
    "telemetry latency per model": "recsys_telemetry_latency_seconds",
    "the recommendation latency": "recsys_recommendation_latency_max_seconds",
    "LiteLLM successful fallbacks": "litellm_deployment_successful_fallbacks_total",
    "LiteLLM failed fallbacks": "litellm_deployment_failed_fallbacks_total",
    "LiteLLM cooled-down deployments": "litellm_deployment_cooled_down_total",
    "LiteLLM API latency": "litellm_llm_api_latency_metric_bucket",
}
_FACTORY = re.compile(r"self\._(counter|gauge|histogram)_factory\(\s*(?:name=)?\"(litellm_[a-z0-9_]+)\"")
_SAMPLES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}


def litellm_series() -> set[str]:
    """Every series name the pinned litellm's Prometheus integration exposes, read from its source file
    (litellm is not imported: that takes seconds). prometheus_client adds _total to a counter's name."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.submodule_search_locations, "litellm is a dependency"
    source = Path(next(iter(spec.submodule_search_locations))) / "integrations" / "prometheus.py"
    names = set()
    for kind, name in _FACTORY.findall(source.read_text("utf-8")):
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in _SAMPLES[kind])
    return names


def _targets(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for panel in panels:
        yield from _targets(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield f"{panel['title']} [{target['refId']}]", target["expr"]


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable, with Grafana variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    found = list(_targets(dashboard["panels"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert match, f"variable {variable['name']}: label_values(<selector>, <label>)"
            found.append((f"variable ${variable['name']}", match.group(1)))
    filled = []
    for where, expr in found:
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unknown Grafana variable in {expr}"
        filled.append((where, expr))
    return filled


def _recorded() -> set[str]:
    (rule,) = [d for d in render(K8S / "base") if d["kind"] == "PrometheusRule"]
    return {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}


def test_the_pinned_litellm_defines_the_proxy_series_the_issue_names() -> None:
    series = litellm_series()
    assert len(series) > 40, "the reader finds litellm's metric factories"
    for name in ("litellm_deployment_successful_fallbacks_total", "litellm_deployment_failed_fallbacks_total",
                 "litellm_deployment_cooled_down_total", "litellm_llm_api_latency_metric_bucket"):
        assert name in series, name
    assert "litellm_deployment_cooled_down" not in series, "a counter is exposed as <name>_total"


def test_every_panel_names_only_known_metrics_from_their_job() -> None:
    known = set(METRICS) | PUSHGATEWAY_SERIES | _recorded() | litellm_series()
    named: set[str] = set()
    queries = _queries()
    assert len(queries) >= 20
    for where, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{where}: a query that reads no metric"
        assert names <= known, f"{where}: {sorted(names - known)} is defined by neither recsys nor litellm"
        assert not wrong_job_selectors(expr), (where, wrong_job_selectors(expr))
        named |= names
    for what, series in REQUIRED_SERIES.items():
        assert series in named, f"the dashboard shows {what} ({series})"


def test_every_panel_query_parses(tmp_path: Path) -> None:
    promtool = require_binary("promtool", PROMTOOL_HOW)
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(_queries())]
    good = tmp_path / "dashboard.rules.yaml"
    good.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), "utf-8")
    result = subprocess.run([promtool, "check", "rules", str(good)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # the same check refuses a query with a syntax error, so the pass above means something
    bad = tmp_path / "broken.rules.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (model (recsys_telemetry_calls)"}]}]}), "utf-8")
    assert subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True, text=True, timeout=120,
                          check=False).returncode != 0


@pytest.mark.parametrize("expr", ["litellm_made_up_total", 'recsys_made_up{job="recsys"}'])
def test_a_name_nobody_defines_is_caught(expr: str) -> None:
    known = set(METRICS) | PUSHGATEWAY_SERIES | litellm_series()
    assert promql_metric_names(expr) - known


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    assert dashboard["uid"] and dashboard["title"] == "recsys" and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
