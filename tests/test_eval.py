"""Decision quality: the metrics on hand-made sets, the outcomes reader on hostile files, the importers on the
real RouteLLM and arena-bench files, the replay (both of its stores, its JSON document), calibrate, and the
outcomes source through the ingest template."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recsys_cli.app import app
from typer.testing import CliRunner

from recommender_core.errors import EvalError, SourceSchemaError
from recommender_core.eval.metrics import aiq, apgr, cpt, upper_hull
from recommender_core.eval.outcomes import aggregate, read_outcomes, wilson_interval
from recommender_core.eval.replay import calibrate, calibrated_policy_text, prepare, replay
from recommender_core.policy import default_policy_text, parse_policy
from recommender_core.store import Store
from tests.conftest import real_data

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parent.parent / "sample_mirror" / "outcomes" / "evals.csv"


def _write(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in columns})
    return path


def _two_models(path: Path, *, items: int = 200, tasks: int = 2, seed: int = 1) -> Path:
    """A cheap model right 60% of the time, a dear one 85%, on ``tasks`` tasks."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(tasks):
        for i in range(items):
            rows.append({"task": f"t{t}", "item": f"i{i}", "model": "cheap", "score": int(rng.random() < 0.6),
                         "cost_usd": 0.001})
            rows.append({"task": f"t{t}", "item": f"i{i}", "model": "dear", "score": int(rng.random() < 0.85),
                         "cost_usd": 0.01})
    return _write(path, rows)


# --- metrics on hand-made sets -------------------------------------------------------------------


def _reference_aiq(points: list[tuple[float, float]], max_cost: float, steps: int = 200_000) -> float:
    """RouterBench's definition computed another way: on a fine grid, the best score reachable by mixing two
    points (or by one point at a cost at or below x, the non-decreasing extension), integrated numerically."""
    xs = np.linspace(min(c for c, _ in points), max_cost, steps)
    best = np.full(xs.shape, -np.inf)
    for c, q in points:
        best = np.where(xs >= c, np.maximum(best, q), best)
    for c0, q0 in points:
        for c1, q1 in points:
            if c1 > c0:
                inside = (xs >= c0) & (xs <= c1)
                best[inside] = np.maximum(best[inside], q0 + (q1 - q0) * (xs[inside] - c0) / (c1 - c0))
    return float(np.trapezoid(best, xs) / max_cost)


def test_aiq_by_hand_and_against_a_reference_computation() -> None:
    points = [(0.0, 0.5), (1.0, 0.8), (2.0, 0.9), (1.5, 0.6), (3.0, 0.85)]
    # hull (0,.5) (1,.8) (2,.9), flat to 4: 0.65 + 0.85 + 1.8 = 3.3, over 4
    assert aiq(points, 4.0) == pytest.approx(0.825)
    assert upper_hull(points) == [(0.0, 0.5), (1.0, 0.8), (2.0, 0.9)]
    rng = np.random.default_rng(3)
    for _ in range(5):
        pts = [(float(c), float(q)) for c, q in zip(rng.random(6), rng.random(6), strict=True)]
        assert aiq(pts, 1.5) == pytest.approx(_reference_aiq(pts, 1.5), abs=1e-4)


def test_apgr_and_cpt_by_hand_match_routellm() -> None:
    weak, strong = (0.0, 0.5), (1.0, 0.9)
    points = [(0.0, 0.5), (0.5, 0.8), (1.0, 0.9)]
    # PGR 0, 0.75, 1 at shares 0, 0.5, 1: (0 + 0.75) / 4 + (0.75 + 1) / 4
    assert apgr(points, weak, strong) == pytest.approx(0.625)
    # RouteLLM's evaluate.py: (AUC - weak AUC) / (strong AUC - weak AUC) on the same points
    xs, acc = np.array([0.0, 0.5, 1.0]), np.array([0.5, 0.8, 0.9])
    auc = np.trapezoid(acc, xs)
    assert apgr(points, weak, strong) == pytest.approx((auc - 0.5) / (0.9 - 0.5))
    assert cpt(points, weak, strong) == pytest.approx(0.5 * 0.5 / 0.75)
    assert cpt([(0.0, 0.5), (1.0, 0.6)], weak, strong) is None
    assert apgr([(0.0, 0.5), (1.0, 0.9)], weak, strong) == pytest.approx(0.5)


