"""The shared HTTP client and the Source template method (lock, unchanged, threshold, atomic write)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from recommender_core.clock import FixedClock
from recommender_core.config import Settings
from recommender_core.errors import SourceError, SourceHTTPError, SourceSchemaError, SourceTimeout
from recommender_core.policy import Task, load_policy
from recommender_core.sources.base import (
    Batch,
    EvidenceRecord,
    EvidenceValue,
    IngestOptions,
    PreviousRun,
    Quality,
    Source,
)
from recommender_core.sources.http import EXCEPTION_MAP, HttpSettings, SourceClient, parse_retry_after
from recommender_core.store import Store
from recommender_core.store.runs import list_runs
from recommender_core.store.tables import BenchmarkEvidence, RunStatus

FAST = HttpSettings(max_attempts=3, backoff_base=0.01)


def client(handler: object, **kwargs: object) -> tuple[SourceClient, list[float]]:
    sleeps: list[float] = []
    c = SourceClient(source="test", transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
                     settings=FAST, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]
    return c, sleeps


def test_every_httpx_exception_is_mapped() -> None:
    mapped = tuple(t for t, _, _ in EXCEPTION_MAP)
    for _, cls in inspect.getmembers(httpx, inspect.isclass):
        if issubclass(cls, Exception) and cls.__module__.startswith("httpx"):
            assert issubclass(cls, mapped), cls


def test_429_then_success_honours_retry_after_and_sends_token_and_user_agent() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"})
        return httpx.Response(200, json={"sha": "abc"})

    c, sleeps = client(handler, token="hf_secret")
    with c:
        assert c.get_json("https://huggingface.co/api/datasets/x") == {"sha": "abc"}
    assert sleeps == [7.0]
    assert calls[0].headers["authorization"] == "Bearer hf_secret"
    assert calls[0].headers["user-agent"].startswith("recsys/")


def test_500_until_attempts_run_out() -> None:
    c, sleeps = client(lambda request: httpx.Response(500))
    with c, pytest.raises(SourceHTTPError) as info:
        c.get("https://hub.invalid/x")
    assert info.value.status_code == 500 and len(sleeps) == 2
    assert str(info.value) == "test: https://hub.invalid/x answered HTTP 500; run again later."


def test_retry_after_beyond_the_limit_fails_at_once() -> None:
    c, sleeps = client(lambda request: httpx.Response(429, headers={"Retry-After": "3600"}))
    with c, pytest.raises(SourceHTTPError, match="rate limited for 3600 s"):
        c.get("https://hub.invalid/x")
    assert sleeps == []


def test_timeout_and_reset_are_retried_then_translated() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    c, sleeps = client(timeout)
    with c, pytest.raises(SourceTimeout, match="timed out"):
        c.get("https://hub.invalid/x")
    assert len(sleeps) == 2

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("Connection reset by peer", request=request)

    c, _ = client(reset)
    with c, pytest.raises(SourceError, match="dropped the connection"):
        c.get("https://hub.invalid/x")


def test_truncated_body_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "100"}, content=b"PAR1 short")

    c, _ = client(handler)
    with c, pytest.raises(SourceError, match=r"was truncated \(10 of 100 bytes\)"):
        c.get("https://hub.invalid/file.parquet")


def test_html_where_json_was_expected() -> None:
    c, _ = client(lambda r: httpx.Response(200, headers={"Content-Type": "text/html"}, text="<html>login</html>"))
    with c, pytest.raises(SourceError, match="returned an HTML page where JSON was expected"):
        c.get_json("https://hub.invalid/api")


def test_json_nested_too_deep_is_a_clear_error() -> None:
    c, _ = client(lambda r: httpx.Response(200, headers={"Content-Type": "application/json"},
                                           content=b"[" * 100_000 + b"]" * 100_000))
    with c, pytest.raises(SourceError, match=r"returned non-JSON content \(application/json\) where JSON"):
        c.get_json("https://hub.invalid/api")


def test_redirects_are_followed_and_github_rate_limit_explained() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hub.invalid":
            return httpx.Response(302, headers={"Location": "https://cdn.invalid/blob?X-Amz-Signature=s"})
        return httpx.Response(200, content=b"data")

    c, _ = client(handler)
    with c:
        response = c.get("https://hub.invalid/resolve/sha/file")
    assert response.content == b"data" and response.request.url.host == "cdn.invalid"

    reset = int(datetime(2026, 11, 26, 4, 0, tzinfo=UTC).timestamp())
    c, _ = client(lambda r: httpx.Response(403, headers={"x-ratelimit-remaining": "0",
                                                          "x-ratelimit-reset": str(reset)}))
    with c, pytest.raises(SourceHTTPError, match="exhausted until 04:00 UTC; set GITHUB_TOKEN"):
        c.get("https://api.github.invalid/repos/x")


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "12"}, now=now) == 12
    assert parse_retry_after({"retry-after": "Thu, 26 Nov 2026 03:00:30 GMT"}, now=now) == 30
    assert parse_retry_after({"retry-after": "Thu, 26 Nov 2026 02:00:00 GMT"}, now=now) == 0  # already past
    assert parse_retry_after({"ratelimit": '"api";r=0;t=55'}, now=now) == 55
    assert parse_retry_after({}, now=now) is None


def test_retry_after_as_a_date_is_measured_on_the_clients_clock() -> None:
    """An HTTP-date Retry-After is compared with the injected clock, not the machine's."""
    responses = iter([httpx.Response(503, headers={"Retry-After": "Thu, 26 Nov 2026 03:00:45 GMT"}),
                      httpx.Response(200, json={"ok": True})])
    c, sleeps = client(lambda request: next(responses),
                       clock=FixedClock(datetime(2026, 11, 26, 3, 0, 0, tzinfo=UTC)))
    with c:
        assert c.get_json("https://hub.invalid/x") == {"ok": True}
    assert sleeps == [45.0]


