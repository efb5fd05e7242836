"""The fast build of ``score`` and ``snapshot``: indexes and caches that must give exactly what the
plain code gives (issue: interactive at any traffic volume)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from recommender_core.identity import NameMatcher, names_match

_SEGMENT = st.sampled_from(["openai", "OpenAI", "gpt-4o", "gpt-4o-mini", "baai", "bge", " x ", "a", "A/b", ""])
_NAME = st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join)


@settings(max_examples=300, deadline=None)
@given(candidates=st.lists(_NAME, max_size=8), evidence=_NAME, aliases=st.dictionaries(_NAME, _NAME, max_size=2))
def test_the_indexed_matcher_answers_as_comparing_every_candidate(
        candidates: list[str], evidence: str, aliases: dict[str, str]) -> None:
    matcher = NameMatcher.build(candidates, aliases)
    assert matcher._matching(evidence) == [c for c in candidates if names_match(c, evidence)]
    explicit = matcher.aliases.get(evidence.strip().lower())
    plain = [c for c in candidates if names_match(c, evidence)]
    exact = [c for c in plain if c.strip().lower() == evidence.strip().lower()]
    expected = explicit if explicit is not None else (
        plain[0] if len(plain) == 1 else (exact[0] if len(plain) > 1 and len(exact) == 1 else None))
    assert matcher.candidate_for(evidence) == expected
