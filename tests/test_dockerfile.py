"""The Dockerfile, checked without a Docker engine: hadolint, its structure, its build context, and
the image's real conditions reproduced on this machine (the wheel installed into a fresh venv, made
read-only, run by an unprivileged numeric user with only a scratch /tmp writable)."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from recommender_core.diagnostics.metrics import CRONJOB_COMMANDS
from tests._deploy import DOCKERFILE, Dockerfile, read_dockerfile, resolve_command, venv_tool
from tests.conftest import REPO_ROOT, require_binary

COMPILERS = ("gcc", "g++", "clang", "build-essential", "cc ", "make ", "python3-dev", "libpq-dev")
# Paths that must never reach the build context.
NEVER_IN_CONTEXT = (".venv/bin/python", ".git/config", "recsys.db", ".demo/recsys.db", "tests/conftest.py",
                    "k8s/base/kustomization.yaml", ".env")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return read_dockerfile()


def test_hadolint_passes_and_every_ignored_rule_is_explained() -> None:
    hadolint = venv_tool("hadolint")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text("utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("ignore=", 1)[1].split(",")
            explanation = lines[number - 1] if number else ""
            assert explanation.startswith("#") and "hadolint ignore" not in explanation, (
                f"Dockerfile line {number + 1}: explain the ignored rule on the line above")
            for rule in rules:
                assert rule.strip() in explanation, f"line {number}: the comment above names {rule.strip()}"
    assert not (REPO_ROOT / ".hadolint.yaml").exists(), "ignore rules inline, next to their explanation"


def test_one_target_per_job_each_running_a_real_command(dockerfile: Dockerfile) -> None:
    targets = dockerfile.job_targets
    assert set(targets) == {*CRONJOB_COMMANDS, "migrate", "serve"}
    assert resolve_command(targets["migrate"])[0] == ("db", "upgrade")
    assert resolve_command(targets["serve"])[0] == ("serve",)
    for target, cmd in targets.items():
        _, command, rest = resolve_command(cmd)
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for token in rest:
            if token.startswith("-"):
                assert token in known, f"target {target}: 'recsys {' '.join(cmd)}' has no option {token}"
        assert dockerfile.exec_form(target, "ENTRYPOINT") == ["recsys"]


def test_runtime_stage_is_slim_non_root_and_read_only_ready(dockerfile: Dockerfile) -> None:
    stages = dockerfile.stages
    assert set(stages) >= {"builder", "runtime"}
    runtime = stages["runtime"]
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*@sha256:[0-9a-f]{64}", runtime.base), runtime.base
    assert stages["builder"].base == runtime.base
    uid, gid = dockerfile.runtime_user
    assert uid > 0 and gid > 0
    env = dockerfile.env("runtime")
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    for key in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
                "HF_HOME"):
        assert env[key] == "/tmp" or env[key].startswith("/tmp/"), f"{key} must point into /tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    runs = " ".join(runtime.all("RUN")).lower()
    for word in COMPILERS:
        assert word not in runs, f"the runtime stage must not install {word.strip()}"
    assert "--constraint /tmp/constraints.txt" in runs
    for source in runtime.all("COPY"):
        assert source.startswith("--from=builder ") or source.split()[0] == "constraints.txt", source
    assert dockerfile.exec_form("runtime", "ENTRYPOINT") == ["recsys"]


def test_the_base_image_is_pinned_by_digest_with_how_to_bump_it(dockerfile: Dockerfile) -> None:
    base = dockerfile.args["PYTHON_IMAGE"]
    tag, _, digest = base.partition("@")
    assert tag == "python:3.11-slim-bookworm" and re.fullmatch(r"sha256:[0-9a-f]{64}", digest), base
    assert len(set(digest.removeprefix("sha256:"))) > 1, "a placeholder digest builds nothing"
    lines = dockerfile.lines
    at = next(i for i, line in enumerate(lines) if line.startswith("ARG PYTHON_IMAGE="))
    comment = "\n".join(lines[max(0, at - 10):at])
    assert "imagetools inspect python:3.11-slim-bookworm" in comment, "say above the pin how to bump it"
    assert all(stage.base == base for stage in dockerfile.stages.values() if not stage.base.startswith(
        tuple(dockerfile.stages))), "every stage starts from the pinned base"


def _runtime_closure() -> set[str]:
    """Every distribution `pip install recsys` pulls in (no extras), by canonical name."""
    from importlib.metadata import PackageNotFoundError, distribution

    seen: set[str] = set()
    todo = [Requirement(spec) for spec in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))
            ["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for spec in requires:
            child = Requirement(spec)
            for extra in requirement.extras:
                if child.marker is not None and child.marker.evaluate({"extra": extra}):
                    todo.append(Requirement(f"{child.name}{child.specifier}"))
            todo.append(child)
    return seen


def test_the_runtime_venv_holds_no_installer(dockerfile: Dockerfile) -> None:
    """pip, setuptools and wheel are build tools: scanners flag them, and nothing at run time needs them."""
    runs = " ".join(dockerfile.stages["runtime"].all("RUN"))
    assert "python -m venv --without-pip /opt/recsys" in runs, "ensurepip would bundle pip and setuptools"
    assert "python -m pip uninstall --yes pip setuptools wheel" in runs
    assert "ensurepip" not in runs
    closure = _runtime_closure()
    assert {"typer", "litellm", "psycopg-binary", "pydantic-core"} <= closure  # the walk reaches deep
    assert not {"pip", "setuptools", "wheel"} & closure, "a runtime dependency would bring an installer back"


def _copied_paths(dockerfile: Dockerfile) -> list[str]:
    paths = []
    for stage in dockerfile.stages.values():
        for arg in stage.all("COPY"):
            parts = arg.split()
            if parts[0].startswith("--from="):
                continue
            paths += [p.rstrip("/") for p in parts[:-1] if not p.startswith("--")]
    return paths


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a parent's match covers children."""
    candidates = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c, pattern.removeprefix("**/"))
               for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else(dockerfile: Dockerfile) -> None:
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text("utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    copied = _copied_paths(dockerfile)
    assert {"pyproject.toml", "constraints.txt", "cli", "recommender_core"} <= set(copied)
    for path in copied:
        assert (REPO_ROOT / path).exists(), path
        assert not _ignored(path, patterns), f".dockerignore excludes {path}, which the Dockerfile copies"
        assert not _ignored(f"{path}/__init__.py", patterns) or not (REPO_ROOT / path).is_dir()
    for path in NEVER_IN_CONTEXT:
        assert _ignored(path, patterns), f"{path} must not reach the build context"
    assert _ignored("recommender_core/__pycache__/x.pyc", patterns)


def test_constraints_pin_every_runtime_dependency_and_the_build_backend() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))
    pins = {canonicalize_name(line.split("==")[0]) for line in
            (REPO_ROOT / "constraints.txt").read_text("utf-8").splitlines() if "==" in line}
    for spec in project["project"]["dependencies"]:
        requirement = Requirement(spec)
        assert canonicalize_name(requirement.name) in pins, f"{requirement.name} is not pinned"
        for extra in requirement.extras:
            if requirement.name == "psycopg" and extra == "binary":
                assert "psycopg-binary" in pins
    assert "setuptools" in pins