class FakeSource(Source):
    """A source whose version and rows the test controls."""

    name = "fake"
    job = "ingest-fake"

    def __init__(self, version: str, records: list[EvidenceRecord], rejected: int = 0,
                 fail: Exception | None = None) -> None:
        super().__init__(settings=Settings.load(), policy=load_policy())
        self.version, self.records, self.rejected, self.fail = version, records, rejected, fail
        self.loads = 0

    @classmethod
    def quality(cls, ref: str, selector: str, rows: Sequence[EvidenceValue], names: Sequence[str],
                task: Task) -> Quality:
        return Quality({}, dict.fromkeys(names, "fake evidence measures nothing"))

    def resolve_version(self, options: IngestOptions) -> str:
        return self.version

    def load(self, version: str, options: IngestOptions, previous: PreviousRun | None = None) -> Batch:
        self.loads += 1
        if self.fail is not None:
            raise self.fail
        batch = Batch(records=list(self.records))
        if self.rejected:
            batch.reject("rating is not a number", self.rejected)
        return batch


def rows(n: int, base: float = 1000.0) -> list[EvidenceRecord]:
    return [EvidenceRecord(model=f"m{i}", category="text/overall", value=base + i, lower=base + i - 5,
                           upper=base + i + 5, samples=100) for i in range(n)]


def stored(store: Store) -> dict[str, float]:
    from recommender_core.evidence import current_run_ids

    run = current_run_ids(store).get("fake")
    with store.session() as s:
        return {e.model: e.value for e in s.exec(select(BenchmarkEvidence).where(BenchmarkEvidence.run_id == run))}


