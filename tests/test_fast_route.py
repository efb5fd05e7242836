"""The fast ``recsys route`` path (cli/fast_route.py) against the Typer command, on both backends.

Every case runs both ways on the same store, environment and policy, and the two outputs must be the
same bytes; the cases it must not serve (errors, unusual settings, a cold cache) must fall through.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from recsys_cli import fast_route
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core import policy_cache
from recommender_core.policy import load_policy
from recommender_core.routing.rank import decide, ranked
from recommender_core.routing.strategies import CascadeStrategy, RouteConstraints, UtilityStrategy
from recommender_core.routing.table import ScoreRow, TaskTable
from recommender_core.scored import ScoredModel
from recommender_core.store import Store

from .conftest import REPO_ROOT
from .scoring_data import add_scoring_run

pytestmark = pytest.mark.routing
runner = CliRunner()
LONG = "openrouter/anthropic/claude-opus-4-5-20251101-thinking-extended-preview"
CHAT = [f"chat-{i:02d}" for i in range(30)] + [LONG]
EMBED = [f"embed-{i}" for i in range(4)]
POLICY = "\n".join([
    "candidates:",
    *(f"  {name}: {{aliases: {{lmsys: [arena-{i}]}}}}" for i, name in enumerate(CHAT)),
    "  never-scored: {aliases: {lmsys: [arena-never]}}",
    *(f"  {name}: {{kind: embedding, aliases: {{mteb: [org/{name}]}}}}" for name in EMBED),
    "tasks:",
    "  chat:",
    "    evidence: [lmsys:text/overall]",
    "    static_order: [chat-00, chat-01]",
    "  coding:",
    "    evidence: [lmsys:text/coding]",
    "    static_order: [chat-02]",
    "    constraints: {max_cost_per_1k: 0.02, min_quality: 0.2}",
    "  retrieval:",
    "    kind: embedding",
    "    evidence: [mteb:type/Retrieval]",
    f"    static_order: [{EMBED[0]}]",
]) + "\n"

CASES = [
    ("route", "chat"),
    ("route", "chat", "--json"),
    ("--json", "route", "coding"),
    ("route", "coding", "--strategy", "cascade"),
    ("route", "chat", "--strategy=cascade", "--max-cost-per-1k", "0.03", "--json"),
    ("route", "chat", "--max-latency-ms", "2500", "--min-quality", "0.3"),
    ("route", "chat", "--min-quality=0.25", "--strategy", "cascade", "--max-latency-ms=4000"),
    ("route", "retrieval"),
    ("route", "retrieval", "--json", "--strategy", "cascade"),
]


def _fill(store: Store, *, seed: int = 3) -> None:
    rng = random.Random(seed)
    now = store.clock.now()
    scores = []
    for task, names in (("chat", CHAT), ("coding", CHAT), ("retrieval", EMBED)):
        for i, name in enumerate(names):
            excluded = i % 9 == 4
            scores.append(ScoredModel(
                task=task, model=name, utility=None if excluded else round(rng.random(), 2 if i % 5 else 9),
                quality=rng.random(), cost=rng.random(), latency=rng.random(), reliability=rng.random(),
                cost_per_1k_tokens=rng.choice([0.0, 0.01, rng.uniform(0, 0.05)]),
                latency_p95_ms=rng.uniform(50, 5000), success_rate=0.99, excluded=excluded,
                reason="no evidence for this task" if excluded else None, evidence=(), details={}))
    add_scoring_run(store, scores, at=now)


@pytest.fixture
def routed(store: Store, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _fill(store)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("RECSYS_POLICY", str(policy))
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "true")
    return policy


def _full(args: tuple[str, ...] | list[str]) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _fast(args: tuple[str, ...] | list[str]) -> str | None:
    request = fast_route.parse(args)
    assert request is not None, args
    return fast_route.serve(request)


def test_a_cold_cache_takes_the_full_path_which_compiles_the_policy(routed: Path, tmp_path: Path) -> None:
    assert _fast(["route", "chat"]) is None  # nothing compiled yet
    _full(["route", "chat"])
    assert len(list((tmp_path / "cache").glob("policy-*.json"))) == 1
    assert _fast(["route", "chat"]) is not None


@pytest.mark.parametrize("args", CASES, ids=[" ".join(c) for c in CASES])
def test_the_fast_path_prints_the_same_bytes_as_the_typer_command(routed: Path, args: tuple[str, ...]) -> None:
    full = _full(args)
    fast = _fast(args)
    assert fast == full
    if "--json" in args:
        assert json.loads(fast)["v2_enabled"] is True


def test_the_same_with_the_flag_off_an_explicit_policy_and_a_database_url(
        routed: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "off")
    for args in (["route", "chat"], ["route", "coding", "--json"]):
        full = _full(args)
        assert _fast(args) == full
        if "--json" in args:
            assert json.loads(full)["v2_enabled"] is False and json.loads(full)["candidates"] == []
        else:
            assert "the policy's static order" in full
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "1")
    monkeypatch.delenv("RECSYS_DATABASE_URL")
    monkeypatch.delenv("RECSYS_POLICY")
    args = ["--database-url", database_url, "route", "chat", "--policy", str(routed), "--json"]
    assert _fast(args) == _full(args)


def test_a_terminal_width_applies_to_both_paths(routed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recsys_cli.route_text.terminal_width", lambda: 60)
    monkeypatch.setattr("recsys_cli.routing.terminal_width", lambda: 60)
    args = ["route", "chat", "--max-cost-per-1k", "0.01"]
    full = _full(args)
    assert _fast(args) == full
    assert max(len(line) for line in full.splitlines()) <= 60
    assert "openrouter/anthropic/" in full  # the long name folded at a separator, whole tokens


def test_what_the_fast_path_does_not_serve_falls_through(
        routed: Path, store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _full(["route", "chat"])  # the cache is warm: each case below falls through for its own reason
    assert _fast(["route", "chat"]) is not None
    for args in (["route", "--help"], ["route"], ["route", "chat", "coding"], ["route", "chat", "--min-quality", "2"],
                 ["route", "chat", "--max-cost-per-1k", "nan"], ["route", "chat", "-v"], ["-v", "route", "chat"],
                 ["route", "chat", "--json", "--strategy", "a", "--strategy", "b"], ["route-test", "x"]):
        assert fast_route.parse(args) is None, args
    for args in (["route", "nosuch"], ["route", "chat", "--strategy", "nosuch"],
                 ["route", "chat", "--min-quality", "1"]):  # unknown task or strategy, nothing qualifies
        assert _fast(args) is None, args
    for name, value in (("RECSYS_KEEP_RUNS", "30"), ("RECSYS_LOG_FORMAT", "yaml"), ("recsys_policy", "x.yaml"),
                        ("ENABLE_MODEL_RECOMMENDER_V2", "maybe"), ("RECSYS_POLICY", " ")):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            assert _fast(["route", "chat"]) is None, name
    with monkeypatch.context() as patch:  # free-text settings and a valid log format change nothing
        for name in ("HF_TOKEN", "RECSYS_PUSHGATEWAY_URL", "RECSYS_LMSYS_URL"):
            patch.setenv(name, "anything at all")
        patch.setenv("RECSYS_LOG_FORMAT", "json")
        assert _fast(["route", "chat"]) is not None
    with monkeypatch.context() as patch:  # the embedded default store may need migrating
        patch.delenv("RECSYS_DATABASE_URL")
        assert _fast(["route", "chat"]) is None
    with store.connect() as conn:  # a store at another schema version
        import sqlalchemy as sa

        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'other'"))
    assert _fast(["route", "chat"]) is None


def test_free_settings_accept_any_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings the fast path lets through unread are ones whose every value validates."""
    from recommender_core.config import Settings
    from recommender_core.environ import env_names

    names = {name.lower(): field for field in Settings.model_fields for name in env_names(field)}
    assert fast_route.FREE <= set(names)
    for name in fast_route.FREE:
        monkeypatch.setenv(name.upper(), " \t odd value: 0 ")
    Settings.load()


