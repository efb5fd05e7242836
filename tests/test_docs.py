"""The repository stands alone: the README and docs/ hold every format a user needs, and they agree
with the code (the command table, every link, every option's help, the policy and route-test formats,
the library signatures, the metrics and alerts)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel
from recsys_cli.app import app
from typer.testing import CliRunner

from .conftest import REPO_ROOT

runner = CliRunner()
DOCS = REPO_ROOT / "docs"
README = REPO_ROOT / "README.md"
MARKDOWN = [README, *sorted(DOCS.glob("*.md"))]
ROOT_COMMAND = typer.main.get_command(app)


def _leaves(command: Any = ROOT_COMMAND, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    subcommands = getattr(command, "commands", None)
    if not isinstance(subcommands, dict):
        return {path: command}
    found: dict[tuple[str, ...], Any] = {}
    for name, sub in subcommands.items():
        found.update(_leaves(sub, (*path, name)))
    return found


COMMANDS = _leaves()


def _readme_commands() -> set[tuple[str, ...]]:
    """The command of each row of the README's command table (the words before any option or argument)."""
    section = README.read_text("utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    found = set()
    for cell in re.findall(r"^\| `recsys ([^`]*)` \|", section, flags=re.MULTILINE):
        words = []
        for word in cell.split():
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        found.add(tuple(words))
    return found


def test_the_readme_command_table_is_the_typer_app() -> None:
    assert _readme_commands() == set(COMMANDS)


def test_every_option_in_the_readme_table_exists() -> None:
    section = README.read_text("utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    for cell in re.findall(r"^\| `recsys ([^`]*)` \|", section, flags=re.MULTILINE):
        path = next(p for p in sorted(COMMANDS, key=len, reverse=True) if cell.split()[:len(p)] == list(p))
        known = {opt for param in COMMANDS[path].params for opt in param.opts}
        for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", cell):
            assert option in known, f"README: `recsys {cell}` names {option}, which {' '.join(path)} lacks"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=[" ".join(p) for p in sorted(COMMANDS)])
def test_every_option_and_argument_has_a_description(path: tuple[str, ...]) -> None:
    chain = [ROOT_COMMAND]
    for name in path:
        chain.append(chain[-1].commands[name])
    for command in chain:
        for param in command.params:
            assert getattr(param, "help", None), f"recsys {' '.join(path)}: {param.opts or param.name} has no help"
    assert chain[-1].help, f"recsys {' '.join(path)} has no description"
    # and --help shows each description
    shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for param in chain[-1].params:
        assert " ".join(str(param.help).split()[:3]) in " ".join(shown.stdout.split()), (path, param.name)


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", MARKDOWN, ids=[p.name for p in MARKDOWN])
def test_every_link_in_the_docs_resolves(doc: Path) -> None:
    for link in _links(doc.read_text("utf-8")):
        if re.match(r"https?://|mailto:", link):
            continue
        target, _, anchor = link.partition("#")
        file = (doc.parent / target).resolve() if target else doc
        assert file.exists(), f"{doc.name}: link {link} points at nothing"
        assert REPO_ROOT in file.parents or file == REPO_ROOT, f"{doc.name}: link {link} leaves the repository"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file.read_text("utf-8")), f"{doc.name}: no heading for #{anchor} in {target}"


def test_every_doc_is_reachable_from_the_readme() -> None:
    linked = {Path(link.partition("#")[0]).name for link in _links(README.read_text("utf-8"))}
    for doc in DOCS.glob("*.md"):
        assert doc.name in linked, f"README links no path to docs/{doc.name}"


# --- the policy format -------------------------------------------------------------------------

def _fields(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every field name of a pydantic model and of the models it nests."""
    seen = seen if seen is not None else set()
    names: set[str] = set()
    if model in seen:
        return names
    seen.add(model)
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        names.add(name)
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            for inner in [arg, *getattr(arg, "__args__", ())]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _fields(inner, seen)
    return names


def _yaml_blocks(doc: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", doc.read_text("utf-8"), flags=re.DOTALL)


def test_docs_policy_md_names_every_field_and_its_example_is_valid(tmp_path: Path) -> None:
    from recommender_core.policy import Policy, load_policy

    text = (DOCS / "policy.md").read_text("utf-8")
    for name in _fields(Policy):
        assert f"`{name}`" in text, f"docs/policy.md does not document the policy field {name}"
    (example,) = _yaml_blocks(DOCS / "policy.md")
    path = tmp_path / "policy.yaml"
    path.write_text(example)
    policy = load_policy(path)
    assert set(policy.tasks) == {"coding", "retrieval"}


def test_docs_route_tests_md_names_every_key_and_its_example_is_valid(tmp_path: Path) -> None:
    from recommender_core.routing.route_test import Expectations, RouteTestCase, load_cases

    text = (DOCS / "route-tests.md").read_text("utf-8")
    for name in set(RouteTestCase.model_fields) | set(Expectations.model_fields):
        assert f"`{name}" in text, f"docs/route-tests.md does not document the case key {name}"
    for i, block in enumerate(_yaml_blocks(DOCS / "route-tests.md")):
        path = tmp_path / f"cases-{i}.yaml"
        path.write_text(block)
        assert load_cases(path)


