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
from functools import cached_property

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
        matches = self._matching(evidence_name)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            # Prefer the candidate whose own name is the longest form in common: the most specific.
            exact = [c for c in matches if c.strip().lower() == evidence_name.strip().lower()]
            return exact[0] if len(exact) == 1 else None
        return None

    @cached_property
    def _forms(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Candidate positions by their full lower-cased name, and by every form of their name."""
        by_name: dict[str, list[int]] = {}
        by_form: dict[str, list[int]] = {}
        for i, candidate in enumerate(self.candidates):
            forms = name_forms(candidate)
            by_name.setdefault(forms[0], []).append(i)
            for form in dict.fromkeys(forms):
                by_form.setdefault(form, []).append(i)
        return by_name, by_form

    def _matching(self, evidence_name: str) -> list[str]:
        """The candidates ``names_match`` accepts for ``evidence_name``, in candidate order, found through
        an index of name forms instead of a comparison with every candidate (500 candidates x 500
        evidence names took 1-3 s of a ``score``)."""
        by_name, by_form = self._forms
        forms = name_forms(evidence_name)
        # names_match(c, e): c's full name is a form of e, or e's full name is a form of c.
        found = set(by_form.get(forms[0], ()))
        for form in dict.fromkeys(forms):
            found.update(by_name.get(form, ()))
        return [self.candidates[i] for i in sorted(found)]

    def suggestions(self, evidence_name: str, *, limit: int = 3) -> list[str]:
        """Candidates whose names look close to ``evidence_name``: for a human to turn into aliases."""
        short = name_forms(evidence_name)[-1]
        by_short = {name_forms(c)[-1]: c for c in self.candidates}
        close = difflib.get_close_matches(short, list(by_short), n=limit, cutoff=0.6)
        return [by_short[c] for c in close]