def test_wilson_interval_known_value() -> None:
    lower, upper = wilson_interval(np.array([8.0]), np.array([10.0]))
    assert (round(float(lower[0]), 4), round(float(upper[0]), 4)) == (0.4902, 0.9433)


def test_aggregate_mean_count_interval(tmp_path: Path) -> None:
    rows = [{"task": "a", "item": str(i), "model": m, "score": s, "cost_usd": 0.5}
            for i, (m, s) in enumerate([("x", 1), ("x", 1), ("x", 0), ("y", 3), ("y", 5)])]
    stats = {(s.task, s.model): s for s in aggregate(read_outcomes(_write(tmp_path / "o.csv", rows)))}
    x, y = stats[("a", "x")], stats[("a", "y")]
    assert (x.count, round(x.mean, 6), x.binary) == (3, round(2 / 3, 6), False)
    assert y.mean == 4.0 and y.lower == pytest.approx(4 - 1.959964 * np.sqrt(2) / np.sqrt(2), abs=1e-5)
    assert x.cost_per_call == 0.5 and (x.score_min, x.score_max) == (0.0, 5.0)


# --- hostile outcomes files ----------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _one_line_error(result: Any, *expected: str) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_hostile_nan_scores(tmp_path: Path) -> None:
    rows = [{"task": "a", "item": str(i), "model": m, "score": "nan" if i % 3 == 0 else 1}
            for i in range(30) for m in ("x", "y")]
    _one_line_error(_cli("eval", "replay", str(_write(tmp_path / "o.csv", rows))),
                    "score: not a finite number", "more than 5%")


def test_hostile_duplicates(tmp_path: Path) -> None:
    rows = [{"task": "a", "item": str(i % 10), "model": m, "score": 1} for i in range(30) for m in ("x", "y")]
    _one_line_error(_cli("eval", "replay", str(_write(tmp_path / "o.jsonl.csv", rows))),
                    "duplicate (task, item, model)")


def test_hostile_unknown_split(tmp_path: Path) -> None:
    rows = [{"task": "a", "item": str(i), "model": m, "score": 1, "split": "train"} for i in range(10)
            for m in ("x", "y")]
    _one_line_error(_cli("eval", "replay", str(_write(tmp_path / "o.csv", rows))),
                    "split: not 'evidence' or 'outcome'")


def test_hostile_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(json.dumps({"task": "a", "item": str(i), "model": "x"}) for i in range(5)) + "\n")
    _one_line_error(_cli("eval", "replay", str(path)), "has no column 'score'")


def test_hostile_one_model(tmp_path: Path) -> None:
    rows = [{"task": "a", "item": str(i), "model": "only", "score": 1, "cost_usd": 0.1} for i in range(20)]
    _one_line_error(_cli("eval", "replay", str(_write(tmp_path / "o.csv", rows))), "holds one model",
                    "at least two models")


def test_a_few_bad_rows_are_counted_not_fatal(tmp_path: Path) -> None:
    path = _two_models(tmp_path / "o.csv", items=60, tasks=1)
    text = path.read_text().splitlines()
    text[5] = text[5].replace(",0.001", ",-1")  # one negative cost in 240 rows
    path.write_text("\n".join(text) + "\n")
    outcomes = read_outcomes(path)
    assert dict(outcomes.rejected) == {"cost_usd: not a finite number >= 0": 1}
    assert outcomes.rows == 119


# --- importers on the real files (the row counts their publishers state) ---------------------------


