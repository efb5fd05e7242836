"""The public surface of recommender_core, and the import-cost rules of the project."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import recommender_core

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "recommender_core"
HEAVY = ("litellm", "sqlalchemy", "httpx")
# The modules that import litellm, directly or (telemetry.proxy) through the callback.
LITELLM_MODULES = (".telemetry.callback", ".telemetry.proxy", ".telemetry.demo", ".routing.adapter",
                   ".routing.litellm_strategy")


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(CORE)], prefix="recommender_core."):
        if ".migrations" in info.name:
            continue
        names.append(info.name)
    return names


def test_every_public_name_resolves() -> None:
    for name in recommender_core.__all__:
        assert getattr(recommender_core, name) is not None


@pytest.mark.parametrize("module_name", _modules())
def test_every_module_declares_all(module_name: str) -> None:
    if module_name.endswith(LITELLM_MODULES):
        pytest.importorskip("litellm")
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_importing_recommender_core_is_light() -> None:
    loaded = _imported_after("import recommender_core; recommender_core.RecsysError")
    assert not loaded & {*HEAVY, "typer", "rich"}, loaded & {*HEAVY, "typer", "rich"}


def test_cli_help_imports_no_heavy_library() -> None:
    code = ("import sys\nsys.argv = ['recsys', '--help']\nfrom recsys_cli.app import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass")
    loaded = _imported_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_recommender_core_never_imports_cli_typer_or_rich() -> None:
    forbidden = {"typer", "rich", "click", "recsys_cli", "cli"}
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path}: imports {name}"


def test_litellm_is_imported_only_by_the_code_that_talks_to_it() -> None:
    """Only the callback, the two router adapters and the demo import litellm, each first inside
    ``with local_cost_map():`` (else importing litellm fetches the price map from the network)."""
    allowed = {f"recommender_core{m.replace('.', '/')}.py" for m in LITELLM_MODULES} - {
        "recommender_core/telemetry/proxy.py"}
    importers = set()
    for path in [*CORE.rglob("*.py"), *(ROOT / "cli").rglob("*.py")]:
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "litellm" for n in names):
                rel = "/".join(path.relative_to(ROOT).parts)
                assert rel in allowed, f"{rel} imports litellm"
                importers.add(rel)
                before = "\n".join(text.splitlines()[: node.lineno - 1])
                assert "with local_cost_map():" in before, (
                    f"{rel}:{node.lineno} imports litellm outside local_cost_map() (LITELLM_LOCAL_MODEL_COST_MAP)")
    assert importers == allowed


def test_every_package_folder_is_packaged() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"recsys_cli"} | {
        ".".join(p.parent.relative_to(ROOT).parts) for p in CORE.rglob("__init__.py")
        if "migrations" not in p.parts
    }
    assert found == listed


def test_the_lazy_public_names_are_typed() -> None:
    """``reveal_type(recommender_core.route)`` is the function, not ``Any`` (the TYPE_CHECKING imports)."""
    probe = ("import recommender_core\nreveal_type(recommender_core.route)\n"
             "reveal_type(recommender_core.RouteDecision)\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "-c", probe], capture_output=True, text=True,
                         cwd=ROOT)
    revealed = [line for line in out.stdout.splitlines() if "Revealed type" in line]
    assert len(revealed) == 2 and not any('"Any"' in line for line in revealed), out.stdout
    assert "-> recommender_core.routing.decision.RouteDecision" in revealed[0]


def test_importing_the_litellm_modules_leaves_the_environment_as_it_was() -> None:
    """The cost-map switch is set only while litellm is imported (no network), then removed again."""
    pytest.importorskip("litellm")
    code = ("import os\nos.environ.pop('LITELLM_LOCAL_MODEL_COST_MAP', None)\nbefore = dict(os.environ)\n"
            "import recommender_core.telemetry.callback, recommender_core.routing.adapter\n"
            "import recommender_core.routing.litellm_strategy\n"
            "import litellm.litellm_core_utils.get_model_cost_map as m\n"
            "print(dict(os.environ) == before, m._cost_map_source_info.source)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "local"], out.stdout + out.stderr


def test_no_production_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for folder in (CORE, ROOT / "cli") for p in folder.rglob("*.py") if "migrations" not in p.parts}
    assert {path: n for path, n in sizes.items() if n > 400} == {}
