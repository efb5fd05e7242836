"""Model identity: which upstream evidence name means which of the user's candidates.

Evidence keeps upstream names verbatim. A name matches a candidate when, ignoring case, one equals
the other after dropping leading ``prefix/`` segments from it (``openai/gpt-4o`` ~ ``gpt-4o``,
``text-embedding-3-small`` ~ ``openai/text-embedding-3-small``,
``huggingface/BAAI/bge-base-en-v1.5`` ~ ``BAAI/bge-base-en-v1.5``), or when the policy lists it as
an explicit alias. Nothing looser is ever applied: ``gpt-4o-mini`` never becomes ``gpt-4o``.
Suggestions for near names are only offered, never used.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["NameMatcher", "name_forms", "names_match"]


def name_forms(name: str) -> tuple[str, ...]:
    """The name, lower-cased, and every suffix of it that starts after a ``/``."""
    lowered = name.strip().lower()
    parts = lowered.split("/")
    return tuple("/".join(parts[i:]) for i in range(len(parts)))


def names_match(a: str, b: str) -> bool:
    """True when one name equals the other after dropping leading path segments (case-insensitive)."""
    forms_a, forms_b = name_forms(a), name_forms(b)
    return forms_a[0] in forms_b or forms_b[0] in forms_a


@dataclass(frozen=True)
class NameMatcher:
    """Maps evidence names of one source to candidates.

    ``aliases`` maps a lower-cased evidence name to a candidate; it wins over automatic matches.
    """

    candidates: tuple[str, ...]
    aliases: Mapping[str, str]

    @classmethod
    def build(cls, candidates: Iterable[str], aliases: Mapping[str, str]) -> NameMatcher:
        return cls(tuple(candidates), {k.strip().lower(): v for k, v in aliases.items()})

    def candidate_for(self, evidence_name: str) -> str | None:
        explicit = self.aliases.get(evidence_name.strip().lower())
        if explicit is not None:
            return explicit
        matches = [c for c in self.candidates if names_match(c, evidence_name)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            # Prefer the candidate whose own name is the longest form in common: the most specific.
            exact = [c for c in matches if c.strip().lower() == evidence_name.strip().lower()]
            return exact[0] if len(exact) == 1 else None
        return None

    def suggestions(self, evidence_name: str, *, limit: int = 3) -> list[str]:
        """Candidates whose names look close to ``evidence_name``: for a human to turn into aliases."""
        short = name_forms(evidence_name)[-1]
        by_short = {name_forms(c)[-1]: c for c in self.candidates}
        close = difflib.get_close_matches(short, list(by_short), n=limit, cutoff=0.6)
        return [by_short[c] for c in close]