def test_import_routellm_mmlu_counts(tmp_path: Path) -> None:
    from recommender_core.eval.importers import import_files

    folder = real_data("routing", "routellm", "routellm", "evals", "mmlu", "responses")
    files = sorted(folder.glob("mmlu_*.csv"))
    assert len(files) == 57
    raw = import_files("routellm", files, decontaminate=False)
    clean = import_files("routellm", files)
    assert (raw.items, clean.items, clean.tasks, clean.models) == (14_042, 14_037, 57, 2)
    assert clean.decontaminated == 5 and not clean.dropped_models
    costs = {r["model"]: r["cost_usd"] for r in clean.rows if r["task"] == "mmlu/anatomy"}
    assert costs["gpt-4-1106-preview"] > 10 * costs["mistralai/Mixtral-8x7B-Instruct-v0.1"] > 0


def test_import_routellm_gsm8k_and_mt_bench_counts(tmp_path: Path) -> None:
    evals = real_data("routing", "routellm", "routellm", "evals")
    gsm = evals / "gsm8k" / "gsm8k_responses.csv"
    from recommender_core.eval.importers import import_files

    assert import_files("routellm", [gsm], decontaminate=False).items == 1_319
    assert import_files("routellm", [gsm]).items == 1_307
    judgements = evals / "mt_bench" / "judgements.jsonl"
    assert sum(1 for line in judgements.read_text().splitlines() if line.strip()) == 320
    mt = import_files("routellm", [judgements], decontaminate=False)
    # 80 questions x 2 models; an item is a question, its score the mean of its two turns
    assert (mt.items, mt.tasks, len(mt.rows)) == (80, 8, 160)


def test_import_arena_bench_and_cli(tmp_path: Path) -> None:
    folder = real_data("routing", "arena-bench-v1", "data", "arena-bench-v1", "model_judgment")
    out = tmp_path / "arena.parquet"
    result = _cli("eval", "import", "--format", "arena-bench", str(folder), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["items"] == 300 and doc["tasks"] == 1
    # models litellm has no price for are left out, and said so
    assert doc["models"] + len(doc["dropped_models"]) == 14
    assert "claude-2.1" in doc["dropped_models"]
    assert read_outcomes(out).rows == doc["rows"]


def test_routerbench_wide_table(tmp_path: Path) -> None:
    path = tmp_path / "rb.csv"
    path.write_text("sample_id,eval_name,gpt-4,gpt-4|total_cost,mixtral,mixtral|total_cost,prompt\n"
                    "s1,mmlu,1,0.01,0,0.001,x\ns2,mmlu,1,0.02,1,0.002,y\n")
    from recommender_core.eval.importers import import_files

    result = import_files("routerbench", [path])
    assert sorted((r["item"], r["model"], r["score"], r["cost_usd"]) for r in result.rows)[0] == (
        "s1", "gpt-4", 1.0, 0.01)
    pickle = tmp_path / "routerbench_0shot.pkl"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(SourceSchemaError, match="never unpickles"):
        import_files("routerbench", [pickle])


# --- the replay ----------------------------------------------------------------------------------


def test_replay_json_document_shape(tmp_path: Path) -> None:
    path = _two_models(tmp_path / "o.csv")
    result = _cli("eval", "replay", str(path), "--json", "--repeats", "30")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"seed", "items", "tasks", "models", "max_cost", "routers"} <= set(doc)
    expected = {"recsys-utility", "recsys-cascade", "cheap", "dear", "zero", "random", "task-oracle", "oracle"}
    assert set(doc["routers"]) == expected
    for router in doc["routers"].values():
        assert {"aiq", "aiq_ci95", "apgr", "cpt50", "points"} <= set(router)
        assert all(len(p) == 2 for p in router["points"])
    sweep = doc["routers"]["recsys-utility"]["sweep"]
    assert len(sweep) >= 32 and sweep[0]["cost_weight"] == 0.0
    assert set(sweep[0]) == {"cost_weight", "choices", "cost", "quality"}
    assert set(sweep[0]["choices"]) == set(doc["tasks"]) == {"t0", "t1"}
    # the points are recomputable from the sweep's choices: every model of the choice on the outcome half
    assert doc["routers"]["recsys-utility"]["points"][0] == [round(sweep[0]["cost"], 9), round(sweep[0]["quality"], 9)]
    assert sweep[0]["choices"] == {"t0": "dear", "t1": "dear"}  # no cost weight: the better model
    assert sweep[-1]["choices"] == {"t0": "cheap", "t1": "cheap"}  # the last weight: the cheapest everywhere
    assert doc["items"] + doc["evidence_items"] == 400


