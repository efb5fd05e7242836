"""The rules every evidence row must meet before it is stored: one place, for every source.

``Source.run`` hands each batch a source's ``load`` produced to ``screen`` before anything else
looks at it (the dry run too). ``screen`` checks every record with ``check_record``; a record that
breaks a rule is taken out of the batch and counted under its reason (``batch.rejected``), so the
5 % rule of ``Source._check_rejections`` decides the run over the source's own rejects and these
together, and the rest of the run goes in. A reason names the field and the rule, never the value
(reasons group in the run summary, and hostile text is not echoed).

Rules for every source:

- ``model``: a non-blank string of at most ``MAX_NAME_CHARS`` (512, the column) characters;
- ``category``: a non-blank string of at most ``MAX_CATEGORY_CHARS`` (256);
- ``task_type``, ``metric``, ``split``: at most 64 characters; ``revision``, ``organization``: at
  most 256; ``extra["mteb_version"]`` (and any version string): at most ``MAX_VERSION_CHARS`` (64);
- no control character (C0, DEL, C1; a NUL cannot even be stored in Postgres text) in any of them;
- ``value``, ``lower``, ``upper``: finite numbers on the source's scale (below); ``lower <= value <=
  upper`` where given; ``samples`` from 0 and ``rank`` from 1, both at most 10^10;
- ``extra``: plain JSON (strings, finite numbers, lists and mappings), at most 4 levels deep.

Per source (``SCALES``):

- ``lmsys`` (Arena ratings, Elo/Bradley-Terry scale): ``MIN_RATING`` to ``MAX_RATING`` (0 to 10,000;
  real ratings lie between about 800 and 1,500), with the confidence bounds around the rating;
- ``mteb`` (main score of the task): the bounds follow the task's main metric (from the task map):
  accuracy, F1, AP, MAP, nDCG, MRR, recall, precision, hit rate, v-measure, NMI, LRAP and AUC lie in
  [0, 1]; correlations (Spearman, Pearson, Kendall, as STS and summarization score), p-MRR
  (instruction retrieval), AMI and robustness can be negative and lie in [-1, 1]. A task the task
  map does not know has no known metric: any finite value of magnitude at most 10^12 (mteb's
  ``GPUSpeedTask`` scores in words per second, e.g. 78,556);
- any other source: finite values of magnitude at most 10^12.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from ..errors import RejectedRow

if TYPE_CHECKING:
    from .base import Batch, EvidenceRecord

__all__ = [
    "MAX_CATEGORY_CHARS",
    "MAX_NAME_CHARS",
    "MAX_VERSION_CHARS",
    "SCALES",
    "Scale",
    "check_record",
    "check_text",
    "check_version",
    "mteb_metric_bounds",
    "screen",
    "usable",
]

MAX_NAME_CHARS: Final = 512
MAX_CATEGORY_CHARS: Final = 256
MAX_SHORT_CHARS: Final = 64
MAX_LONG_CHARS: Final = 256
MAX_VERSION_CHARS: Final = 64
MAX_COUNT: Final = 10**10
MAX_MAGNITUDE: Final = 1e12
MAX_EXTRA_DEPTH: Final = 4
# C0 controls, DEL and C1 controls.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_text(value: Any, field: str, limit: int, *, required: bool = False) -> None:
    """A string of at most ``limit`` characters without control characters (None when not required)."""
    if value is None and not required:
        return
    if type(value) is str and value.isascii() and value.isprintable() and len(value) <= limit and (
            not required or not value.isspace()) and value:
        return  # the common case, without a regular expression
    if type(value) is not str:
        raise RejectedRow(f"{field} is not text", field=field)
    if required and not value.strip():
        raise RejectedRow(f"{field} is blank", field=field)
    if len(value) > limit:
        raise RejectedRow(f"{field} is longer than {limit} characters", field=field)
    if _CONTROL.search(value):
        raise RejectedRow(f"{field} holds a control character", field=field)


def check_version(value: Any, field: str = "version") -> None:
    """A version string (``mteb_version``, a revision) of bounded length without control characters."""
    check_text(value, field, MAX_VERSION_CHARS)


def _finite(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedRow(f"{field} is not a number", field=field)
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise RejectedRow(f"{field} is not finite", field=field) from None
    if not math.isfinite(number):
        raise RejectedRow(f"{field} is not finite", field=field)
    return number


def _count(value: Any, field: str, minimum: int) -> None:
    if value is None:
        return
    if type(value) is not int:
        raise RejectedRow(f"{field} is not a whole number", field=field)
    if not minimum <= value <= MAX_COUNT:
        raise RejectedRow(f"{field} is out of range", field=field)


def _plain_json(value: Any, depth: int = 0) -> bool:
    if depth > MAX_EXTRA_DEPTH:
        return False
    if value is None or type(value) in (str, bool):
        return not (type(value) is str and "\x00" in value)
    if type(value) is int:
        return abs(value) <= 2**63
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_plain_json(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(type(k) is str and "\x00" not in k and _plain_json(v, depth + 1) for k, v in value.items())
    return False


# --- per-source scales -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scale:
    """The bounds of a value on a source's scale, and the name the reason gives them."""

    low: float
    high: float
    what: str

    def check(self, number: float, field: str) -> None:
        if not self.low <= number <= self.high:
            raise RejectedRow(f"{field} is outside [{self.low:g}, {self.high:g}] for {self.what}", field=field)


_ANY: Final = Scale(-MAX_MAGNITUDE, MAX_MAGNITUDE, "an unknown metric")
# Main metrics that can be negative: correlations, p-MRR, adjusted mutual information, robustness.
_SIGNED_METRICS: Final = re.compile(r"spearman|pearson|kendall|p-?mrr|ami$|^ami|robustness", re.IGNORECASE)


