"""CLI start-up: ``recsys --help`` against ``python -c "import typer"`` (target: at most 1.5x)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ._common import Result, interleaved_runs, median_of, time_command

ROUNDS = 21


def run() -> list[Result]:
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent)) or "recsys"
    # Warm the OS file cache for both, so the first cold read does not decide the figure.
    time_command([recsys, "--help"])
    time_command([sys.executable, "-c", "import typer"])
    ours, baseline = interleaved_runs(
        lambda: time_command([recsys, "--help"]),
        lambda: time_command([sys.executable, "-c", "import typer"]),
        rounds=ROUNDS,
    )
    return [Result(name="recsys --help (median wall time)", figure=median_of(ours) * 1000,
                   baseline=median_of(baseline) * 1000, unit="ms", baseline_name='python -c "import typer"',
                   target=1.5, figure_runs=tuple(x * 1000 for x in ours),
                   baseline_runs=tuple(x * 1000 for x in baseline), notes=f"{ROUNDS} interleaved rounds")]
