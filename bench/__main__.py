"""``python -m bench [NAME ...]``: run every benchmark (or the named ones) and print ratios."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    import warnings

    # litellm's TypedDicts make pydantic warn at import that it cannot enforce ReadOnly items; the
    # same third-party warning the test suite ignores by module (pyproject.toml).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydantic\._internal\._generate_schema")
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"Unknown benchmark(s): {', '.join(unknown)}. Available: {', '.join(names)}", file=sys.stderr)
        return 2
    missed = 0
    started = time.perf_counter()
    for name in wanted:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        for result in module.run():
            print(result.line(), flush=True)
            missed += not result.passed
        # Wall time per benchmark: the make bench budget (15 minutes) is kept by these.
        print(f"({name} took {time.perf_counter() - began:.0f} s)", flush=True)
    verdict = "all targets met" if not missed else f"{missed} target(s) missed"
    print(f"{verdict} in {time.perf_counter() - started:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
