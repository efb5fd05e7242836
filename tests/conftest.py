"""Shared fixtures: a clean environment, and a store on every backend (SQLite, and Postgres when
RECSYS_TEST_DATABASE_URL points at a server; each test gets its own database and drops it)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from recommender_core.store import Store

from ._pushgateway import PASSWORD, PASSWORD_BCRYPT, USER, Gateway, start_pushgateway
from ._relay import TcpRelay
from ._spend_logs import SPEND_LOGS_DDL

if TYPE_CHECKING:
    from recommender_core.clock import Clock

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"
REQUIRE_ALL = os.environ.get("RECSYS_REQUIRE_ALL_TESTS") == "1"
# Read once, before the autouse fixture scrubs RECSYS_* from the environment of each test.
TEST_DATABASE_URL = os.environ.get("RECSYS_TEST_DATABASE_URL")

_SCRUBBED_PREFIXES = ("RECSYS_",)
_SCRUBBED = {
    "DATABASE_URL", "ENABLE_MODEL_RECOMMENDER_V2", "HF_TOKEN", "GITHUB_TOKEN",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
}


def skip_or_fail(reason: str) -> None:
    """Skip for a missing server or binary; under RECSYS_REQUIRE_ALL_TESTS=1 (CI) that is a failure."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (RECSYS_REQUIRE_ALL_TESTS=1 turns this skip into a failure)")
    pytest.skip(reason)


def real_data(*parts: str) -> Path:
    """A path under the real upstream samples (``../shared/data/real``, beside the repository).

    The only way a test reaches them: call it inside the test or fixture (never at import or in a
    parametrization), so a clone without the folder skips, with a reason naming the missing path,
    and CI (RECSYS_REQUIRE_ALL_TESTS=1) fails instead.
    """
    path = SHARED_REAL_DATA.joinpath(*parts)
    if not path.exists():
        missing = SHARED_REAL_DATA if not SHARED_REAL_DATA.is_dir() else path
        skip_or_fail(f"the real upstream samples are missing: {missing} does not exist (they live beside "
                     "the repository, not in it; a clone elsewhere has no ../shared/data/real)")
    return path


def require_binary(name: str, how: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"'{name}' is not installed; {how}")
    assert path is not None
    return path


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's settings, tokens, proxies or real data dir."""
    for key in list(os.environ):
        if key.startswith(_SCRUBBED_PREFIXES) or key in _SCRUBBED:
            monkeypatch.delenv(key, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _postgres_admin_url() -> str:
    if not TEST_DATABASE_URL:
        skip_or_fail("Postgres tests need RECSYS_TEST_DATABASE_URL=postgresql://USER@HOST:PORT/DB")
    assert TEST_DATABASE_URL is not None
    return TEST_DATABASE_URL


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the test Postgres server, checked once per session."""
    import psycopg

    url = _postgres_admin_url()
    try:
        with psycopg.connect(_libpq_url(url), connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        skip_or_fail(f"Postgres at RECSYS_TEST_DATABASE_URL is unreachable: {str(exc).splitlines()[0]}")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"recsys_test_{uuid.uuid4().hex[:12]}"
    admin = _libpq_url(postgres_server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    user = params.get("user", "postgres")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    password = params.get("password")
    auth = f"{user}:{password}@" if password else f"{user}@"
    try:
        yield f"postgresql://{auth}{host}:{port}/{name}"
    finally:
        with psycopg.connect(make_conninfo(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL on each backend (the Postgres one is created for this test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recsys.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    s = Store(database_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.dispose()


def store_at(store: Store, clock: Clock) -> Store:
    """The database of ``store`` (same engine) read and written with ``clock`` as "now"."""
    return Store(store.url, engine=store.engine, clock=clock)


@pytest.fixture
def memory_store() -> Iterator[Store]:
    """A migrated in-memory SQLite store, for logic that does not depend on the backend."""
    s = Store("sqlite://")
    s.upgrade()
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def litellm_event_loop() -> Iterator[None]:
    """The main thread's event loop for one test, and LiteLLM's logging finished before the next.

    On a real (not mocked) provider call from sync code, litellm's service logger takes the thread's
    event loop with asyncio.get_event_loop(), creating one it never closes; a later asyncio.run()
    drops it and the garbage collector then warns (unraisable ResourceWarning) in whichever test runs.
    And LiteLLM queues async logging hooks on a process-wide worker: a hook still queued when a test
    ends would fire in a later test's event loop, on that test's callbacks. So the test gets its own
    loop, and afterwards the worker's queue is run dry on it and the loop closed.
    """
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        async def finish_logging() -> None:
            GLOBAL_LOGGING_WORKER.ensure_initialized_and_enqueue(asyncio.sleep(0))
            for _ in range(500):
                if GLOBAL_LOGGING_WORKER.pending_count == 0:
                    break
                await asyncio.sleep(0.01)

        loop.run_until_complete(finish_logging())
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def spend_logs_dsn(postgres_server: str) -> Iterator[str]:
    """A fresh Postgres database holding an empty LiteLLM_SpendLogs table, like a LiteLLM proxy's."""
    import psycopg
    from psycopg import sql

    admin = _libpq_url(postgres_server)
    name = f"litellm_proxy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = admin.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute(SPEND_LOGS_DDL)
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def relayed_postgres(postgres_url: str) -> Iterator[tuple[str, TcpRelay]]:
    """A migrated Postgres database reached through a relay the test can cut and restore."""
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_url)
    setup = Store(postgres_url)
    setup.upgrade()
    setup.dispose()
    relay = TcpRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    relay.start()
    url = postgres_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}")
    try:
        yield url, relay
    finally:
        relay.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    for url in start_pushgateway(tmp_path):
        yield Gateway(url)


@pytest.fixture
def auth_gateway(tmp_path: Path) -> Iterator[Gateway]:
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  {USER}: '{PASSWORD_BCRYPT}'\n")
    for url in start_pushgateway(tmp_path, f"--web.config.file={config}"):
        yield Gateway(url, auth=(USER, PASSWORD))
