"""What a policy's candidates map to in the stored evidence (``recsys policy check``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from .evidence import evidence_names, evidence_selectors, unmapped_tasks
from .policy import Policy
from .store import Store

__all__ = ["CandidateMapping", "PolicyReport", "UnmatchedName", "UnmatchedReference", "check_policy"]


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
class UnmatchedReference:
    """A task's evidence reference that finds no row in the current evidence of its source."""

    task: str
    reference: str
    nearest: tuple[str, ...]  # existing references of the same source and shape, closest first


@dataclass(frozen=True)
class PolicyReport:
    policy_path: str
    policy_hash: str
    candidates: tuple[CandidateMapping, ...]
    unmatched: tuple[UnmatchedName, ...]
    # MTEB tasks of the current evidence missing from the task map: regenerate the map to type them.
    unmapped_tasks: tuple[str, ...] = ()
    # Evidence references that match nothing stored (a typo, or a category the source does not have).
    unmatched_references: tuple[UnmatchedReference, ...] = ()

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
                        tuple(unmapped_tasks(store)), unmatched_references(policy, evidence_selectors(store)))


def unmatched_references(policy: Policy, stored: dict[str, set[str]]) -> tuple[UnmatchedReference, ...]:
    """Every task's evidence reference whose source has current evidence but none under that selector,
    with the nearest existing selectors of the same shape (``type/``, ``task/`` or a category).

    A source with no current evidence is left out: nothing can match before its first ingest.
    """
    import difflib

    found: list[UnmatchedReference] = []
    for task_name, task in policy.tasks.items():
        for ref in task.evidence_refs:
            selectors = stored.get(ref.source)
            if not selectors or ref.selector in selectors:
                continue
            prefix = ref.selector.split("/", 1)[0] + "/" if ref.selector.startswith(("type/", "task/")) else ""
            same_shape = sorted(s for s in selectors if s.startswith(prefix) and (
                prefix or not s.startswith(("type/", "task/"))))
            nearest = difflib.get_close_matches(ref.selector, same_shape, n=3, cutoff=0.0)
            found.append(UnmatchedReference(task_name, str(ref), tuple(f"{ref.source}:{s}" for s in nearest)))
    return tuple(found)
