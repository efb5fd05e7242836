"""Normalisation of every utility component to [0, 1]; the documented rules live here.

- **Arena quality**: expected win rate against the category's reference model under the Elo
  logistic on the 400 scale, ``1 / (1 + 10 ** ((R_ref - R) / 400))``. The reference model is the
  median-rated model of the category among all current evidence (ties broken by name), so a model
  as strong as the field's middle scores 0.5. With ``conservative: true`` the model's lower
  confidence bound replaces its rating (the reference keeps its point rating); a row without a
  lower bound then keeps its rating, which the stored evidence details say.
- **MTEB quality**: ``mteb:task/<Name>`` is that task's score; ``mteb:type/<Type>`` is the mean
  score over the tasks of that type that any candidate of the policy was evaluated on. A model
  must cover at least ``MTEB_MIN_COVERAGE`` of those tasks, otherwise it is excluded for the task
  with a reason (a mean over a few easy tasks would flatter it).
- **Cost** and **latency**: relative to the task's median candidate, ``ref / (ref + x)``: the
  median model scores 0.5, a free (or instant) one 1, ten times the median about 0.09. The
  median is taken over the non-zero values, so free self-hosted models do not drag it to 0.
- **Reliability**: the success rate smoothed with a Beta(``BETA_ALPHA``, ``BETA_BETA``) prior,
  ``(successes + a) / (calls + a + b)``: no telemetry means the prior mean 0.95.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BETA_ALPHA",
    "BETA_BETA",
    "ELO_SCALE",
    "MTEB_MIN_COVERAGE",
    "beta_smoothed",
    "elo_win_rate",
    "median",
    "relative_score",
]

ELO_SCALE = 400.0
MTEB_MIN_COVERAGE = 0.5
BETA_ALPHA = 19.0
BETA_BETA = 1.0


def elo_win_rate(rating: float, reference: float) -> float:
    """Expected score of ``rating`` against ``reference`` (Elo logistic, 400 scale).

    >>> elo_win_rate(1400, 1400)
    0.5
    >>> round(elo_win_rate(1500, 1100), 6)
    0.909091
    """
    return float(1.0 / (1.0 + 10.0 ** ((reference - rating) / ELO_SCALE)))


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count); ValueError when empty."""
    if not values:
        raise ValueError("median of nothing")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def relative_score(value: float, reference: float) -> float:
    """``reference / (reference + value)`` for costs and latencies (lower is better), in [0, 1].

    >>> relative_score(2.0, 2.0)
    0.5
    >>> relative_score(0.0, 2.0)
    1.0
    """
    if value <= 0:
        return 1.0
    if reference <= 0:
        return 0.0
    return reference / (reference + value)


def beta_smoothed(successes: int, calls: int, *, alpha: float = BETA_ALPHA, beta: float = BETA_BETA) -> float:
    """Success rate under a Beta(alpha, beta) prior.

    >>> beta_smoothed(0, 0)
    0.95
    >>> beta_smoothed(80, 100)
    0.825
    """
    return (successes + alpha) / (calls + alpha + beta)