def test_source_template_success_unchanged_force_and_failures(store: Store) -> None:
    first = FakeSource("v1", rows(40)).run(store, IngestOptions())
    assert (first.status, first.rows_accepted) == ("success", 40)
    assert stored(store)["m3"] == 1003.0

    again = FakeSource("v1", rows(40, base=0))
    assert again.run(store, IngestOptions()).status == RunStatus.UNCHANGED and again.loads == 0
    forced = FakeSource("v1", rows(40, base=2000)).run(store, IngestOptions(force=True))
    assert forced.status == "success" and stored(store)["m3"] == 2003.0

    # 3 of 43 rejected (7%) > 5%: fails, nothing written, previous evidence stays current.
    with pytest.raises(SourceSchemaError, match=r"3 of 43 rows were rejected \(rating is not a number: 3\)"):
        FakeSource("v2", rows(40, base=0), rejected=3).run(store, IngestOptions())
    with pytest.raises(SourceHTTPError):
        FakeSource("v3", [], fail=SourceHTTPError("fake: HTTP 500", status_code=500)).run(store, IngestOptions())
    assert stored(store)["m3"] == 2003.0
    runs = list_runs(store, source="fake")
    assert [r.status for r in runs[:2]] == [RunStatus.FAILED, RunStatus.FAILED]
    assert runs[1].rows_rejected == 3 and runs[0].error == "fake: HTTP 500"

    # 2 of 42 rejected (4.8%) is within the threshold: accepted, rejections counted.
    ok = FakeSource("v4", rows(40), rejected=2).run(store, IngestOptions())
    assert (ok.rows_accepted, ok.rows_rejected, ok.rejected_reasons) == (40, 2, {"rating is not a number": 2})


def test_dry_run_writes_nothing(store: Store) -> None:
    result = FakeSource("v1", rows(5)).run(store, IngestOptions(dry_run=True))
    assert result.status == "dry-run" and result.rows_accepted == 5 and result.run_id is None
    assert list_runs(store, source="fake") == []


def test_empty_source_is_refused(store: Store) -> None:
    with pytest.raises(SourceSchemaError, match=r"holds no rows; nothing was written. Check that the mirror \(or "
                       r"RECSYS_FAKE_URL\) points at fake data"):
        FakeSource("v1", []).run(store, IngestOptions())


def test_registry_lists_every_plugin_and_unknown_names_say_what_exists() -> None:
    from recommender_core.errors import ConfigError
    from recommender_core.sources import available_sources, get_source, load_sources

    registry = load_sources()
    assert set(registry) == set(available_sources()) == {"lmsys", "mteb"}
    from recommender_core.diagnostics.metrics import CRONJOB_COMMANDS

    for name, cls in registry.items():
        assert cls.name == name and cls.job == f"ingest-{name}"
        assert (cls.job in CRONJOB_COMMANDS) == cls.cronjob, f"{name}: a CronJob source needs its deployment"
    with pytest.raises(ConfigError, match=r"^Unknown source 'lmsy'\. Available sources: lmsys, mteb\.$"):
        get_source("lmsy")


def test_one_git_helper_reads_clones_worktrees_packed_refs_and_detached_heads(tmp_path: Path) -> None:
    from recommender_core.sources.base import git_head

    main, packed, detached = "a" * 40, "b" * 40, "c" * 40
    clone = tmp_path / "clone"
    (clone / ".git" / "refs" / "heads").mkdir(parents=True)
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / ".git" / "refs" / "heads" / "main").write_text(main + "\n")
    assert git_head(clone) == main
    # a worktree: .git is a file naming its git dir, whose commondir holds the packed refs
    worktree_dir = clone / ".git" / "worktrees" / "wt"
    worktree_dir.mkdir(parents=True)
    (worktree_dir / "HEAD").write_text("ref: refs/heads/topic\n")
    (worktree_dir / "commondir").write_text("../..\n")
    (clone / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{packed} refs/heads/topic\n")
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {worktree_dir}\n")
    assert git_head(worktree) == packed
    (worktree_dir / "HEAD").write_text(detached + "\n")
    assert git_head(worktree) == detached
    (worktree_dir / "HEAD").write_text("not a commit\n")
    assert git_head(worktree) is None
    assert git_head(tmp_path / "plain") is None
