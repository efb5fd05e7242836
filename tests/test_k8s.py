"""The Kubernetes deployment (k8s/): every overlay renders, validates, and says what the issue and
DESIGN.md sections 9 and 14 promise; the alerting rules name real metrics and pass promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender_core.diagnostics.metrics import CRONJOB_COMMANDS, PUSH_JOB
from tests._deploy import (
    CUSTOM_KINDS,
    K8S,
    OVERLAYS,
    cron_start_and_period,
    parse_command,
    pod_spec,
    promql_metric_names,
    pushed_metric_names,
    read_dockerfile,
    render,
    target_of,
    venv_tool,
    workloads,
)
from tests.conftest import REPO_ROOT, require_binary

PROMTOOL_HOW = "install Debian's `prometheus` package (apt-get install prometheus); .ci/run does"
# What runs after what (the issue: score after both ingests, route-test after score).
RUNS_AFTER = {"score": ("ingest-lmsys", "ingest-mteb"), "route-test": ("score",)}
DAILY = {"ingest-lmsys", "ingest-mteb", "score", "route-test", "telemetry-prune"}
HOURLY = {"snapshot"}
SUSPENDED = {"ingest-litellm"}
EGRESS_PORTS = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 9091), ("TCP", 443)}
REQUIRED_ALERTS = {"RecsysJobFailed", "RecsysJobOverdue", "RecsysSourceStale", "RecsysMetricsAbsent"}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(K8S / "overlays" / request.param)


def _of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _rule(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (rule,) = _of_kind(docs, "PrometheusRule")
    return rule


def test_both_overlays_exist_and_the_base_renders() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)
    assert workloads(render(K8S / "base"))


def test_kubernetes_validate_strict_accepts_every_object(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    builtin = [d for d in rendered if d["kind"] not in CUSTOM_KINDS]
    assert {d["kind"] for d in rendered} - {d["kind"] for d in builtin} <= CUSTOM_KINDS
    good = tmp_path / "rendered.yaml"
    good.write_text(yaml.safe_dump_all(builtin), "utf-8")
    tool = venv_tool("kubernetes-validate")
    result = subprocess.run([tool, "--strict", "--quiet", str(good)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check rejects an unknown field, so a pass above means something.
    broken = [dict(d) for d in builtin]
    cronjob = next(d for d in broken if d["kind"] == "CronJob")
    cronjob["spec"] = {**cronjob["spec"], "concurrencyPolcy": "Forbid"}
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump_all(broken), "utf-8")
    assert subprocess.run([tool, "--strict", "--quiet", str(bad)], capture_output=True, text=True,
                          timeout=300, check=False).returncode != 0


def test_one_cronjob_per_metrics_command_each_its_own_image(rendered: list[dict[str, Any]]) -> None:
    targets = read_dockerfile().job_targets
    cronjobs = _of_kind(rendered, "CronJob")
    assert sorted(target_of(c) for c in cronjobs) == sorted(CRONJOB_COMMANDS)
    images = set()
    for obj in workloads(rendered):
        target = target_of(obj)
        assert target in targets, f"{obj['metadata']['name']}: no Dockerfile target {target!r}"
        (container,) = pod_spec(obj)["containers"]
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert name.endswith("/" + target) and tag and tag != "latest", image
        images.add(image)
        # the container runs its target's command (the Dockerfile CMD, plus any options)
        assert container["command"] == ["recsys"]
        assert container["args"][: len(targets[target])] == targets[target], (target, container["args"])
    assert len(images) == len(workloads(rendered)), "each workload has its own image"


def test_every_container_runs_a_real_recsys_command(rendered: list[dict[str, Any]]) -> None:
    for obj in workloads(rendered):
        for container in pod_spec(obj)["containers"] + pod_spec(obj).get("initContainers", []):
            assert container["command"] == ["recsys"], obj["metadata"]["name"]
            parse_command(container["args"])


def test_the_migration_job_runs_db_upgrade(rendered: list[dict[str, Any]]) -> None:
    (job,) = _of_kind(rendered, "Job")
    (container,) = pod_spec(job)["containers"]
    assert parse_command(container["args"]) == ("db", "upgrade")


def _check_pod(obj: dict[str, Any], docs: list[dict[str, Any]], uid: int) -> None:
    name = obj["metadata"]["name"]
    spec = pod_spec(obj)
    pod_sc = spec["securityContext"]
    assert spec["automountServiceAccountToken"] is False, name
    assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_maps = {d["metadata"]["name"]: d for d in _of_kind(docs, "ConfigMap")}
    for container in spec["containers"]:
        sc = container["securityContext"]
        run_as = sc.get("runAsUser", pod_sc.get("runAsUser"))
        assert isinstance(run_as, int) and run_as == uid, f"{name}: numeric user {uid} (the Dockerfile's)"
        assert sc.get("runAsNonRoot", pod_sc["runAsNonRoot"]) is True
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert not sc.get("privileged", False)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], f"{name}: /tmp must be an emptyDir"
        writable = [p for p, m in mounts.items() if not m.get("readOnly") and p != "/tmp"]
        assert not writable, f"{name}: only /tmp is writable, not {writable}"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
        env = {e["name"]: e for e in container["env"]}
        assert env["RECSYS_LOG_FORMAT"]["value"] == "json", name
        assert env["RECSYS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"], name
        for var in ("RECSYS_PUSHGATEWAY_URL", "RECSYS_PUSHGATEWAY_USERNAME", "RECSYS_PUSHGATEWAY_PASSWORD"):
            assert env[var]["valueFrom"]["secretKeyRef"]["name"], f"{name}: {var} from a Secret"
        for var, entry in env.items():
            if any(word in var for word in ("URL", "PASSWORD", "TOKEN", "USERNAME")):
                assert "value" not in entry, f"{name}: {var} must come from a Secret, not a literal"
        # the policy is a file of the mounted ConfigMap
        policy = Path(env["RECSYS_POLICY"]["value"])
        mount = mounts[str(policy.parent)]
        assert mount.get("readOnly") is True
        config_map = config_maps[volumes[mount["name"]]["configMap"]["name"]]
        assert policy.name in config_map["data"], name
        for arg in container["args"]:
            if arg.startswith(str(policy.parent) + "/"):
                assert Path(arg).name in config_map["data"], f"{name}: {arg} is not in the ConfigMap"


def test_cronjob_settings(rendered: list[dict[str, Any]]) -> None:
    uid, _ = read_dockerfile().runtime_user
    for cronjob in _of_kind(rendered, "CronJob"):
        name = cronjob["metadata"]["name"]
        spec = cronjob["spec"]
        job = spec["jobTemplate"]["spec"]
        _, period = cron_start_and_period(spec["schedule"])
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["timeZone"] == "Etc/UTC", name
        assert 0 < spec["startingDeadlineSeconds"] < period, name
        assert 1 <= spec["successfulJobsHistoryLimit"] <= 10 and 1 <= spec["failedJobsHistoryLimit"] <= 10, name
        assert spec.get("suspend", False) is (target_of(cronjob) in SUSPENDED), name
        assert job["backoffLimit"] in (1, 2), name
        assert 0 < job["activeDeadlineSeconds"] < period, name
        assert job["ttlSecondsAfterFinished"] > 0, name
        assert pod_spec(cronjob)["restartPolicy"] == "Never", name
        _check_pod(cronjob, rendered, uid)


def test_the_documented_migration_step_applies_all_the_job_needs(rendered: list[dict[str, Any]]) -> None:
    """docs/deploy.md applies `-l app.kubernetes.io/component in (...)` before the rest."""
    match = re.search(r"app\.kubernetes\.io/component in \(([^)]*)\)", (REPO_ROOT / "docs" / "deploy.md").read_text())
    assert match, "docs/deploy.md shows the migration step's selector"
    components = {c.strip() for c in match.group(1).split(",")}
    selected = {(d["kind"], d["metadata"]["name"]) for d in rendered
                if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") in components}
    (job,) = _of_kind(rendered, "Job")
    spec = pod_spec(job)
    needs = {("Job", job["metadata"]["name"]), ("ServiceAccount", spec["serviceAccountName"])}
    needs |= {("ConfigMap", v["configMap"]["name"]) for v in spec["volumes"] if "configMap" in v}
    needs |= {("NetworkPolicy", d["metadata"]["name"]) for d in _of_kind(rendered, "NetworkPolicy")}
    assert needs <= selected, needs - selected
    assert not {kind for kind, _ in selected} & {"CronJob", "Deployment"}


def test_migration_job_and_serve_settings(rendered: list[dict[str, Any]]) -> None:
    uid, _ = read_dockerfile().runtime_user
    (job,) = _of_kind(rendered, "Job")
    assert job["spec"]["backoffLimit"] in (1, 2)
    assert job["spec"]["activeDeadlineSeconds"] > 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert pod_spec(job)["restartPolicy"] == "Never"
    _check_pod(job, rendered, uid)

    (deployment,) = _of_kind(rendered, "Deployment")
    assert target_of(deployment) == "serve"
    _check_pod(deployment, rendered, uid)
    (container,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert int(args[args.index("--port") + 1]) == ports["http"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    (service,) = _of_kind(rendered, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_schedules_run_in_order(rendered: list[dict[str, Any]]) -> None:
    cronjobs = {target_of(c): c["spec"] for c in _of_kind(rendered, "CronJob")}
    timing = {}
    for target, spec in cronjobs.items():
        start, period = cron_start_and_period(spec["schedule"])
        latest_end = start * 60 + spec["startingDeadlineSeconds"] + spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        timing[target] = (start, period, latest_end)
    for target in DAILY:
        assert timing[target][1] == 86400, f"{target} runs nightly"
    for target in HOURLY:
        assert timing[target][1] == 3600, f"{target} runs hourly"
    for target, before in RUNS_AFTER.items():
        for earlier in before:
            start = timing[target][0] * 60
            assert timing[earlier][2] <= start < 86400, (
                f"{target} starts at {start // 60} min but {earlier} may run until {timing[earlier][2] // 60} min")


def test_network_policy_allows_only_dns_postgres_pushgateway_https(rendered: list[dict[str, Any]]) -> None:
    policies = _of_kind(rendered, "NetworkPolicy")
    egress = [p for p in policies if "Egress" in p["spec"]["policyTypes"]]
    assert egress, "an egress policy"
    allowed = set()
    for policy in egress:
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "recsys"
        for rule in policy["spec"]["egress"]:
            assert rule.get("ports"), f"{policy['metadata']['name']}: an egress rule without ports allows all"
            allowed |= {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert allowed == EGRESS_PORTS
    ingress_rules = [r for p in policies if "Ingress" in p["spec"]["policyTypes"] for r in p["spec"].get("ingress", [])]
    assert all(r.get("ports") for r in ingress_rules)


def test_namespace_enforces_restricted_pod_security(rendered: list[dict[str, Any]]) -> None:
    (namespace,) = _of_kind(rendered, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]


def test_config_map_policy_and_route_tests_are_valid(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    from recommender_core.policy import load_policy

    (config_map,) = _of_kind(rendered, "ConfigMap")
    path = tmp_path / "policy.yaml"
    path.write_text(config_map["data"]["policy.yaml"], "utf-8")
    policy = load_policy(path)
    cases = yaml.safe_load(config_map["data"]["route-tests.yaml"])["cases"]
    assert cases
    for case in cases:
        assert case["task"] in policy.tasks, case
        assert set(case["expect"]) <= {"primary", "primary_in", "fallbacks_start_with", "excludes"}
        for key, value in case["expect"].items():
            for model in [value] if isinstance(value, str) else value:
                assert model in policy.candidates, (case["name"], key, model)


def test_base_policy_is_the_packaged_default() -> None:
    base = (K8S / "base" / "config" / "policy.yaml").read_text("utf-8")
    packaged = (REPO_ROOT / "recommender_core" / "data" / "default_policy.yaml").read_text("utf-8")
    assert base == packaged, "k8s/base/config/policy.yaml drifted from the packaged default policy: copy it again"


# --- the PrometheusRule ------------------------------------------------------------------------------

def _rules(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for group in _rule(rendered)["spec"]["groups"] for r in group["rules"]]


def test_rules_name_only_metrics_the_code_pushes(rendered: list[dict[str, Any]]) -> None:
    pushed = pushed_metric_names()
    assert "recsys_job_success" in pushed  # the parser reads the module
    rules = _rules(rendered)
    recorded = {r["record"] for r in rules if "record" in r}
    assert {r["alert"] for r in rules if "alert" in r} >= REQUIRED_ALERTS
    for rule in rules:
        names = promql_metric_names(str(rule["expr"]))
        unknown = names - pushed - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)} is pushed by nothing"
        for selector in re.findall(r"(recsys_[a-z0-9_]+)(\{[^}]*\})?", str(rule["expr"])):
            assert f'job="{PUSH_JOB}"' in selector[1], f"{selector[0]} must select job=\"{PUSH_JOB}\""


def test_promql_metric_name_parser() -> None:
    assert promql_metric_names('max by (source) (recsys_a{job="x", b=~"y"}) > 26 * 3600') == {"recsys_a"}
    assert promql_metric_names("time() - max_over_time(m[7d]) > on (command) r:x unless on(c) n") == {
        "m", "r:x", "n"}


def test_stale_threshold_matches_the_setting(rendered: list[dict[str, Any]]) -> None:
    from recommender_core.config import Settings

    hours = Settings.model_fields["stale_after_hours"].default
    (stale,) = [r for r in _rules(rendered) if r.get("alert") == "RecsysSourceStale"]
    assert str(stale["expr"]).strip().endswith(f"> {int(hours)} * 3600")


def test_every_active_cronjob_has_an_expectation_that_catches_one_missed_run(
        rendered: list[dict[str, Any]]) -> None:
    expected = {}
    for rule in _rules(rendered):
        if rule.get("record") == "recsys:job_max_success_age_seconds":
            expr = str(rule["expr"]).strip()
            assert expr.startswith("vector(") and expr.endswith(")"), expr
            expected[rule["labels"]["command"]] = float(expr[len("vector("):-1])
    active = {target_of(c): c["spec"] for c in _of_kind(rendered, "CronJob") if not c["spec"].get("suspend")}
    assert set(expected) == set(active)
    for target, spec in active.items():
        _, period = cron_start_and_period(spec["schedule"])
        slack = spec["startingDeadlineSeconds"] + spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        assert period + slack <= expected[target] < 2 * period, (target, expected[target], period, slack)


def _rules_dir(rendered: list[dict[str, Any]], tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rule(rendered)["spec"]), "utf-8")
    shutil.copy(K8S / "base" / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    return tmp_path


def test_promtool_check_rules(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = require_binary("promtool", PROMTOOL_HOW)
    folder = _rules_dir(rendered, tmp_path)
    result = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=folder, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = require_binary("promtool", PROMTOOL_HOW)
    folder = _rules_dir(rendered, tmp_path)
    result = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=folder, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_unit_tests_firing_and_not_firing(rendered: list[dict[str, Any]]) -> None:
    tests = yaml.safe_load((K8S / "base" / "alerts.test.yaml").read_text("utf-8"))["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in {r["alert"] for r in _rules(rendered) if "alert" in r}:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no unit test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no unit test where it stays quiet"
