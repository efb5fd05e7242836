"""The Kubernetes deployment (k8s/): every overlay renders, validates, and says what docs/deploy.md
promises; the alerting rules name declared metrics, link their runbook sections and
pass promtool; the custom resources kubernetes-validate has no schema for (PrometheusRule,
ServiceMonitor) and the fields it cannot judge (podFailurePolicy, probes, PDB, Argo CD waves) are
checked structurally here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender_core.diagnostics.metrics import CRONJOB_COMMANDS, METRICS
from recommender_core.errors import EXIT_LOCKED, EXIT_ROUTE_TEST_FAILED, EXIT_RUNTIME, EXIT_USAGE
from tests._deploy import (
    CUSTOM_KINDS,
    K8S,
    OVERLAYS,
    PUSHGATEWAY_SERIES,
    SERVE_JOB,
    cron_start_and_period,
    parse_command,
    pod_spec,
    promql_metric_names,
    read_dockerfile,
    render,
    target_of,
    venv_tool,
    workloads,
    wrong_job_selectors,
)
from tests.conftest import REPO_ROOT, require_binary

PROMTOOL_HOW = "install Debian's `prometheus` package (apt-get install prometheus); .ci/run does"
# What runs after what (the issue: score after both ingests, route-test after score).
RUNS_AFTER = {"score": ("ingest-lmsys", "ingest-mteb"), "route-test": ("score",)}
DAILY = {"ingest-lmsys", "ingest-mteb", "score", "route-test", "telemetry-prune"}
HOURLY = {"snapshot"}
SUSPENDED = {"ingest-litellm"}
# The alerts docs/deploy.md and docs/runbook.md name; more may come, none may go.
REQUIRED_ALERTS = {"RecsysJobFailed", "RecsysJobOverdue", "RecsysJobSkipped", "RecsysScoringRunStale",
                   "RecsysNoScoredModels", "RecsysSourceStale", "RecsysMetricsAbsent", "RecsysPushFailing",
                   "RecsysPushgatewayAbsent", "RecsysServeStoreDown"}
SEVERITIES = {"page", "ticket"}
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
ARGO_WAVE = "argocd.argoproj.io/sync-wave"


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
        name, _, digest = image.partition("@")
        assert name.endswith("/" + target), image
        assert DIGEST.fullmatch(digest), f"{image}: pinned by digest (images: in the overlay), not by tag"
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
        _check_pod_failure_policy(name, job)
        _check_pod(cronjob, rendered, uid)


def _failure_action(policy: dict[str, Any], *, exit_code: int | None = None, condition: str | None = None) -> str:
    """What a Job does with a failed pod, as Kubernetes evaluates podFailurePolicy: the first rule that
    matches decides; no match counts towards backoffLimit (a retry while the limit allows)."""
    for rule in policy["rules"]:
        on_exit = rule.get("onExitCodes")
        if on_exit is not None and exit_code is not None:
            inside = exit_code in on_exit["values"]
            if inside == (on_exit["operator"] == "In"):
                return str(rule["action"])
        for pod_condition in rule.get("onPodConditions", []):
            if pod_condition["type"] == condition and pod_condition.get("status", "True") == "True":
                return str(rule["action"])
    return "Count"


def _check_pod_failure_policy(name: str, job_spec: dict[str, Any]) -> None:
    """Exits 1 and 75 may retry; 2 (usage) and 3 (route-test expectations) fail the Job at once."""
    policy = job_spec["podFailurePolicy"]
    containers = {c["name"] for c in job_spec["template"]["spec"]["containers"]}
    assert job_spec["template"]["spec"]["restartPolicy"] == "Never", f"{name}: podFailurePolicy needs it"
    for rule in policy["rules"]:
        assert rule["action"] in {"FailJob", "Ignore", "Count", "FailIndex"}, (name, rule)
        if "onExitCodes" in rule:
            assert rule["onExitCodes"].get("containerName") in containers, f"{name}: {rule}"
            assert 0 not in rule["onExitCodes"]["values"], f"{name}: 0 is success, never a failure rule"
    for code in (EXIT_USAGE, EXIT_ROUTE_TEST_FAILED):
        assert _failure_action(policy, exit_code=code) == "FailJob", f"{name}: exit {code} must fail at once"
    for code in (EXIT_RUNTIME, EXIT_LOCKED):
        assert _failure_action(policy, exit_code=code) == "Count", f"{name}: exit {code} may retry"
    assert _failure_action(policy, condition="DisruptionTarget") == "Ignore", f"{name}: an eviction is free"
    assert job_spec["backoffLimit"] >= 1, f"{name}: a retry needs a backoffLimit"


def test_failure_action_reads_pod_failure_policy_as_kubernetes_does() -> None:
    policy = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]}
    assert _failure_action(policy, exit_code=7) == "Ignore"
    assert _failure_action(policy, exit_code=2) == "FailJob"
    assert _failure_action(policy, exit_code=1) == "Count"


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
    _check_pod_failure_policy(job["metadata"]["name"], job["spec"])
    _check_pod(job, rendered, uid)

    (deployment,) = _of_kind(rendered, "Deployment")
    assert target_of(deployment) == "serve"
    _check_pod(deployment, rendered, uid)
    (container,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert int(args[args.index("--port") + 1]) == ports["http"]
    # readiness checks the store, liveness only the process (a database outage must not restart pods)
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
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


def _pods(rendered: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Workload name -> its pods' labels."""
    out = {}
    for obj in workloads(rendered):
        spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
        template = spec["template"]
        out[target_of(obj)] = template["metadata"]["labels"]
    return out


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
        if expression["operator"] == "Exists" and value is None:
            return False
    return True


