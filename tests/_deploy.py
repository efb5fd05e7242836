"""Helpers for the deployment tests: read the Dockerfile, render the overlays, resolve CLI commands.

Nothing here keeps a second list of jobs or commands: the Dockerfile, the rendered manifests,
the Typer app and recommender_core/diagnostics/metrics.py are the sources of truth.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml

from tests.conftest import REPO_ROOT, require_binary

DOCKERFILE = REPO_ROOT / "Dockerfile"
K8S = REPO_ROOT / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# Kinds kubernetes-validate has no schema for: checked by promtool and structural tests.
CUSTOM_KINDS = {"PrometheusRule", "ServiceMonitor"}


def venv_tool(name: str) -> str:
    """A tool pinned by the dev extra: next to this interpreter first, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return require_binary(name, "it comes with the dev extra: run `make dev`")


# --- Dockerfile -----------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]
    lines: list[str]

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        out = []
        stage: Stage | None = self.stages[name]
        while stage is not None:
            out.append(stage)
            stage = self.stages.get(stage.base)
        return out

    def env(self, name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for stage in reversed(self.chain(name)):
            for arg in stage.all("ENV"):
                for token in shlex.split(arg):
                    key, _, value = token.partition("=")
                    env[key] = value
        return env

    def last(self, name: str, keyword: str) -> str | None:
        for stage in self.chain(name):
            values = stage.all(keyword)
            if values:
                return values[-1]
        return None

    def exec_form(self, name: str, keyword: str) -> list[str]:
        value = self.last(name, keyword)
        assert value is not None, f"stage {name} has no {keyword}"
        parsed = json.loads(value)
        assert isinstance(parsed, list), f"{keyword} of {name} must use the exec (JSON) form"
        return [str(x) for x in parsed]

    def stage_args(self, name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for stage in reversed(self.chain(name)):
            for arg in stage.all("ARG"):
                key, _, default = arg.partition("=")
                out[key] = default
        return out

    @property
    def runtime_user(self) -> tuple[int, int]:
        """(uid, gid) of the runtime stage's USER, with its ARGs substituted."""
        user = self.last("runtime", "USER")
        assert user is not None, "the runtime stage sets USER"
        args = self.stage_args("runtime")
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user)
        uid, _, gid = resolved.partition(":")
        assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {user} must be numeric"
        return int(uid), int(gid or uid)

    @property
    def job_targets(self) -> dict[str, list[str]]:
        """Target name -> its CMD, for every stage built FROM the runtime stage."""
        return {name: self.exec_form(name, "CMD") for name, stage in self.stages.items()
                if stage.base == "runtime"}


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    raw = path.read_text("utf-8").splitlines()
    logical: list[str] = []
    buffer = ""
    for line in raw:
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append(buffer + stripped)
        buffer = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            current = stages[match.group(2)] = Stage(match.group(2), base)
        elif current is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            current.instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages, lines=raw)


# --- rendered manifests ----------------------------------------------------------------------------

def render(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run([venv_tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in {"CronJob", "Job", "Deployment"}]


def target_of(obj: dict[str, Any]) -> str:
    """The Dockerfile target (and metrics `command` label) a workload runs: its name after recsys-."""
    name = obj["metadata"]["name"]
    assert name.startswith("recsys-"), name
    return str(name.removeprefix("recsys-"))


# --- the CLI ---------------------------------------------------------------------------------------

def cli_root() -> Any:
    from recsys_cli.app import app

    return typer.main.get_command(app)


def resolve_command(argv: list[str]) -> tuple[tuple[str, ...], Any, list[str]]:
    """Walk ``recsys argv`` down the Typer app: (command path, leaf command, remaining args)."""
    command = cli_root()
    path: list[str] = []
    rest = list(argv)
    # Typer may vendor click, so recognise groups by shape rather than by class.
    while isinstance(getattr(command, "commands", None), dict):
        assert rest, f"'recsys {' '.join(argv)}' stops at a command group"
        name = rest.pop(0)
        assert name in command.commands, (
            f"'recsys {' '.join(argv)}': no command {name!r} under 'recsys {' '.join(path)}'; "
            f"available: {sorted(command.commands)}")
        command = command.commands[name]
        path.append(name)
    return tuple(path), command, rest


def parse_command(argv: list[str]) -> tuple[str, ...]:
    """Resolve ``argv`` and parse its options with the command's own parser (unknown or missing fail)."""
    path, command, rest = resolve_command(argv)
    try:
        with command.make_context(" ".join(("recsys", *path)), rest):
            pass
    except Exception as exc:  # click's UsageError family, whichever click Typer uses
        raise AssertionError(f"'recsys {' '.join(argv)}' does not parse: {exc}") from exc
    return path


# --- metrics ---------------------------------------------------------------------------------------

# The Pushgateway's own per-group series (push times), which the push alerts and the dashboard read.
PUSHGATEWAY_SERIES = {"push_time_seconds", "push_failure_time_seconds"}
# serve's /metrics is scraped through the ServiceMonitor: Prometheus' job label is the Service's name.
SERVE_JOB = "recsys-serve"


def wrong_job_selectors(expr: str) -> list[str]:
    """recsys and Pushgateway series in ``expr`` that do not select the job they live under: pushed
    series ``job="recsys"``, series only ``recsys serve`` exposes ``job="recsys-serve"``."""
    from recommender_core.diagnostics.metrics import METRICS, PUSH_JOB

    wrong = []
    for name, selector in re.findall(r"\b((?:recsys_|push_)[a-z0-9_]+)(\{[^}]*\})?", expr):
        job = SERVE_JOB if name in METRICS and "push" not in METRICS[name].exposed_by else PUSH_JOB
        if f'job="{job}"' not in selector:
            wrong.append(f'{name} must select job="{job}"')
    return wrong


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)                                  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)                                 # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end():].lstrip()
        if following.startswith("(") or match.group(0).lower() in _KEYWORDS:
            continue
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # a unit such as the "h" of 26h
        names.add(match.group(0))
    return names


# --- cron ------------------------------------------------------------------------------------------

def cron_start_and_period(schedule: str) -> tuple[int, int]:
    """(first start in minutes after midnight UTC, period in seconds) for hourly and daily schedules."""
    fields = schedule.split()
    assert len(fields) == 5 and fields[2:] == ["*", "*", "*"], (
        f"schedule {schedule!r}: the tests understand 'M * * * *' and 'M H * * *' only; extend them")
    minute = int(fields[0])
    if fields[1] == "*":
        return minute, 3600
    return int(fields[1]) * 60 + minute, 86400