# --- the image's conditions, without an engine ------------------------------------------------------

def _unprivileged(uid: int, gid: int) -> tuple[str, list[str]]:
    """(interpreter, command prefix) to run the installed image's commands without privileges.

    Not root: the current user, as is. Root: the image's numeric user, with a Python 3.11 that user
    can run and a test environment it can read; where none is reachable (e.g. both live under a
    private /root), root with every capability dropped, which the kernel treats as unprivileged
    (file modes apply, so a read-only install stays read-only).
    """
    base = getattr(sys, "_base_executable", sys.executable)
    if os.geteuid() != 0:
        return base, []
    setpriv = require_binary("setpriv", "it comes with util-linux")
    as_user = [setpriv, "--reuid", str(uid), "--regid", str(gid), "--clear-groups", "--"]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    probe = (f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r}); import typer, sqlalchemy;"
             f"assert sys.version_info[:2] == {sys.version_info[:2]!r}")
    for candidate in dict.fromkeys([base, shutil.which(f"python{here}"), f"/usr/bin/python{here}",
                                    f"/usr/local/bin/python{here}"]):
        if candidate and Path(candidate).exists():
            result = subprocess.run([*as_user, candidate, "-c", probe], capture_output=True, timeout=60,
                                    check=False, cwd="/")
            if result.returncode == 0:
                return candidate, as_user
    return base, [setpriv, "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
                  "--no-new-privs", "--"]


