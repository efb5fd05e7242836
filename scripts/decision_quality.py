"""The results table of docs/decision-quality.md, from the published routing files.

    .venv/bin/python scripts/decision_quality.py ROUTING_DIR [--repeats 200] [--seed 0]

ROUTING_DIR holds ``routellm/`` (lm-sys/RouteLLM at 0b64fdafe049e596a3f5657c219329f24af24198: ``routellm/evals``)
and ``arena-bench-v1/`` (lmarena/arena-hard-auto at 4a705dd6963f777aba2ae79259e3013934e6e012:
``data/arena-bench-v1``). Each dataset goes through ``recsys eval import`` and ``recsys eval replay`` (the same
core calls), once with the willingness-to-pay cost form and once with the relative one (before/after), and
the script prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from recommender_core.eval.importers import import_files, write_outcomes
from recommender_core.eval.replay import replay_files


def _datasets(root: Path) -> dict[str, tuple[str, list[Path]]]:
    evals = root / "routellm" / "routellm" / "evals"
    arena = root / "arena-bench-v1" / "data" / "arena-bench-v1" / "model_judgment"
    return {
        "RouteLLM MMLU": ("routellm", sorted((evals / "mmlu" / "responses").glob("mmlu_*.csv"))),
        "RouteLLM MMLU, per-item cost": ("routellm", sorted((evals / "mmlu" / "responses").glob("mmlu_*.csv"))),
        "RouteLLM GSM8K": ("routellm", [evals / "gsm8k" / "gsm8k_responses.csv"]),
        "RouteLLM MT-Bench": ("routellm", [evals / "mt_bench" / "judgements.jsonl"]),
        "arena-bench-v1": ("arena-bench", [arena]),
    }


def _fig(router: dict[str, Any], key: str = "aiq") -> str:
    value, ci = router.get(key), router.get(f"{key}_ci95")
    if value is None:
        return "-"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _cmp(doc: dict[str, Any], key: str) -> str:
    c = doc["comparisons"].get(key)
    if not c or c["value"] is None:
        return "-"
    return f"{c['value']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]" if c["ci95"] else f"{c['value']:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    docs: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (fmt, paths) in _datasets(args.root).items():
            out = Path(tmp) / f"{fmt}-{len(docs)}.parquet"
            write_outcomes(import_files(fmt, paths, per_item_cost="per-item" in name).rows, out)
            docs[name] = {form: replay_files([out], seed=args.seed, repeats=args.repeats, cost_form=form,
                                             task_intervals=form == "wtp").document
                          for form in ("wtp", "relative")}
    print("AIQ (higher is better; the score's own units) with bootstrap 95% intervals, willingness-to-pay form:\n")
    print("| dataset | tasks | outcome items | recsys-utility | recsys-cascade | zero | random | task-oracle |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by_form in docs.items():
        d = by_form["wtp"]
        r = d["routers"]
        print(f"| {name} | {len(d['tasks'])} | {d['items']} | {_fig(r['recsys-utility'])} | "
              f"{_fig(r['recsys-cascade'])} | {_fig(r['zero'])} | {_fig(r['random'])} | {_fig(r['task-oracle'])} |")
    print("\nAPGR and CPT(50%) (RouteLLM), and the pooled comparisons:\n")
    print("| dataset | APGR recsys-utility | CPT(50%) | APGR random | APGR oracle | AIQ utility - zero "
          "| AIQ utility / task-oracle | cascade beats zero within |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by_form in docs.items():
        d = by_form["wtp"]
        r = d["routers"]
        cpt = r["recsys-utility"]["cpt50"]
        print(f"| {name} | {_fig(r['recsys-utility'], 'apgr')} | {'-' if cpt is None else f'{cpt:.3f}'} | "
              f"{_fig(r['random'], 'apgr')} | {_fig(r['oracle'], 'apgr')} | "
              f"{_cmp(d, 'aiq recsys-utility - zero')} | {_cmp(d, 'aiq recsys-utility / task-oracle')} | "
              f"{len(d['cascade_beats_zero'])} of {len(d['per_task'])} tasks "
              f"({len(d['cascade_beats_zero_ci'])} with the interval above 0) |")
    print("\nBefore/after: the relative cost form (the default) against willingness to pay:\n")
    print("| dataset | form | APGR recsys-utility | AIQ utility / task-oracle | AIQ utility - zero |")
    print("|---|---|---|---|---|")
    for name, by_form in docs.items():
        for form in ("relative", "wtp"):
            d = by_form[form]
            print(f"| {name} | {form} | {_fig(d['routers']['recsys-utility'], 'apgr')} | "
                  f"{_cmp(d, 'aiq recsys-utility / task-oracle')} | {_cmp(d, 'aiq recsys-utility - zero')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