def test_replay_memory_and_sqlite_stores_decide_alike() -> None:
    memory = replay(read_outcomes(SAMPLE), repeats=0, points=32, backend="memory")
    sqlite = replay(read_outcomes(SAMPLE), repeats=0, points=32, backend="sqlite")
    assert [p["choices"] for p in memory.sweep] == [p["choices"] for p in sqlite.sweep]
    assert memory.document["routers"]["recsys-utility"]["aiq"] == sqlite.document["routers"]["recsys-utility"]["aiq"]


def test_split_column_wins_over_the_hash(tmp_path: Path) -> None:
    rows = [{"task": "a", "item": str(i), "model": m, "score": 1, "cost_usd": 1,
             "split": "evidence" if i < 3 else "outcome"} for i in range(10) for m in ("x", "y")]
    data = prepare(read_outcomes(_write(tmp_path / "o.csv", rows)))
    assert int(data.evidence.sum()) == 3
    hashed = prepare(read_outcomes(_two_models(tmp_path / "h.csv", items=200, tasks=1)), seed=7)
    again = prepare(read_outcomes(tmp_path / "h.csv"), seed=7)
    other = prepare(read_outcomes(tmp_path / "h.csv"), seed=8)
    assert (hashed.evidence == again.evidence).all() and not (hashed.evidence == other.evidence).all()
    assert 60 < int(hashed.evidence.sum()) < 140


def test_calibrate_picks_the_known_answer(tmp_path: Path) -> None:
    # cheap: 0.001 USD, right 60%; dear: 0.01 USD, right 85% (same on both halves, up to noise)
    result = replay(read_outcomes(_two_models(tmp_path / "o.csv", items=400)), repeats=0, points=32)
    budget = calibrate(result, max_cost_per_call=0.005)
    assert set(budget["choices"].values()) == {"cheap"} or budget["cost"] <= 0.005
    assert budget["cost"] <= 0.005
    # within 0.0055 one of the two tasks can go to the dear model: the best quality in budget does
    mixed = calibrate(result, max_cost_per_call=0.0056)
    assert sorted(mixed["choices"].values()) == ["cheap", "dear"]
    quality = calibrate(result, min_quality=0.8)
    assert set(quality["choices"].values()) == {"dear"}
    with pytest.raises(EvalError, match="No cost weight"):
        calibrate(result, max_cost_per_call=0.0001)
    text, tasks = calibrated_policy_text(default_policy_text(), path="<default>", cost_weight=quality["cost_weight"],
                                         cost_form="wtp", tasks=["t0"])
    policy = parse_policy(text)
    assert tasks == sorted(policy.tasks) or set(tasks) == set(policy.tasks)
    assert all(t.cost_form == "wtp" and t.weights.cost == quality["cost_weight"] for t in policy.tasks.values())