@pytest.fixture(scope="module")
def image_root() -> Iterator[Path]:
    """A world-traversable scratch root (pytest's tmp dirs are private to their owner)."""
    root = Path(tempfile.mkdtemp(prefix="recsys-image-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(root)


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*") if not p.is_symlink()}


def test_every_target_runs_from_a_read_only_install_as_an_unprivileged_user(
        dockerfile: Dockerfile, image_root: Path) -> None:
    uid, gid = dockerfile.runtime_user
    # 1. the builder stage: build the wheel from exactly what the Dockerfile COPYs
    src = image_root / "src"
    src.mkdir()
    for path in _copied_paths(dockerfile):
        origin = REPO_ROOT / path
        if origin.is_dir():
            shutil.copytree(origin, src / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, src / path)
    dist = image_root / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                            "--no-build-isolation", "--wheel-dir", str(dist), str(src)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    # a quiet build: setuptools warns (BuildBackendWarning, ...) about any folder it ships that
    # pyproject's packages do not list
    warned = re.findall(r"\w+Warning\b.*", build.stdout + build.stderr)
    assert not warned, warned
    (wheel,) = dist.glob("recsys-*.whl")
    # 2. the runtime stage: a fresh venv holding the wheel; its dependencies are this test
    #    environment's (no registry), reached through a .pth file like --system-site-packages
    venv = image_root / "opt" / "recsys"
    python, prefix = _unprivileged(uid, gid)
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--quiet", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig;"
                                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True, timeout=60).stdout.strip())
    (site / "_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", "utf-8")
    # 3. read-only: no write bit anywhere in the install (and, as root, run as the image's user)
    for path in [venv, *venv.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _snapshot(venv)
    scratch = image_root / "tmp"  # stands in for the image's /tmp (an emptyDir in Kubernetes)
    scratch.mkdir(mode=0o700)
    if "--reuid" in prefix:
        os.chown(scratch, uid, gid)
    env = {key: value.replace("/tmp", str(scratch), 1) if value.startswith("/tmp") else value
           for key, value in dockerfile.env("runtime").items() if key != "PATH"}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, str(venv / "bin" / "recsys"), *argv], env=env, cwd=scratch,
                              capture_output=True, text=True, timeout=120, check=False)

    # the code really comes from the wheel, not from the source tree
    origin = subprocess.run([*prefix, str(venv / "bin" / "python"), "-c",
                             "import recommender_core, recsys_cli; print(recommender_core.__file__);"
                             "print(recsys_cli.__file__)"], env=env, cwd=scratch, capture_output=True,
                            text=True, timeout=60, check=True)
    assert all(line.startswith(str(site)) for line in origin.stdout.split()), origin.stdout
    # cannot write where it runs from
    probe = subprocess.run([*prefix, str(venv / "bin" / "python"), "-c", f"open({str(site / 'x')!r}, 'w')"],
                           env=env, cwd=scratch, capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr

    for target, cmd in sorted(dockerfile.job_targets.items()):
        result = run(*cmd, "--help")
        assert result.returncode == 0, f"target {target}: recsys {' '.join(cmd)} --help\n{result.stderr}"
        assert result.stdout.startswith("Usage: recsys"), result.stdout
        assert "Traceback" not in result.stderr
    # the migrate and snapshot targets' real work, on a database in the scratch /tmp
    env["RECSYS_DATABASE_URL"] = f"sqlite:///{scratch / 'recsys.db'}"
    for cmd in (dockerfile.job_targets["migrate"], dockerfile.job_targets["snapshot"]):
        result = run(*cmd)
        assert result.returncode == 0, f"recsys {' '.join(cmd)}: {result.stderr}"
    assert '"schema_version": 1' in result.stdout
    assert _snapshot(venv) == before, "the install changed while it ran"
