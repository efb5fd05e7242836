"""The policy file: candidates the user can call, tasks, weights and static orders (docs/policy.md).

Loaded once, validated with pydantic (the file is an edge), and kept in memory as frozen models.
Every validation error names the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import PolicyError
from .identity import NameMatcher
from .printable import printable
from .sources import available_sources, get_source, load_sources

__all__ = [
    "DEFAULT_POLICY_NAME",
    "EVIDENCE_SOURCES",
    "Candidate",
    "Constraints",
    "EvidenceRef",
    "Policy",
    "Price",
    "Task",
    "TokenMix",
    "Weights",
    "default_policy_text",
    "load_policy",
    "located_error",
    "parse_policy",
    "parse_yaml",
    "read_config_file",
    "validation_error",
    "yaml_line_of",
]

DEFAULT_POLICY_NAME = "default_policy.yaml"
# Sources whose evidence a task may reference (telemetry feeds cost, latency and reliability, not
# quality). Derived from the source registry, so a new source plugin is accepted here at once.
EVIDENCE_SOURCES = available_sources()
ModelKind = Literal["chat", "embedding"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Weights(_Frozen):
    """Relative weights of the utility components; normalised to sum 1 when scoring."""

    quality: float = Field(default=0.55, ge=0)
    cost: float = Field(default=0.2, ge=0)
    latency: float = Field(default=0.15, ge=0)
    reliability: float = Field(default=0.1, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if self.quality + self.cost + self.latency + self.reliability <= 0:
            raise ValueError("at least one weight must be positive")
        return self


class TokenMix(_Frozen):
    """Expected tokens per call, used to turn per-token prices into a cost per call."""

    input_tokens: int = Field(default=1000, ge=0)
    output_tokens: int = Field(default=300, ge=0)


class Constraints(_Frozen):
    """Hard limits a route must respect (any may be omitted)."""

    max_cost_per_1k: float | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    min_quality: float | None = Field(default=None, ge=0, le=1)


class Price(_Frozen):
    """A price override in USD per million tokens (self-hosted models, negotiated rates)."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)


