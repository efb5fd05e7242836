"""CLI start-up: ``recsys --help`` against ``python -c "import typer"`` (target: at most 1.5x)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ._common import Result, interleaved_medians, time_command

ROUNDS = 21


def run() -> list[Result]:
    recsys = shutil.which("recsys", path=str(Path(sys.executable).parent)) or "recsys"
    # Warm the OS file cache for both, so the first cold read does not decide the figure.
    time_command([recsys, "--help"])
    time_command([sys.executable, "-c", "import typer"])
    ours, baseline = interleaved_medians(
        lambda: time_command([recsys, "--help"]),
        lambda: time_command([sys.executable, "-c", "import typer"]),
        rounds=ROUNDS,
    )
    return [Result(name="recsys --help (median wall time)", figure=ours * 1000, baseline=baseline * 1000,
                   unit="ms", baseline_name='python -c "import typer"', target=1.5,
                   notes=f"{ROUNDS} interleaved rounds")]
