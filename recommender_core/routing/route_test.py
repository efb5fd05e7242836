"""``recsys route-test``: declarative routing expectations for CI (docs/route-tests.md).

A case file is YAML ``cases: [...]``; each case names a task, optional ``strategy`` and
``constraints``, and ``expect`` with any subset of ``primary``, ``primary_in``,
``fallbacks_start_with``, ``excludes`` (never routed to), ``no_candidate: true`` (route must find no
candidate) and ``golden`` (a decision JSON file, relative to the case file, compared whole;
``update_golden`` rewrites it). An invalid file raises ``PolicyError`` naming file, line and field.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import NoCandidateError, PolicyError, RecsysError
from ..policy import Constraints, Policy, located_error, parse_yaml, read_config_file, validation_error
from .decision import RouteDecision, route
from .strategies import STRATEGIES
from .table import UtilityTable

__all__ = ["CaseResult", "RouteTestCase", "RouteTestReport", "load_cases", "run_cases"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Expectations(_Frozen):
    primary: str | None = None
    primary_in: tuple[str, ...] | None = None
    fallbacks_start_with: tuple[str, ...] | None = None
    excludes: tuple[str, ...] | None = None
    no_candidate: bool = False
    golden: str | None = None


class RouteTestCase(_Frozen):
    name: str = Field(min_length=1)
    task: str = Field(min_length=1)
    strategy: str = "utility"
    constraints: Constraints = Field(default_factory=Constraints)
    expect: Expectations = Field(default_factory=Expectations)

    @model_validator(mode="after")
    def _known_strategy(self) -> RouteTestCase:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}'; use one of {', '.join(STRATEGIES)}")
        return self


class _CaseFile(_Frozen):
    cases: tuple[RouteTestCase, ...] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    name: str
    task: str
    passed: bool
    failures: tuple[str, ...]
    decision: dict[str, Any] | None
    # wall time of the route() call, for the recommendation latency histogram the job pushes
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "passed": self.passed, "failures": list(self.failures),
                "decision": self.decision, "seconds": self.seconds}


@dataclass(frozen=True)
class RouteTestReport:
    path: str
    results: tuple[CaseResult, ...]

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.passed)

    def to_json(self) -> dict[str, Any]:
        return {"cases_file": self.path, "total": len(self.results), "failed": self.failed,
                "cases": [r.to_json() for r in self.results]}

    def junit_xml(self) -> str:
        """JUnit XML as CI systems (GitLab, Jenkins, GitHub reporters) render it."""
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 f'<testsuites tests="{len(self.results)}" failures="{self.failed}">',
                 f'  <testsuite name={quoteattr("recsys route-test " + self.path)} tests="{len(self.results)}" '
                 f'failures="{self.failed}" errors="0" skipped="0">']
        for r in self.results:
            head = f'    <testcase classname={quoteattr("route-test." + r.task)} name={quoteattr(r.name)}'
            if r.passed:
                lines.append(head + "/>")
            else:
                lines.append(head + ">")
                lines.append(f'      <failure message={quoteattr(r.failures[0])}>'
                             f'{escape(chr(10).join(r.failures))}</failure>')
                lines.append("    </testcase>")
        lines += ["  </testsuite>", "</testsuites>", ""]
        return "\n".join(lines)


def load_cases(path: str | Path) -> tuple[RouteTestCase, ...]:
    """Parse and validate a case file; PolicyError names the file, the line and the field."""
    file = Path(path)
    text = read_config_file(file, noun="Route-test")
    data = parse_yaml(text, path=str(file), label="route-test file")
    if not isinstance(data, dict):
        raise PolicyError(f"Invalid route-test file {file}, line 1, field 'cases': the file must be a mapping "
                          "with a 'cases' list.", path=str(file), line=1, field="cases")
    try:
        return _CaseFile.model_validate(data).cases
    except ValidationError as exc:
        raise validation_error(exc, path=str(file), text=text, label="route-test file") from exc


def _check(case: RouteTestCase, decision: RouteDecision, base: Path, update_golden: bool) -> list[str]:
    e = case.expect
    failures = []
    models = decision.models
    if e.no_candidate:
        failures.append(f"expected no candidate, got primary {decision.primary!r}")
    if e.primary is not None and decision.primary != e.primary:
        failures.append(f"primary: expected {e.primary!r}, got {decision.primary!r}")
    if e.primary_in is not None and decision.primary not in e.primary_in:
        failures.append(f"primary: expected one of {list(e.primary_in)}, got {decision.primary!r}")
    if e.fallbacks_start_with is not None:
        got = list(decision.fallbacks[:len(e.fallbacks_start_with)])
        if got != list(e.fallbacks_start_with):
            failures.append(f"fallbacks: expected to start with {list(e.fallbacks_start_with)}, "
                            f"got {list(decision.fallbacks)}")
    if e.excludes is not None:
        routed = [m for m in e.excludes if m in models]
        if routed:
            failures.append(f"excludes: expected {routed} never to be routed to, got order {list(models)}")
    if e.golden is not None:
        golden = base / e.golden
        current = decision.to_json()
        if update_golden:
            golden.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", "utf-8")
        else:
            try:
                expected = json.loads(golden.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                failures.append(f"golden: cannot read {golden} ({exc}); run with --update-golden to write it")
            else:
                if expected != current:
                    failures.append(_golden_diff(golden, expected, current))
    return failures


def _golden_diff(path: Path, expected: dict[str, Any], current: dict[str, Any]) -> str:
    import difflib

    a = json.dumps(expected, indent=2, sort_keys=True).splitlines()
    b = json.dumps(current, indent=2, sort_keys=True).splitlines()
    diff = "\n".join(difflib.unified_diff(a, b, fromfile=str(path), tofile="decision", lineterm="", n=1))
    return f"golden: decision differs from {path}:\n{diff}"


def run_cases(
    path: str | Path,
    *,
    policy: Policy,
    scores: UtilityTable | None,
    v2_enabled: bool,
    store: Any = None,
    update_golden: bool = False,
) -> RouteTestReport:
    """Run every case of the file at ``path`` and return the report (it never raises for a failed case)."""
    cases = load_cases(path)
    for i, case in enumerate(cases):
        if case.task not in policy.tasks:
            # the file is invalid (exit 1, naming the file, line and field), not a failed expectation
            raise located_error(str(path), read_config_file(path, noun="Route-test"), ("cases", i, "task"),
                                f"unknown task '{case.task}'; tasks in the policy: {', '.join(sorted(policy.tasks))}",
                                label="route-test file")
    base = Path(path).parent
    results = []
    for case in cases:
        c = case.constraints
        started = time.perf_counter()
        try:
            decision = route(case.task, max_cost_per_1k=c.max_cost_per_1k, max_latency_ms=c.max_latency_ms,
                             min_quality=c.min_quality, strategy=case.strategy, scores=scores,
                             v2_enabled=v2_enabled, store=store, policy=policy)
        except NoCandidateError as exc:
            ok = case.expect.no_candidate
            results.append(CaseResult(case.name, case.task, ok, () if ok else (f"no candidate: {exc}",), None,
                                      time.perf_counter() - started))
            continue
        except RecsysError as exc:
            results.append(CaseResult(case.name, case.task, False, (f"{type(exc).__name__}: {exc}",), None,
                                      time.perf_counter() - started))
            continue
        elapsed = time.perf_counter() - started
        failures = _check(case, decision, base, update_golden)
        results.append(CaseResult(case.name, case.task, not failures, tuple(failures), decision.to_json(),
                                  elapsed))
    return RouteTestReport(path=str(path), results=tuple(results))