def _egress(rendered: list[dict[str, Any]], pod_labels: dict[str, str]) -> set[tuple[str, int, str]]:
    """(protocol, port, peer) this pod may reach; peer is `ns:<namespace>` or `cidr:<block>`."""
    allowed = set()
    for policy in _of_kind(rendered, "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec["policyTypes"] or not _selects(spec["podSelector"], pod_labels):
            continue
        for rule in spec["egress"]:
            assert rule.get("ports"), f"{policy['metadata']['name']}: an egress rule without ports allows all"
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule without peers allows all"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    name = "cidr:" + peer["ipBlock"]["cidr"]
                    if peer["ipBlock"]["cidr"] == "0.0.0.0/0":
                        assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
                            peer["ipBlock"].get("except", [])), "the internet, not the cluster's private ranges"
                else:
                    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    name = "ns:" + namespace
                allowed |= {(port["protocol"], port["port"], name) for port in rule["ports"]}
    return allowed


def test_network_policies_allow_each_job_only_the_peers_it_uses(rendered: list[dict[str, Any]]) -> None:
    pods = _pods(rendered)
    dns = {("UDP", 53, "ns:kube-system"), ("TCP", 53, "ns:kube-system")}
    database = {("TCP", 5432, "ns:postgres")}
    pushgateway = {("TCP", 9091, "ns:monitoring")}
    internet = {("TCP", 443, "cidr:0.0.0.0/0")}
    expected = {
        "migrate": dns | database,
        "serve": dns | database,
        "ingest-lmsys": dns | database | pushgateway | internet,
        "ingest-mteb": dns | database | pushgateway | internet,
        "ingest-litellm": dns | database | pushgateway | {("TCP", 5432, "ns:litellm")},
        "score": dns | database | pushgateway,
        "snapshot": dns | database | pushgateway,
        "route-test": dns | database | pushgateway,
        "telemetry-prune": dns | database | pushgateway,
    }
    assert set(pods) == set(expected)
    for target, labels in pods.items():
        assert _egress(rendered, labels) == expected[target], target
    # ingress: nothing but serve's HTTP port, from Prometheus' namespace only
    for policy in _of_kind(rendered, "NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "recsys"
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("ports") and rule.get("from"), policy["metadata"]["name"]
            assert _selects(policy["spec"]["podSelector"], pods["serve"])
            assert not any(_selects(policy["spec"]["podSelector"], labels)
                           for target, labels in pods.items() if target != "serve")
            assert [p["namespaceSelector"]["matchLabels"] for p in rule["from"]] == [
                {"kubernetes.io/metadata.name": "monitoring"}]
    denied = [p for p in _of_kind(rendered, "NetworkPolicy")
              if "Ingress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress")]
    assert denied and all(_selects(denied[0]["spec"]["podSelector"], labels) for labels in pods.values())


def test_network_policy_selector_reader() -> None:
    selector = {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "c", "operator": "In", "values": ["x"]}]}
    assert _selects(selector, {"a": "1", "c": "x"})
    assert not _selects(selector, {"a": "1", "c": "y"}) and not _selects(selector, {"c": "x"})


def test_the_documented_network_values_match_the_base() -> None:
    """docs/deploy.md's table of per-cluster values names every namespace and port the base uses."""
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text("utf-8")
    for value in ("kube-system", "postgres", "monitoring", "litellm", "5432", "9091", "443", "8080"):
        assert f"`{value}`" in docs, f"docs/deploy.md must list the network value {value}"


def _by_kind_name(rendered: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in rendered}


def test_service_monitor_scrapes_serve_metrics(rendered: list[dict[str, Any]]) -> None:
    (monitor,) = _of_kind(rendered, "ServiceMonitor")
    (service,) = _of_kind(rendered, "Service")
    (deployment,) = _of_kind(rendered, "Deployment")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == service["metadata"]["name"] == SERVE_JOB, (
        "the job label Prometheus gives serve's series is the Service name; the alerts select it")
    assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert not {k for k in monitor["spec"] if k not in {"selector", "endpoints", "jobLabel", "namespaceSelector"}}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"]) and re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])
    assert int(endpoint["scrapeTimeout"][:-1]) < int(endpoint["interval"][:-1])
    (container,) = pod_spec(deployment)["containers"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]


