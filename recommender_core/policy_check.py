"""What a policy's candidates map to in the stored evidence (``recsys policy check``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from .evidence import evidence_names, unmapped_tasks
from .policy import Policy
from .store import Store

__all__ = ["CandidateMapping", "PolicyReport", "UnmatchedName", "check_policy"]


@dataclass(frozen=True)
class CandidateMapping:
    name: str
    kind: str
    evidence_names: tuple[str, ...]  # "source:upstream name"


@dataclass(frozen=True)
class UnmatchedName:
    source: str
    name: str
    suggestions: tuple[str, ...]  # never applied automatically


@dataclass(frozen=True)
class PolicyReport:
    policy_path: str
    policy_hash: str
    candidates: tuple[CandidateMapping, ...]
    unmatched: tuple[UnmatchedName, ...]
    # MTEB tasks of the current evidence missing from the task map: regenerate the map to type them.
    unmapped_tasks: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_policy(store: Store, policy: Policy) -> PolicyReport:
    """Map every current evidence name to a candidate, list the ones that map to none, and the MTEB tasks
    the task map does not know."""
    mapped: dict[str, list[str]] = defaultdict(list)
    unmatched: list[UnmatchedName] = []
    for source, names in evidence_names(store).items():
        matcher = policy.matcher(source)
        for name in names:
            candidate = matcher.candidate_for(name)
            if candidate is None:
                unmatched.append(UnmatchedName(source, name, tuple(matcher.suggestions(name))))
            else:
                mapped[candidate].append(f"{source}:{name}")
    candidates = tuple(
        CandidateMapping(name=name, kind=c.kind, evidence_names=tuple(mapped.get(name, ())))
        for name, c in policy.candidates.items()
    )
    return PolicyReport(policy.source_path, policy.hash, candidates, tuple(unmatched),
                        tuple(unmapped_tasks(store)))