def mteb_metric_bounds(metric: str | None) -> Scale:
    """The scale of an MTEB main metric: [-1, 1] for the metrics that can be negative, [0, 1] for
    every other known one, any finite value for an unknown (None) metric."""
    if metric is None:
        return _ANY
    return Scale(-1.0 if _SIGNED_METRICS.search(metric) else 0.0, 1.0, metric)


def _lmsys_scale(record: EvidenceRecord) -> Scale:
    from .lmsys.constants import MAX_RATING, MIN_RATING

    return Scale(MIN_RATING, MAX_RATING, "an Arena rating")


def _mteb_scale(record: EvidenceRecord) -> Scale:
    from .mteb.parse import load_task_map

    found = load_task_map().find(record.category)
    return mteb_metric_bounds(found[1].main_score if found is not None else None)


# source name -> the scale of one of its records
SCALES: dict[str, Callable[[EvidenceRecord], Scale]] = {
    "lmsys": _lmsys_scale,
    "mteb": _mteb_scale,
}


class _Seen:
    """What one ``screen`` call already found good: names, categories and extras repeat across rows."""

    def __init__(self) -> None:
        self.models: set[Any] = set()
        self.metas: set[tuple[Any, ...]] = set()
        self.scales: dict[str, Scale] = {}
        self.extras: set[int] = set()
        self.kept: list[Any] = []  # keeps each id()'d extra alive while its id is in ``extras``


def check_record(source: str, record: EvidenceRecord, seen: _Seen | None = None) -> None:
    """Raise ``RejectedRow`` when ``record`` breaks a rule of ``source`` (see the module docstring).

    ``seen`` (one per ``screen`` call) skips the checks of texts, scales and extras already found good:
    an Arena board repeats each name in every category, so 50,000 rows cost a fraction of their parse.
    """
    # Type checks first: only text (and None) is hashed into the caches.
    if seen is None or type(record.model) is not str or record.model not in seen.models:
        check_text(record.model, "model name", MAX_NAME_CHARS, required=True)
        if seen is not None:
            seen.models.add(record.model)
    if seen is None or type(record.category) is not str or record.category not in seen.scales:
        check_text(record.category, "category", MAX_CATEGORY_CHARS, required=True)  # a cached scale: checked
    meta = (record.task_type, record.metric, record.split, record.revision, record.organization)
    if seen is None or not all(v is None or type(v) is str for v in meta) or meta not in seen.metas:
        check_text(record.task_type, "task_type", MAX_SHORT_CHARS)
        check_text(record.metric, "metric", MAX_SHORT_CHARS, required=True)
        check_text(record.split, "split", MAX_SHORT_CHARS)
        check_text(record.revision, "revision", MAX_LONG_CHARS)
        check_text(record.organization, "organization", MAX_LONG_CHARS)
        if seen is not None:
            seen.metas.add(meta)
    scale = seen.scales.get(record.category) if seen is not None else None
    if scale is None:
        scale_of = SCALES.get(source)
        scale = scale_of(record) if scale_of is not None else _ANY
        if seen is not None:
            seen.scales[record.category] = scale
    value, lower, upper = record.value, record.lower, record.upper
    low, high = scale.low, scale.high
    if not (type(value) is float and low <= value <= high):  # NaN fails the comparison too
        scale.check(_finite(value, "value"), "value")
    for field, bound in (("lower bound", lower), ("upper bound", upper)):
        if bound is not None and not (type(bound) is float and low <= bound <= high):
            scale.check(_finite(bound, field), field)
    if (lower is not None and lower > value) or (upper is not None and upper < value):
        raise RejectedRow("bounds do not contain the value", field="value")
    for field, count, minimum in (("samples", record.samples, 0), ("rank", record.rank, 1),
                                  ("subset_count", record.subset_count, 0)):
        if count is not None and not (type(count) is int and minimum <= count <= MAX_COUNT):
            _count(count, field, minimum)
    extra = record.extra
    if seen is not None and id(extra) in seen.extras:
        return
    if not isinstance(extra, Mapping) or not _plain_json(extra):
        raise RejectedRow("extra is not plain JSON", field="extra")
    if "mteb_version" in extra:
        check_version(extra["mteb_version"], "mteb_version")
    if seen is not None:
        seen.extras.add(id(extra))
        seen.kept.append(extra)


@lru_cache(maxsize=4096)
def _stored_scale(source: str, category: str) -> Scale:
    from .base import EvidenceRecord

    scale_of = SCALES.get(source)
    return scale_of(EvidenceRecord(model="-", category=category, value=0.0)) if scale_of is not None else _ANY


def usable(source: str, category: str, value: float, lower: float | None = None) -> bool:
    """Whether a value already stored meets its source's scale. Scoring leaves out one that does not:
    rows an older version stored before these rules (Postgres keeps NaN and infinities) must neither
    fail a scoring run nor skew it."""
    scale = _stored_scale(source, category)
    return (math.isfinite(value) and scale.low <= value <= scale.high
            and (lower is None or (math.isfinite(lower) and lower <= value)))


def screen(source: str, batch: Batch) -> None:
    """Check every record of ``batch``: keep the good ones, count each bad one under its reason."""
    kept: list[EvidenceRecord] = []
    seen = _Seen()
    for record in batch.records:
        try:
            check_record(source, record, seen)
        except RejectedRow as bad:
            batch.reject(bad.reason)
            continue
        kept.append(record)
    if len(kept) != len(batch.records):
        batch.records[:] = kept