def test_calibrate_cli_writes_a_policy(tmp_path: Path) -> None:
    out = tmp_path / "policy.yaml"
    result = _cli("eval", "calibrate", str(SAMPLE), "--max-cost-per-call", "0.002", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["cost"] <= 0.002 and out.is_file()
    assert parse_policy(out.read_text()).tasks["chat"].cost_form == "wtp"
    usage = _cli("eval", "calibrate", str(SAMPLE))
    assert usage.exit_code == 2 and "exactly one of" in usage.stderr


def test_replay_plot_needs_the_extra_or_draws(tmp_path: Path) -> None:
    result = _cli("eval", "replay", str(SAMPLE), "--repeats", "0", "--plot", str(tmp_path / "chart.svg"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result.exit_code == 2 and "recsys[plot]" in result.stderr
    else:
        assert result.exit_code == 0 and (tmp_path / "chart.svg").read_text().lstrip().startswith("<?xml")


# --- the real targets (RouteLLM MMLU) ------------------------------------------------------------


@pytest.fixture(scope="module")
def mmlu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recommender_core.eval.importers import import_files, write_outcomes

    folder = real_data("routing", "routellm", "routellm", "evals", "mmlu", "responses")
    out = tmp_path_factory.mktemp("mmlu") / "mmlu.parquet"
    write_outcomes(import_files("routellm", sorted(folder.glob("mmlu_*.csv"))).rows, out)
    return out


def test_mmlu_sanity_random_and_oracle(mmlu: Path) -> None:
    doc = replay(read_outcomes(mmlu), repeats=0).document
    assert doc["routers"]["random"]["apgr"] == pytest.approx(0.5, abs=0.02)
    # the oracle as RouteLLM's benchmarks.py computes it: weak accuracy + min(strong calls, weak-wrong-strong-right)
    outcomes = read_outcomes(mmlu)
    data = prepare(outcomes)
    weak = data.models.index("mistralai/Mixtral-8x7B-Instruct-v0.1")
    strong = 1 - weak
    s = data.score[~data.evidence]
    n = s.shape[0]
    bonus = int(((s[:, weak] == 0) & (s[:, strong] == 1)).sum())
    weak_cost, strong_cost = data.cost[0, weak], data.cost[0, strong]
    for cost, quality in doc["routers"]["oracle"]["points"]:
        share = (cost - weak_cost) / (strong_cost - weak_cost)
        expected = (s[:, weak].sum() + min(share * n, bonus)) / n
        assert quality == pytest.approx(expected, abs=1e-6)


def test_mmlu_targets(mmlu: Path) -> None:
    doc = replay(read_outcomes(mmlu), repeats=100).document
    utility = doc["routers"]["recsys-utility"]
    assert utility["apgr"] >= 0.65
    assert doc["comparisons"]["aiq recsys-utility - zero"]["ci95"][0] > 0
    assert doc["comparisons"]["aiq recsys-utility / task-oracle"]["value"] >= 0.97


# --- the outcomes source -------------------------------------------------------------------------


OUTCOMES_POLICY = """
version: 1
candidates:
  cheap: {price: {input_per_1m: 1.0}}
  dear: {price: {input_per_1m: 10.0}}
tasks:
  t0:
    evidence: ["outcomes:t0"]
    static_order: [cheap, dear]
"""


def test_ingest_outcomes_source(store: Store, tmp_path: Path) -> None:
    from recommender_core.config import Settings
    from recommender_core.evidence import list_evidence
    from recommender_core.scoring.run import run_scoring
    from recommender_core.sources.base import IngestOptions
    from recommender_core.sources.outcomes import OutcomesSource

    policy = parse_policy(OUTCOMES_POLICY)
    path = _two_models(tmp_path / "o.csv", items=100, tasks=1)
    source = OutcomesSource(settings=Settings.load(database_url=store.url), policy=policy)
    first = source.run(store, IngestOptions(mirror=str(path)))
    assert (first.status, first.rows_accepted, first.rows_rejected) == ("success", 2, 0)
    assert first.source_version.startswith("sha256:")
    assert source.run(store, IngestOptions(mirror=str(path))).status == "unchanged"
    rows = {r.model: r for r in list_evidence(store, policy, source="outcomes")}
    assert set(rows) == {"cheap", "dear"} and rows["dear"].samples == 100
    scores = {s.model: s for s in run_scoring(store, policy).scores}
    assert scores["dear"].quality == pytest.approx(rows["dear"].value)
    assert scores["dear"].details["cost_source"] == "outcomes (100 items)"
    # a file with too many bad rows: nothing written, the previous evidence stays current, the run recorded
    bad = _write(tmp_path / "bad.csv", [{"task": "t0", "item": str(i), "model": "cheap", "score": "x"}
                                        for i in range(20)])
    with pytest.raises(SourceSchemaError, match="more than 5%"):
        source.run(store, IngestOptions(mirror=str(bad)))
    assert {r.model for r in list_evidence(store, policy, source="outcomes")} == {"cheap", "dear"}


def test_ingest_outcomes_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert _cli("--database-url", db, "db", "upgrade").exit_code == 0
    result = _cli("--database-url", db, "ingest", "outcomes", "--source", str(SAMPLE), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["status"], doc["rows"], doc["details"]["items"]) == ("success", 9, 450)
    again = _cli("--database-url", db, "ingest", "outcomes", "--source", str(SAMPLE))
    assert again.exit_code == 0 and "already ingested" in again.stdout
    missing = _cli("--database-url", db, "ingest", "outcomes", "--source", str(tmp_path / "none.csv"))
    assert missing.exit_code == 1 and "cannot be read" in missing.stderr


@pytest.mark.pushgateway
def test_ingest_outcomes_pushes_its_metrics(gateway: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_pushgateway import _families

    monkeypatch.setenv("RECSYS_PUSHGATEWAY_URL", gateway.url)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert _cli("--database-url", db, "db", "upgrade").exit_code == 0
    result = _cli("--database-url", db, "ingest", "outcomes", "--source", str(SAMPLE))
    assert result.exit_code == 0, result.output
    families = _families(gateway)
    rows = families[("ingest-outcomes", "recsys_ingest_rows")]
    assert {s.labels["source"]: s.value for s in rows.samples} == {"outcomes": 9.0}
    assert ("ingest-outcomes", "recsys_job_last_success_timestamp_seconds") in families


def test_rows_without_cost_are_priced_from_tokens(tmp_path: Path) -> None:
    from recommender_core.eval.replay import fill_costs
    from recommender_core.scoring.prices import load_price_table

    rows = [{"task": "a", "item": str(i), "model": m, "score": i % 2, "input_tokens": 1000, "output_tokens": 100}
            for i in range(10) for m in ("gpt-4o-mini", "gpt-4.1")]
    filled = fill_costs(read_outcomes(_write(tmp_path / "o.csv", rows)))
    price = load_price_table().prices["gpt-4.1"]
    dear = filled.cost[filled.model_codes == filled.models.index("gpt-4.1")]
    assert dear == pytest.approx(np.full(10, 1000 * price.input_per_token + 100 * price.output_per_token))
    unknown = [{**r, "model": "in-house-7b" if r["model"] == "gpt-4.1" else r["model"]} for r in rows]
    result = _cli("eval", "replay", str(_write(tmp_path / "u.csv", unknown)))
    _one_line_error(result, "in-house-7b", "add a cost_usd column")


def test_task_intervals_are_optional() -> None:
    plain = replay(read_outcomes(SAMPLE), repeats=20, points=32).document
    assert "aiq_ci95" not in next(iter(plain["per_task"].values())) and plain["cascade_beats_zero_ci"] == []
    doc = replay(read_outcomes(SAMPLE), repeats=20, points=32, task_intervals=True).document
    for entry in doc["per_task"].values():
        assert set(entry["aiq_ci95"]) == {"recsys-utility", "recsys-cascade", "zero"}
        low, high = entry["cascade_minus_zero_ci95"]
        assert low <= high
    assert set(doc["cascade_beats_zero_ci"]) <= set(doc["per_task"])
