"""The limits of a policy (and route-test case) file: size, nesting, numbers. One place for all of them.

``policy.parse_yaml`` calls ``check_yaml_shape`` before the YAML is loaded, and ``policy.parse_policy``
calls ``check_bounds`` on the validated policy; each violation is one ``PolicyError`` line naming the
file, the line and the field. The rules (``docs/reliability.md`` lists them too):

- the file holds at most ``MAX_FILE_BYTES`` (1 MiB) and is nested at most ``MAX_DEPTH`` (32) levels
  deep (the deepest real field is 5: ``candidates.<name>.aliases.<source>[i]``); nesting is measured
  on the YAML event stream, which needs no recursion, so a document 10,000 levels deep is one line,
  not a RecursionError;
- a scalar holds at most ``MAX_SCALAR_CHARS`` (4,096) characters, and a plain number at most
  ``MAX_NUMBER_DIGITS`` (30) digits (Python refuses to read an int of over 4,300 digits at all);
- every number of the policy is finite (no ``.inf``, ``.nan`` or ``1e400``) and within ``BOUNDS``:
  weights 0 to 1,000; tokens per call 0 to 10,000,000; prices 0 to 100,000 USD per million tokens;
  ``max_cost_per_1k`` 0 to 1,000,000 USD; latencies (``latency_prior_ms``, ``max_latency_ms``) up to
  86,400,000 ms (a day); ``min_quality`` 0 to 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from .errors import PolicyError
from .printable import printable

if TYPE_CHECKING:
    from .policy import Policy

__all__ = [
    "BOUNDS",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NUMBER_DIGITS",
    "MAX_SCALAR_CHARS",
    "check_bounds",
    "check_yaml_shape",
]

MAX_FILE_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 32
MAX_SCALAR_CHARS: Final = 4096
MAX_NUMBER_DIGITS: Final = 30
_NUMBER: Final = re.compile(r"[-+]?[0-9_.]+(?:[eE][-+]?[0-9_]+)?")

_DAY_MS: Final = 86_400_000.0
# field name -> (lowest, highest) for every number a policy holds.
BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "quality": (0.0, 1000.0), "cost": (0.0, 1000.0), "latency": (0.0, 1000.0), "reliability": (0.0, 1000.0),
    "input_tokens": (0, 10_000_000), "output_tokens": (0, 10_000_000),
    "input_per_1m": (0.0, 100_000.0), "output_per_1m": (0.0, 100_000.0),
    "max_cost_per_1k": (0.0, 1_000_000.0), "max_latency_ms": (0.0, _DAY_MS), "min_quality": (0.0, 1.0),
    "latency_prior_ms": (0.0, _DAY_MS),
}


def _error(path: str, label: str, line: int | None, field: str, message: str) -> PolicyError:
    where = f"{path}, line {line}" if line else path
    # The field path holds the policy's own keys (any text, a newline included): one line, escaped.
    return PolicyError(f"Invalid {label} {printable(where)}, field '{printable(field)}': {printable(message)}.",
                       path=path, line=line, field=field)


def check_yaml_shape(text: str, *, path: str, label: str = "policy") -> None:
    """Refuse a file too large, too deeply nested, or holding a scalar or number too long, before it is loaded.

    Syntax errors are left to the loader (it names them); this only walks what parses.
    """
    import yaml

    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise PolicyError(f"Invalid {label} {path}: the file holds {size:,} bytes, more than the "
                          f"{MAX_FILE_BYTES:,} a {label} file may hold.", path=path)
    keys: list[Any] = []  # the path of the node being read: a key (str) or an index (int) per level
    expecting_key: list[bool] = []  # per open collection: is the next node a mapping key?
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                keys.pop()
                expecting_key.pop()
                _advance(keys, expecting_key)
                continue
            if not isinstance(event, yaml.ScalarEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent
                              | yaml.AliasEvent):
                continue
            line = int(event.start_mark.line) + 1 if event.start_mark is not None else None
            is_key = bool(expecting_key) and expecting_key[-1]
            if isinstance(event, yaml.ScalarEvent):
                _check_scalar(event, keys, path=path, label=label, line=line)
                if is_key:
                    keys[-1] = event.value[:64]
                    expecting_key[-1] = False
                else:
                    _advance(keys, expecting_key)
                continue
            if isinstance(event, yaml.AliasEvent):
                _advance(keys, expecting_key)
                continue
            if len(keys) >= MAX_DEPTH:
                raise _error(path, label, line, _field(keys),
                             f"nested more than {MAX_DEPTH} levels deep; a {label} is at most {MAX_DEPTH} deep")
            keys.append("?" if isinstance(event, yaml.MappingStartEvent) else 0)
            expecting_key.append(isinstance(event, yaml.MappingStartEvent))
    except yaml.YAMLError:
        return  # the loader reports the syntax error, with its line


def _advance(keys: list[Any], expecting_key: list[bool]) -> None:
    """A value was read: the enclosing mapping expects a key next, the enclosing sequence the next item."""
    if not keys:
        return
    if expecting_key[-1] is False and isinstance(keys[-1], str):
        expecting_key[-1] = True
    elif isinstance(keys[-1], int):
        keys[-1] += 1


def _field(keys: list[Any]) -> str:
    shown = [str(k) for k in keys if k != "?"]
    text = ".".join(shown[:8]) + (f"... ({len(shown)} levels)" if len(shown) > 8 else "")
    return text or "(top level)"


def _check_scalar(event: Any, keys: list[Any], *, path: str, label: str, line: int | None) -> None:
    value: str = event.value
    if event.style is None and _NUMBER.fullmatch(value):  # a plain (unquoted) number
        digits = sum(c.isdigit() for c in value)
        if digits > MAX_NUMBER_DIGITS:
            raise _error(path, label, line, _field(keys),
                         f"a number of {digits:,} digits; numbers hold at most {MAX_NUMBER_DIGITS}")
    if len(value) > MAX_SCALAR_CHARS:
        raise _error(path, label, line, _field(keys),
                     f"a value of {len(value):,} characters, more than {MAX_SCALAR_CHARS:,}")


def _numbers(policy: Policy) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """(location, field name, value) of every bounded number of the policy."""
    for name, candidate in policy.candidates.items():
        if candidate.price is not None:
            for field in ("input_per_1m", "output_per_1m"):
                yield ("candidates", name, "price", field), field, getattr(candidate.price, field)
        yield ("candidates", name, "latency_prior_ms"), "latency_prior_ms", candidate.latency_prior_ms
    for name, task in policy.tasks.items():
        for group, model in (("weights", task.weights), ("token_mix", task.token_mix),
                             ("constraints", task.constraints)):
            for field in type(model).model_fields:
                yield ("tasks", name, group, field), field, getattr(model, field)
        yield ("tasks", name, "latency_prior_ms"), "latency_prior_ms", task.latency_prior_ms


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,g}"


def check_bounds(policy: Policy) -> tuple[tuple[str, ...], str] | None:
    """The first number of ``policy`` that is not finite or not within ``BOUNDS``: (location, message)."""
    for loc, field, value in _numbers(policy):
        if value is None or field not in BOUNDS:
            continue
        low, high = BOUNDS[field]
        if isinstance(value, float) and not math.isfinite(value):
            return loc, f"must be a finite number from {_number(low)} to {_number(high)}"
        if not low <= value <= high:
            return loc, f"must be from {_number(low)} to {_number(high)}"
    return None
