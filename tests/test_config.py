"""Settings of DESIGN.md section 2, and credential redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender_core.config import Settings, normalise_database_url
from recommender_core.errors import ConfigError
from recommender_core.redact import redact_text, redact_url


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings.load()
    assert s.database_url is None and s.configured_database_url.endswith("/recsys.db")
    assert s.resolved_database_url.startswith("sqlite:///") and s.resolved_database_url.endswith("/recsys.db")
    assert s.enable_model_recommender_v2 is False
    assert s.policy is None and s.pushgateway_url is None
    assert (s.stale_after_hours, s.telemetry_queue_size, s.telemetry_retention_days, s.keep_runs) == (
        26.0, 10_000, 30, 30)
    assert s.log_format == "text"
    # One setting read alone (route()'s per-call reads) validates as Settings does.
    assert Settings.read("enable_model_recommender_v2") is False and Settings.read("keep_runs") == 30
    monkeypatch.setenv("ENABLE_MODEL_RECOMMENDER_V2", "maybe")
    with pytest.raises(ConfigError, match=r"^Invalid setting ENABLE_MODEL_RECOMMENDER_V2='maybe': not a boolean"):
        Settings.read("enable_model_recommender_v2")


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "RECSYS_DATABASE_URL": "postgres://app:pw@db/recsys", "ENABLE_MODEL_RECOMMENDER_V2": "true",
        "RECSYS_POLICY": str(tmp_path / "p.yaml"), "RECSYS_PUSHGATEWAY_URL": "http://pgw:9091",
        "RECSYS_PUSHGATEWAY_USERNAME": "u", "RECSYS_PUSHGATEWAY_PASSWORD": "p", "RECSYS_LMSYS_URL": "/mirror",
        "RECSYS_MTEB_URL": "/mteb", "HF_TOKEN": "hf_x", "GITHUB_TOKEN": "ghp_x",
        "RECSYS_STALE_AFTER_HOURS": "12", "RECSYS_TELEMETRY_QUEUE_SIZE": "5",
        "RECSYS_TELEMETRY_RETENTION_DAYS": "7", "RECSYS_KEEP_RUNS": "3", "RECSYS_LOG_FORMAT": "json",
        "RECSYS_SPEND_LOGS_URL": "postgresql://proxy:pw2@litellm-db/litellm",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings.load()
    assert s.resolved_database_url == "postgresql+psycopg://app:pw@db/recsys"
    assert s.configured_database_url == "postgres://app:pw@db/recsys"
    assert s.enable_model_recommender_v2 is True
    assert s.policy == tmp_path / "p.yaml"
    assert s.pushgateway_password is not None and s.pushgateway_password.get_secret_value() == "p"
    assert "p" not in repr(s.pushgateway_password).replace("SecretStr", "")
    assert s.hf_token is not None and s.github_token is not None
    assert (s.lmsys_url, s.mteb_url, s.stale_after_hours, s.telemetry_queue_size) == ("/mirror", "/mteb", 12, 5)
    assert (s.telemetry_retention_days, s.keep_runs, s.log_format) == (7, 3, "json")
    assert s.spend_logs_url is not None
    assert s.spend_logs_url.get_secret_value() == "postgresql://proxy:pw2@litellm-db/litellm"
    assert "pw2" not in repr(s)  # a secret: never in a repr or a log line


def test_every_setting_is_in_the_readme_table() -> None:
    """The README's settings table names the environment variable of every Settings field."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("| setting | env var | default |"):].split("\n\n", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = set(alias.choices) if alias is not None and hasattr(alias, "choices") else {f"RECSYS_{name.upper()}"}
        suffix = {"pushgateway_username": "_USERNAME", "pushgateway_password": "_PASSWORD"}.get(name)
        assert env & named or (suffix and f"`{suffix}`" in table), f"{name}: none of {sorted(env)} in the README table"


def test_recsys_database_url_beats_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///b.db")
    assert Settings.load().database_url == "sqlite:///b.db"
    monkeypatch.setenv("RECSYS_DATABASE_URL", "sqlite:///a.db")
    assert Settings.load().database_url == "sqlite:///a.db"
    assert Settings.load(database_url="sqlite:///c.db").database_url == "sqlite:///c.db"


def test_invalid_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_KEEP_RUNS", "zero")
    with pytest.raises(ConfigError, match=r"^Invalid setting RECSYS_KEEP_RUNS: "):
        Settings.load()


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
    ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_database_url_spellings(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


@pytest.mark.parametrize("url", ["", "no-scheme", "mysql://u@h/d", "postgresql+psycopg2://u:pw@h/d"])
def test_unsupported_database_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalise_database_url(url)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(("raw", "redacted"), [
    ("postgresql://app:s3cret@db:5432/recsys", "postgresql://app:***@db:5432/recsys"),
    ("postgresql://app@db/recsys", "postgresql://app@db/recsys"),
    ("https://user:tok%40en@gw:9091/", "https://user:***@gw:9091/"),
    ("postgresql://:only@[::1]:5432/x", "postgresql://:***@[::1]:5432/x"),
])
def test_redact_url(raw: str, redacted: str) -> None:
    assert redact_url(raw) == redacted


def test_redact_text_finds_urls_and_keyword_passwords() -> None:
    text = "failed: postgresql://a:b1@h/d and host=h password=hunter2 user=x, also password='x y'"
    out = redact_text(text)
    assert "b1" not in out and "hunter2" not in out and "x y" not in out
    assert out.count("***") == 3


def test_first_line_of_an_exception_is_redacted_and_never_empty() -> None:
    from recommender_core.redact import first_line

    assert first_line(ValueError("\n  connection to postgresql://a:pw@h/d failed\nDETAIL: x")) == (
        "connection to postgresql://a:***@h/d failed")
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(OSError("\n \n")) == "OSError"
