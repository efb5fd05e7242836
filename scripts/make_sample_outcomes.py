"""Write sample_mirror/outcomes/evals.csv: the project's own made-up eval results in the long outcomes format.

Three tasks a support team might evaluate, three candidates of the default policy, 150 items each: two
pass/fail tasks and one graded by a rubric (the share of 5 rubric points met, 0 to 1). The values are
invented (seeded), shaped like real evals: the expensive model is better on the hard task, nearly tied on
the easy one. Run: python scripts/make_sample_outcomes.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

MODELS = {  # model: (USD per 1M input tokens, per 1M output tokens), from litellm's table at the time of writing
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "claude-haiku-4-5": (1.00, 5.00),
}
TASKS = {  # task: (kind, per-model skill, input tokens, output tokens)
    "ticket-triage": ("pass", {"gpt-4o-mini": 0.86, "gpt-4.1": 0.90, "claude-haiku-4-5": 0.88}, 600, 20),
    "sql-generation": ("pass", {"gpt-4o-mini": 0.55, "gpt-4.1": 0.82, "claude-haiku-4-5": 0.70}, 1500, 250),
    "reply-drafting": ("rubric", {"gpt-4o-mini": 3.2, "gpt-4.1": 4.2, "claude-haiku-4-5": 4.0}, 900, 400),
}


def main() -> None:
    rng = random.Random(18)  # noqa: S311 - sample data, not secrets
    out = Path(__file__).resolve().parent.parent / "sample_mirror" / "outcomes" / "evals.csv"
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "item", "model", "score", "cost_usd", "input_tokens", "output_tokens"])
        for task, (kind, skill, tin, tout) in TASKS.items():
            for i in range(150):
                difficulty = rng.gauss(0, 1)
                n_in = max(50, int(rng.gauss(tin, tin * 0.2)))
                for model, (p_in, p_out) in MODELS.items():
                    n_out = max(5, int(rng.gauss(tout, tout * 0.25)))
                    if kind == "pass":
                        p = min(max(skill[model] - 0.12 * difficulty, 0.02), 0.99)
                        score = 1 if rng.random() < p else 0
                    else:
                        score = min(5, max(0, round(rng.gauss(skill[model] - 0.6 * difficulty, 0.8)))) / 5
                    cost = (n_in * p_in + n_out * p_out) / 1e6
                    writer.writerow([task, f"{task[:3]}-{i:03d}", model, score, f"{cost:.8f}", n_in, n_out])


if __name__ == "__main__":
    main()