def test_prometheus_selects_the_rule_and_the_monitor_by_the_overlays_labels(
        rendered: list[dict[str, Any]]) -> None:
    base = _by_kind_name(render(K8S / "base"))
    for kind, name in (("PrometheusRule", "recsys"), ("ServiceMonitor", SERVE_JOB)):
        labels = _by_kind_name(rendered)[(kind, name)]["metadata"]["labels"]
        added = set(labels.items()) - set(base[(kind, name)]["metadata"]["labels"].items())
        assert added, f"{kind}/{name}: the overlay sets the label its Prometheus' selector matches"
        assert "release" in dict(added), f"{kind}/{name}: docs/deploy.md documents the `release` label"


def test_prod_spreads_serve_and_budgets_its_disruptions() -> None:
    rendered = render(K8S / "overlays" / "prod")
    (deployment,) = _of_kind(rendered, "Deployment")
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (budget,) = _of_kind(rendered, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert _selects(budget["spec"]["selector"], pod_labels)
    available = budget["spec"].get("minAvailable", replicas - budget["spec"].get("maxUnavailable", 0))
    assert 1 <= available < replicas, "a drain may evict one pod, and one always stays"
    spread = pod_spec(deployment)["topologySpreadConstraints"]
    keys = {c["topologyKey"] for c in spread}
    assert "kubernetes.io/hostname" in keys
    for constraint in spread:
        assert constraint["maxSkew"] == 1 and _selects(constraint["labelSelector"], pod_labels)
        # ScheduleAnyway: a one-node cluster still runs both replicas
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def _wave(doc: dict[str, Any]) -> int:
    return int(doc["metadata"].get("annotations", {}).get(ARGO_WAVE, "0"))


def test_argo_cd_runs_the_migration_after_all_it_needs_and_before_the_workloads(
        rendered: list[dict[str, Any]]) -> None:
    """A PreSync hook would run before its ServiceAccount and ConfigMap exist on a first sync."""
    (job,) = _of_kind(rendered, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync", "a Sync hook, ordered by wave"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    spec = pod_spec(job)
    by_name = _by_kind_name(rendered)
    needs = [by_name[("ServiceAccount", spec["serviceAccountName"])]]
    needs += [by_name[("ConfigMap", v["configMap"]["name"])] for v in spec["volumes"] if "configMap" in v]
    needs += _of_kind(rendered, "NetworkPolicy") + _of_kind(rendered, "Namespace")
    for needed in needs:
        assert _wave(needed) < _wave(job), f"{needed['kind']}/{needed['metadata']['name']} must come first"
    for workload in _of_kind(rendered, "CronJob") + _of_kind(rendered, "Deployment"):
        assert _wave(workload) > _wave(job), f"{workload['metadata']['name']} must roll after the migration"
    (namespace,) = _of_kind(rendered, "Namespace")
    assert _wave(namespace) == min(_wave(d) for d in rendered)


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


def test_rules_name_only_declared_metrics_from_their_job(rendered: list[dict[str, Any]]) -> None:
    rules = _rules(rendered)
    recorded = {r["record"] for r in rules if "record" in r}
    assert {r["alert"] for r in rules if "alert" in r} >= REQUIRED_ALERTS
    for rule in rules:
        names = promql_metric_names(str(rule["expr"]))
        unknown = names - set(METRICS) - recorded - PUSHGATEWAY_SERIES
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: {sorted(unknown)} is declared nowhere"
        assert not wrong_job_selectors(str(rule["expr"])), (rule.get("alert") or rule.get("record"),
                                                            wrong_job_selectors(str(rule["expr"])))


def test_every_alert_has_a_severity_and_its_runbook_section(rendered: list[dict[str, Any]]) -> None:
    runbook = RUNBOOK.read_text("utf-8")
    headings = {line[3:].strip() for line in runbook.splitlines() if line.startswith("## ")}
    alerts = [r for r in _rules(rendered) if "alert" in r]
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        url = alert["annotations"]["runbook_url"]
        assert url.endswith(f"docs/runbook.md#{name.lower()}"), f"{name}: {url}"
        assert name in headings, f"docs/runbook.md has no section '## {name}'"
        section = runbook.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Means**", "**Confirm**", "**Do**"):
            assert part in section, f"docs/runbook.md, {name}: no {part} paragraph"
        assert "```" in section, f"docs/runbook.md, {name}: show the exact command or PromQL to confirm it"
    assert {a["alert"] for a in alerts} == headings - {"Severities"}, "one runbook section per alert, no more"
    # what the issue asks to page on
    severity = {a["alert"]: a["labels"]["severity"] for a in alerts}
    assert severity["RecsysJobOverdue"] == severity["RecsysScoringRunStale"] == "page"
    assert severity["RecsysJobFailed"] == "ticket"
    # a failed first try that the Job's retry fixes must not page: `for:` outlasts every retry
    (failed,) = [a for a in alerts if a["alert"] == "RecsysJobFailed"]
    longest = max(c["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] for c in _of_kind(rendered, "CronJob"))
    assert _seconds(failed["for"]) >= longest


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


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
