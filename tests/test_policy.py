"""The policy format, its loader's errors, the default policy, and model identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender_core.errors import PolicyError
from recommender_core.identity import NameMatcher, name_forms, names_match
from recommender_core.policy import load_policy, parse_policy

MINIMAL = """\
version: 1
candidates:
  gpt-4o:
    aliases: {lmsys: gpt-4o-2024-08-06}
  gpt-4o-mini: {}
tasks:
  chat:
    evidence: [lmsys:text/overall]
    static_order: [gpt-4o, gpt-4o-mini]
"""


def test_default_policy_is_realistic() -> None:
    policy = load_policy()
    chat = policy.candidates_of_kind("chat")
    embedding = policy.candidates_of_kind("embedding")
    assert len(chat) >= 8 and len(embedding) >= 4
    assert len({policy.candidates[c].provider for c in chat}) >= 3
    required = {"chat", "coding", "math", "creative_writing", "long_context", "retrieval", "sts",
                 "classification", "clustering"}
    assert required <= set(policy.tasks)
    assert len(policy.hash) == 64 and policy.hash == load_policy().hash


def test_default_policy_chat_candidates_are_priced_by_litellm() -> None:
    """Every chat candidate without a price override exists in the price table shipped in litellm."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    table = json.loads((Path(spec.origin).parent / "model_prices_and_context_window_backup.json").read_text())
    policy = load_policy()
    for name, candidate in policy.candidates.items():
        if candidate.price is None:
            assert name in table, f"{name} is not in litellm's price table"


def test_minimal_policy_and_aliases() -> None:
    policy = parse_policy(MINIMAL, path="p.yaml")
    assert policy.candidates["gpt-4o"].aliases == {"lmsys": ("gpt-4o-2024-08-06",)}
    matcher = policy.matcher("lmsys")
    assert matcher.candidate_for("gpt-4o-2024-08-06") == "gpt-4o"
    assert matcher.candidate_for("GPT-4O") == "gpt-4o"
    assert matcher.candidate_for("gpt-4o-mini-2024-07-18") is None  # never a fuzzy match
    assert policy.hash != parse_policy(MINIMAL.replace("gpt-4o-2024-08-06", "gpt-4o-2024-05-13")).hash


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    (MINIMAL.replace("static_order: [gpt-4o, gpt-4o-mini]", "static_order: [gpt-4o, gpt-5]"),
     9, "tasks.chat.static_order.1", "'gpt-5' is not a candidate"),
    (MINIMAL.replace("[lmsys:text/overall]", "[arena:overall]"), 8, "tasks.chat.evidence",
     "names unknown source 'arena'"),
    (MINIMAL.replace("  gpt-4o-mini: {}", "  gpt-4o-mini: {kind: vision}"), 5, "candidates.gpt-4o-mini.kind",
     "input should be 'chat' or 'embedding'"),
    (MINIMAL.replace("version: 1", "version: 2"), 1, "version", "input should be 1"),
    (MINIMAL + "    weights: {quality: -1}\n", 10, "tasks.chat.weights.quality", "greater than or equal to 0"),
    (MINIMAL + "    colour: blue\n", 10, "tasks.chat.colour", "extra inputs are not permitted"),
    (MINIMAL.replace("gpt-4o-mini: {}", "gpt-4o-mini: {aliases: {lmsys: gpt-4o-2024-08-06}}"), 5,
     "candidates.gpt-4o-mini.aliases.lmsys", "already used by candidate 'gpt-4o'"),
])
def test_policy_errors_name_file_line_and_field(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, path="team/policy.yaml")
    error = info.value
    assert (error.path, error.line, error.field) == ("team/policy.yaml", line, field)
    assert str(error).startswith(f"Invalid policy team/policy.yaml, line {line}, field '{field}': ")
    assert message in str(error)


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(PolicyError, match=r"^Invalid policy p.yaml, line 3: not valid YAML"):
        parse_policy("version: 1\ncandidates:\n  a: {kind: chat]\ntasks: {}\n", path="p.yaml")


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def test_embedding_task_needs_mteb_evidence() -> None:
    text = MINIMAL.replace("gpt-4o-mini: {}", "gpt-4o-mini: {}\n  te3: {kind: embedding}") + (
        "  search:\n    kind: embedding\n    evidence: [lmsys:text/overall]\n    static_order: [te3]\n")
    with pytest.raises(PolicyError, match="an embedding task takes mteb or outcomes evidence, not lmsys"):
        parse_policy(text)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("openai/gpt-4o", "gpt-4o", True),
    ("text-embedding-3-small", "openai/text-embedding-3-small", True),
    ("huggingface/BAAI/bge-base-en-v1.5", "BAAI/bge-base-en-v1.5", True),
    ("gpt-4o-mini", "gpt-4o", False),
    ("gpt-4o", "gpt-4o-2024-08-06", False),
    ("org-a/model", "org-b/model", False),
    ("GEMINI/Gemini-2.5-Pro", "gemini-2.5-pro", True),
])
def test_names_match(a: str, b: str, expected: bool) -> None:
    assert names_match(a, b) is expected
    assert names_match(b, a) is expected


def test_name_forms() -> None:
    assert name_forms("HuggingFace/BAAI/bge") == ("huggingface/baai/bge", "baai/bge", "bge")


def test_matcher_prefers_explicit_alias_and_refuses_ambiguity() -> None:
    matcher = NameMatcher.build(["a/model", "b/model"], {"vendor-model-v2": "b/model"})
    assert matcher.candidate_for("model") is None  # two candidates could mean it: no guess
    assert matcher.candidate_for("Vendor-Model-V2") == "b/model"
    assert matcher.candidate_for("a/model") == "a/model"
    assert "a/model" in NameMatcher.build(["a/model"], {}).suggestions("a/modell")


def test_policy_check_maps_stored_evidence(store: object) -> None:
    from recommender_core.policy_check import check_policy
    from recommender_core.store import Store
    from recommender_core.store.runs import ingest_job
    from recommender_core.store.tables import BenchmarkEvidence

    assert isinstance(store, Store)
    with ingest_job(store, job="ingest-lmsys", source="lmsys") as handle:
        with store.session() as session:
            for name in ["gpt-4o-2024-08-06", "GPT-4o-mini", "gpt-4o-mini-2024-07-18"]:
                session.add(BenchmarkEvidence(run_id=handle.run_id, source="lmsys", model=name,
                                              category="text/overall", value=1200.0))
    report = check_policy(store, parse_policy(MINIMAL, path="p.yaml"))
    mapped = {c.name: c.evidence_names for c in report.candidates}
    assert mapped == {"gpt-4o": ("lmsys:gpt-4o-2024-08-06",), "gpt-4o-mini": ("lmsys:GPT-4o-mini",)}
    assert [(u.source, u.name) for u in report.unmatched] == [("lmsys", "gpt-4o-mini-2024-07-18")]
    assert "gpt-4o-mini" in report.unmatched[0].suggestions
