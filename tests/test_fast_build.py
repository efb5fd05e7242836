"""The fast build of ``score`` and ``snapshot``: indexes and caches that must give exactly what the
plain code gives (issue: interactive at any traffic volume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender_core.errors import ScoringError
from recommender_core.identity import NameMatcher, names_match
from recommender_core.scoring.prices import load_price_table

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


def test_the_price_table_is_parsed_once_per_version_of_its_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}))
    first = load_price_table(path)
    assert load_price_table(path) is first  # unchanged file: the parsed table is kept
    assert first.prices["m"].input_per_token == 1e-6
    # A new version of the file (an upgraded litellm) is parsed again, in the same process.
    path.write_text(json.dumps({"m": {"input_cost_per_token": 3e-6, "output_cost_per_token": 2e-6},
                                "n": {"input_cost_per_token": 5e-6}}))
    second = load_price_table(path)
    assert second is not first
    assert second.prices["m"].input_per_token == 3e-6 and second.prices["n"].output_per_token == 0.0
    path.unlink()
    with pytest.raises(ScoringError, match="cannot be read"):
        load_price_table(path)


@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
def test_a_nul_byte_is_found_in_any_column_whatever_the_other_values(value: str) -> None:
    """``copy_rows`` refuses a NUL before the COPY; the check reads whole columns at once, so a column
    mixing strings with None and numbers must still be searched."""
    pytest.importorskip("psycopg")
    from recommender_core.store.bulk import _refuse_nul

    clean = [(1, "m", None, 0.5, True), (2, "n", "text", 1.5, False)]
    _refuse_nul("COPY t", ("id", "model", "reason", "value", "flag"), clean)  # nothing to refuse
    bad = [*clean, (3, "o", value, 2.5, False)]
    with pytest.raises(sa.exc.DataError, match="row 3 of the write holds a NUL byte in 'reason'"):
        _refuse_nul("COPY t", ("id", "model", "reason", "value", "flag"), bad)
