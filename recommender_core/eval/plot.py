"""``recsys eval replay --plot``: every router's cost-quality points and AIQ hull on one chart.

matplotlib is an optional extra (``pip install 'recsys[plot]'``); it is imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .metrics import upper_hull

__all__ = ["plot_replay"]

STYLES = {"recsys-utility": ("tab:blue", "o"), "recsys-cascade": ("tab:purple", "s"), "zero": ("black", ""),
          "random": ("tab:gray", "."), "task-oracle": ("tab:green", "^"), "oracle": ("tab:red", "*")}


def plot_replay(document: dict[str, Any], path: Path | str, *, title: str | None = None) -> Path:
    """Draw ``document`` (the replay JSON) to ``path`` (.png or .svg)."""
    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {out}: use a .png or .svg file name.")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("--plot needs matplotlib: pip install 'recsys[plot]'.") from exc
    fig, ax = plt.subplots(figsize=(9, 6))
    max_cost = float(document["max_cost"])
    singles = set(document["models"])
    for name, router in document["routers"].items():
        points = [(float(c), float(q)) for c, q in router["points"]]
        if name in singles:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker="D", s=40, zorder=3)
            ax.annotate(name, points[0], fontsize=7, xytext=(4, 4), textcoords="offset points")
            continue
        colour, marker = STYLES.get(name, ("tab:orange", "x"))
        if marker:
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=10, color=colour, marker=marker, alpha=0.5)
        hull = upper_hull(points)
        xs = [p[0] for p in hull] + [max_cost]
        ys = [p[1] for p in hull] + [hull[-1][1]]
        label = f"{name} (AIQ {router['aiq']:.4g})" if router.get("aiq") is not None else name
        ax.plot(xs, ys, color=colour, label=label, linestyle="--" if name == "zero" else "-")
    ax.set_xlabel("mean cost per item (USD)")
    ax.set_ylabel("mean score on the outcome half")
    ax.set_title(title or f"recsys eval replay: {len(document['tasks'])} tasks, {document['items']} items")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