# --- the library API -----------------------------------------------------------------------------

# Seams for tests and embedding programs, documented in the docstrings, not the user guide.
SEAMS = {"self", "sink", "clock", "table_loader", "router", "router_kwargs", "kwargs"}


@pytest.mark.parametrize("name", ["TelemetryCallback", "route", "RecommenderRouter"])
def test_docs_api_md_documents_every_parameter(name: str) -> None:
    import recommender_core

    target = getattr(recommender_core, name)
    signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    text = (DOCS / "api.md").read_text("utf-8")
    section = text.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
    for parameter in signature.parameters:
        if parameter not in SEAMS:
            assert re.search(rf"\b{parameter}\b", section), f"docs/api.md: {name} does not document {parameter}"


# --- metrics and alerts ----------------------------------------------------------------------------

def test_docs_metrics_md_lists_every_metric_and_every_alert() -> None:
    from recommender_core.diagnostics.metrics import METRICS

    text = (DOCS / "metrics.md").read_text("utf-8")
    for metric in METRICS:
        assert f"`{metric}`" in text, f"docs/metrics.md does not list {metric}"
    rules = yaml.safe_load((REPO_ROOT / "k8s" / "base" / "prometheusrule.yaml").read_text("utf-8"))
    alerts = [r["alert"] for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        assert f"[`{alert}`](runbook.md#{alert.lower()})" in text, f"docs/metrics.md does not list {alert}"


# --- the shipped route-test file -----------------------------------------------------------------------

@pytest.mark.routing
@pytest.mark.parametrize("v2", ["true", "false"])
def test_the_shipped_route_tests_pass_on_the_demo_store(v2: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make demo` builds (the sample mirror, demo telemetry, a score), then the CronJob's cases."""
    from recommender_core.telemetry.demo import run_demo

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    base = ["--database-url", url]
    assert runner.invoke(app, [*base, "db", "upgrade"]).exit_code == 0
    for source in ("lmsys", "mteb"):
        result = runner.invoke(app, [*base, "ingest", source, "--source", str(REPO_ROOT / "sample_mirror" / source)])
        assert result.exit_code == 0, result.output
    run_demo(database_url=url)
    assert runner.invoke(app, [*base, "score"]).exit_code == 0
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", v2)
    cases = REPO_ROOT / "k8s" / "base" / "config" / "route-tests.yaml"
    result = runner.invoke(app, [*base, "route-test", str(cases)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"{len(yaml.safe_load(cases.read_text())['cases'])} passed, 0 failed"