class Candidate(_Frozen):
    """A model the user can call, keyed by its LiteLLM model name."""

    kind: ModelKind = "chat"
    provider: str | None = None
    # Per evidence source, upstream names that mean this model (exact names, no patterns).
    aliases: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    price: Price | None = None
    latency_prior_ms: float | None = Field(default=None, gt=0)

    @field_validator("aliases", mode="before")
    @classmethod
    def _alias_lists(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (v,) if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("aliases")
    @classmethod
    def _known_sources(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(EVIDENCE_SOURCES))
        if unknown:
            raise ValueError(f"unknown evidence source {unknown[0]!r}; use one of {', '.join(EVIDENCE_SOURCES)}")
        return value


class EvidenceRef(_Frozen):
    """A parsed evidence reference such as ``lmsys:text/coding`` or ``mteb:type/Retrieval``."""

    source: str
    selector: str

    @classmethod
    def parse(cls, text: str) -> EvidenceRef:
        source, sep, selector = text.partition(":")
        if not sep or not selector:
            examples = " or ".join(f"'{c.reference_example}'" for c in load_sources().values() if c.reference_example)
            raise ValueError(f"evidence {text!r} must look like {examples}")
        if source not in EVIDENCE_SOURCES:
            raise ValueError(f"evidence {text!r} names unknown source {source!r}; use {', '.join(EVIDENCE_SOURCES)}")
        get_source(source).check_selector(text, selector)  # each source validates its own references
        return cls(source=source, selector=selector)

    def __str__(self) -> str:
        return f"{self.source}:{self.selector}"


class Task(_Frozen):
    """A task the user routes for: what measures it, what matters, and the order when V2 is off."""

    kind: ModelKind = "chat"
    description: str | None = None
    evidence: tuple[str, ...] = Field(min_length=1)
    weights: Weights = Field(default_factory=Weights)
    token_mix: TokenMix = Field(default_factory=TokenMix)
    constraints: Constraints = Field(default_factory=Constraints)
    static_order: tuple[str, ...] = Field(min_length=1)
    conservative: bool = False
    latency_prior_ms: float | None = Field(default=None, gt=0)
    # How cost enters the utility: "relative" (default) scores cost as ref / (ref + cost) against the task's
    # median candidate; "wtp" (willingness to pay) subtracts weights.cost x the cost per call in USD from the
    # weighted quality, latency and reliability, so weights.cost reads "quality points per USD per call".
    cost_form: Literal["relative", "wtp"] = "relative"

    @field_validator("evidence")
    @classmethod
    def _parse_evidence(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ref in value:
            EvidenceRef.parse(ref)
        return value

    @property
    def evidence_refs(self) -> tuple[EvidenceRef, ...]:
        return tuple(EvidenceRef.parse(ref) for ref in self.evidence)


class Policy(_Frozen):
    """A validated policy. ``source_path`` is where it came from (for messages)."""

    version: Literal[1] = 1
    candidates: dict[str, Candidate] = Field(min_length=1)
    tasks: dict[str, Task] = Field(min_length=1)
    source_path: str = Field(default="<policy>", exclude=True)

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the policy: the same policy hashes the same anywhere."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def candidates_of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(name for name, c in self.candidates.items() if c.kind == kind)

    def matcher(self, source: str) -> NameMatcher:
        """Evidence-name -> candidate for ``source``, explicit aliases first."""
        aliases = {alias: name for name, c in self.candidates.items() for alias in c.aliases.get(source, ())}
        return NameMatcher.build(self.candidates, aliases)


def default_policy_text() -> str:
    return resources.files("recommender_core").joinpath("data", DEFAULT_POLICY_NAME).read_text("utf-8")


def _node_at(root: Any, loc: Sequence[int | str]) -> Any:
    """The deepest YAML node along ``loc`` (a pydantic error location)."""
    import yaml

    node = root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if k.value == str(key):
                    found = v if found is None else found
                    break
            if found is None:
                return node
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def yaml_line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at ``loc`` in ``text`` (None if it cannot be composed)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if root is None:
        return None
    node = _node_at(root, loc)
    return int(node.start_mark.line) + 1


def located_error(path: str, text: str, loc: Sequence[int | str], message: str, *,
                  label: str = "policy") -> PolicyError:
    """A PolicyError naming the file, the line of the YAML node at ``loc``, and the field."""
    line = yaml_line_of(text, loc)
    field = ".".join(str(p) for p in loc) or "(top level)"
    where = f"{path}, line {line}" if line else path
    # The field path holds the policy's own keys (any text, a newline included): one line, escaped.
    return PolicyError(f"Invalid {label} {printable(where)}, field '{printable(field)}': {printable(message)}.",
                       path=path, line=line, field=field)


def validation_error(exc: ValidationError, *, path: str, text: str, label: str = "policy") -> PolicyError:
    """The first pydantic error of ``exc`` as a located PolicyError."""
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    return located_error(path, text, loc, first["msg"][0].lower() + first["msg"][1:], label=label)


def parse_yaml(text: str, *, path: str, label: str = "policy") -> Any:
    """``yaml.safe_load`` whose syntax errors name the file and the line.

    libyaml's safe loader when PyYAML has it (about 10x faster: 0.17 s -> 0.02 s for 500
    candidates); a document it refuses is parsed again by the pure-Python loader, so the error
    (its wording and line) is the same with or without libyaml.
    """
    import yaml

    from .policy_limits import check_yaml_shape

    check_yaml_shape(text, path=path, label=label)  # size, nesting and number limits, before either loader
    try:
        if getattr(yaml, "__with_libyaml__", False):
            try:
                return yaml.load(text, Loader=yaml.CSafeLoader)
            except yaml.YAMLError:
                pass
        return yaml.safe_load(text)
    except (RecursionError, ValueError) as exc:  # a limit check_yaml_shape missed: still one line
        raise PolicyError(f"Invalid {label} {path}: the file is too deeply nested or holds a number too "
                          "large to read.", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"{path}, line {line}" if line else path
        raise PolicyError(f"Invalid {label} {where}: not valid YAML ({problem}).", path=path, line=line) from exc


def read_config_file(path: Path | str, *, noun: str = "Policy") -> str:
    """The text of a policy or case file; a missing or unreadable file is a PolicyError saying so."""
    file = Path(path)
    try:
        return file.read_text("utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(f"{noun} file {file} does not exist.", path=str(file)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{noun} file {file} cannot be read: {exc}.", path=str(file)) from exc


def _cross_check(policy: Policy) -> tuple[tuple[int | str, ...], str] | None:
    for task_name, task in policy.tasks.items():
        for i, model in enumerate(task.static_order):
            if model not in policy.candidates:
                return ("tasks", task_name, "static_order", i), (
                    f"'{model}' is not a candidate; candidates are {', '.join(sorted(policy.candidates))}"
                )
            if policy.candidates[model].kind != task.kind:
                return ("tasks", task_name, "static_order", i), (
                    f"'{model}' is a {policy.candidates[model].kind} model but the task is {task.kind}"
                )
        if len(set(task.static_order)) != len(task.static_order):
            return ("tasks", task_name, "static_order"), "lists a model more than once"
        wanted = [name for name, plugin in load_sources().items() if task.kind in plugin.task_kinds]
        for i, ref in enumerate(task.evidence_refs):
            if ref.source not in wanted:
                article = "an" if task.kind[:1] in "aeiou" else "a"
                return ("tasks", task_name, "evidence", i), (
                    f"{article} {task.kind} task takes {' or '.join(wanted)} evidence, not {ref.source}"
                )
    seen: dict[tuple[str, str], str] = {}
    for name, cand in policy.candidates.items():
        for source, aliases in cand.aliases.items():
            for alias in aliases:
                other = seen.setdefault((source, alias.lower()), name)
                if other != name:
                    return ("candidates", name, "aliases", source), (
                        f"alias '{alias}' is already used by candidate '{other}'"
                    )
    return None


def parse_policy(text: str, *, path: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``; raise PolicyError naming ``path``, the line and the field."""
    data = parse_yaml(text, path=path)
    if not isinstance(data, dict):
        raise located_error(path, text, (), "the file must be a mapping with 'candidates' and 'tasks'")
    try:
        policy = Policy.model_validate({**data, "source_path": path})
    except ValidationError as exc:
        raise validation_error(exc, path=path, text=text) from exc
    from .policy_limits import check_bounds

    problem = _cross_check(policy) or check_bounds(policy)
    if problem is not None:
        raise located_error(path, text, problem[0], problem[1])
    return policy


def load_policy(path: Path | str | None = None) -> Policy:
    """Load the policy at ``path``, or the default shipped in the package when it is None."""
    if path is None:
        return parse_policy(default_policy_text(), path=f"<default {DEFAULT_POLICY_NAME}>")
    return parse_policy(read_config_file(path), path=str(Path(path)))
