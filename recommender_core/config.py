"""Settings (DESIGN.md section 2), validated once at start-up.

Settings are read from the environment by ``Settings()``; command-line options override them by
passing keyword arguments (``Settings(database_url=...)``), never by mutating ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError
from .redact import redact_url

__all__ = ["APP_NAME", "Settings", "default_database_url", "normalise_database_url"]

APP_NAME = "recsys"


def default_database_url() -> str:
    """The embedded SQLite store in the user data dir (created on first use)."""
    import platformdirs

    data_dir = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return f"sqlite:///{data_dir / 'recsys.db'}"


def normalise_database_url(url: str) -> str:
    """Accept the URL spellings users have and return the one SQLAlchemy + psycopg 3 wants.

    ``postgres://`` and ``postgresql://`` both mean psycopg 3; SQLite URLs pass through.
    """
    url = url.strip()
    if not url:
        raise ConfigError("The database URL is empty. Set RECSYS_DATABASE_URL or pass --database-url.")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"The database URL '{redact_url(url)}' has no scheme. "
            "Use sqlite:///PATH or postgresql://USER@HOST/DB."
        )
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise ConfigError(
        f"Unsupported database URL scheme '{scheme}' in '{redact_url(url)}'. "
        "Supported: sqlite:///PATH, postgresql://USER@HOST/DB (psycopg 3)."
    )


class Settings(BaseSettings):
    """Every setting of DESIGN.md section 2."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", extra="ignore", populate_by_name=True, frozen=True
    )
    # Aliases name the environment variables only: a lower-case alias such as "database_url" would
    # also match the DATABASE_URL variable (names are case-insensitive) and beat RECSYS_DATABASE_URL.

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RECSYS_DATABASE_URL", "DATABASE_URL")
    )
    policy: Path | None = Field(default=None, validation_alias=AliasChoices("RECSYS_POLICY"))
    pushgateway_url: str | None = None
    pushgateway_username: str | None = None
    pushgateway_password: SecretStr | None = None
    # The whole push, whatever the gateway does byte by byte (not a per-read timeout).
    pushgateway_timeout_seconds: float = Field(default=10.0, gt=0)
    enable_model_recommender_v2: bool = Field(
        default=False,
        validation_alias=AliasChoices("ENABLE_MODEL_RECOMMENDER_V2"),
    )
    lmsys_url: str | None = None
    mteb_url: str | None = None
    hf_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("HF_TOKEN"))
    github_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GITHUB_TOKEN")
    )
    stale_after_hours: float = Field(default=26.0, gt=0)
    telemetry_queue_size: int = Field(default=10_000, gt=0)
    telemetry_retention_days: int = Field(default=30, gt=0)
    keep_runs: int = Field(default=30, gt=0)
    log_format: Literal["text", "json"] = "text"
    # The LiteLLM proxy database `ingest litellm` reads. A secret (its password): from the environment,
    # never argv, where any process on the node can read it.
    spend_logs_url: SecretStr | None = None

    @property
    def is_default_database(self) -> bool:
        """True when no database was configured: the embedded SQLite store."""
        return not self.database_url

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL to connect to (psycopg 3 for Postgres)."""
        return normalise_database_url(self.database_url or default_database_url())

    @property
    def display_database_url(self) -> str:
        """The database URL with its password redacted, safe to print."""
        return redact_url(self.database_url or default_database_url())

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read the environment, apply non-None overrides, and turn validation errors into ConfigError."""
        from pydantic import ValidationError

        clean = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**clean)  # type: ignore[arg-type]
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "settings"
            env_name = field.upper() if field.upper().startswith(("ENABLE_", "HF_", "GITHUB_")) else (
                f"RECSYS_{field.upper()}"
            )
            raise ConfigError(f"Invalid setting {env_name}: {first['msg']}.") from exc