def test_an_edited_damaged_or_unwritable_cache_reads_as_a_miss(routed: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert policy_cache.save_compiled(routed, cache)
    compiled = policy_cache.load_compiled(routed, cache)
    assert compiled is not None and compiled["tasks"]["coding"]["limits"] == [0.02, None, 0.2]
    assert compiled["kinds"]["chat"] == list(load_policy(routed).candidates_of_kind("chat"))
    routed.write_text(POLICY.replace("0.02", "0.03"))  # edited: another digest
    assert policy_cache.load_compiled(routed, cache) is None
    assert policy_cache.save_compiled(routed, cache)
    digest = policy_cache.policy_digest(routed)
    assert digest is not None
    Path(policy_cache.compiled_file(cache, digest)).write_text('{"format": 1, "tasks": []}')
    assert policy_cache.load_compiled(routed, cache) is None
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    assert policy_cache.save_compiled(routed, str(blocked / "cache")) is False


def test_the_console_script_serves_route_without_typer_sqlalchemy_or_pydantic(routed: Path) -> None:
    _full(["route", "chat"])
    probe = ("import sys, json\nsys.argv = ['recsys', *sys.argv[1:]]\nfrom recsys_cli.entry import main\n"
             "main()\nsys.stderr.write(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    for args in (["route", "chat"], ["route", "coding", "--json"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True,
                              cwd=REPO_ROOT, env=dict(os.environ))
        assert done.stdout == _full(args)
        loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
        assert not loaded & {"typer", "click", "rich", "sqlalchemy", "sqlmodel", "pydantic", "yaml"}, loaded


def test_errors_still_come_from_the_typer_command(routed: Path) -> None:
    _full(["route", "chat"])
    recsys = Path(sys.executable).parent / "recsys"
    done = subprocess.run([str(recsys), "route", "nosuch"], capture_output=True, text=True, check=False,
                          env=dict(os.environ))
    assert done.returncode == 2 and done.stderr.startswith("UnknownTaskError: Unknown task 'nosuch'"), done.stderr
    helped = subprocess.run([str(recsys), "route", "--help"], capture_output=True, text=True, check=False,
                            env=dict(os.environ))
    assert helped.returncode == 0 and "--max-cost-per-1k" in helped.stdout


def _row(i: int, rng: random.Random) -> ScoreRow:
    return ScoreRow(task="t", model=f"m{i:03d}", utility=rng.choice([0.5, rng.random()]),
                    quality=rng.choice([0.5, rng.random()]), cost=0.0, latency=0.0, reliability=0.0,
                    cost_per_1k_tokens=rng.choice([0.0, 0.01, rng.random() / 10]),
                    latency_p95_ms=rng.uniform(0, 3000))


@pytest.mark.parametrize("seed", range(40))
def test_decide_gives_the_indexed_strategies_answer(seed: int) -> None:
    rng = random.Random(seed)
    rows = [_row(i, rng) for i in range(rng.randint(1, 60))]
    table = TaskTable.build("t", rows)
    plain = ranked([(r.model, r.utility or 0.0, r.quality or 0.0, 0.0, 0.0, 0.0, r.cost_per_1k_tokens or 0.0,
              r.latency_p95_ms or 0.0) for r in rows])
    for _ in range(10):
        limits = (rng.choice([None, 0.01, rng.random() / 10]), rng.choice([None, rng.uniform(0, 3000)]),
                  rng.choice([None, 0.5, rng.random()]))
        constraints = RouteConstraints(*limits)
        assert decide(plain, limits, "utility") == UtilityStrategy().order(table, constraints)
        assert decide(plain, limits, "cascade") == CascadeStrategy().order(table, constraints)


def test_no_module_but_environ_reads_the_environment() -> None:
    """``Settings`` (through ``recommender_core.environ``) is the one reader of recsys's settings."""
    import ast

    allowed = {"recommender_core/environ.py", "recommender_core/litellm_import.py"}  # the latter sets one
    for path in [*(REPO_ROOT / "recommender_core").rglob("*.py"), *(REPO_ROOT / "cli").rglob("*.py")]:
        rel = "/".join(path.relative_to(REPO_ROOT).parts)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                assert rel in allowed, f"{rel}:{node.lineno} reads the environment"
