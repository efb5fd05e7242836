"""Settings (README, "Configuration"), validated once at start-up.

Settings are read from the environment by ``Settings()``; command-line options override them by
passing keyword arguments (``Settings(database_url=...)``), never by mutating ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, TypeAdapter, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .environ import ALIASES, env_names
from .errors import ConfigError
from .redact import redact_url

__all__ = [
    "APP_NAME",
    "GITHUB_TOKEN_HOSTS",
    "HF_TOKEN_HOSTS",
    "MAX_RETENTION_DAYS",
    "ScopedToken",
    "Settings",
    "default_database_url",
    "normalise_database_url",
]

APP_NAME = "recsys"
# 100 years: any longer retention is "keep everything", and a cutoff that far back cannot be computed.
MAX_RETENTION_DAYS = 36_500


# Where each upstream token may be sent, always over https: its own service's hosts. A "*." entry
# matches every subdomain. The Hugging Face Hub answers downloads with redirects to its CDN
# (cdn-lfs.huggingface.co, cas-bridge.xethub.hf.co); the datasets server is datasets-server.huggingface.co.
HF_TOKEN_HOSTS: Final = ("huggingface.co", "*.huggingface.co", "*.hf.co")
GITHUB_TOKEN_HOSTS: Final = ("api.github.com",)
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """True when ``host`` is one of ``patterns`` (a ``*.`` pattern matches any subdomain).

    >>> host_allowed("cas-bridge.xethub.hf.co", HF_TOKEN_HOSTS), host_allowed("hf.co.evil.net", HF_TOKEN_HOSTS)
    (True, False)
    """
    host = host.lower().rstrip(".")
    return any(host.endswith(p[1:]) if p.startswith("*.") else host == p for p in patterns)


class ScopedToken(str):
    """A token's value that knows where it may be sent: https URLs whose host is one of ``hosts``.

    ``Settings.hf_token.get_secret_value()`` (and ``github_token``) return one, so whichever code
    passes the value on to the HTTP client, the client sends it only where its service lives
    (``recommender_core.sources.http``).
    """

    hosts: tuple[str, ...]

    def __new__(cls, value: str, hosts: Iterable[str] = ()) -> ScopedToken:
        token = super().__new__(cls, value)
        token.hosts = tuple(hosts)
        return token

    def allowed_for(self, url: str) -> bool:
        """True when this token may go to ``url``: https, and a host of ``hosts``."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        return parts.scheme == "https" and bool(parts.hostname) and host_allowed(parts.hostname or "", self.hosts)


class _ScopedSecret(SecretStr):
    """A SecretStr whose value comes out as a ``ScopedToken``."""

    def __init__(self, value: str, hosts: Iterable[str]) -> None:
        super().__init__(value)
        self._hosts = tuple(hosts)

    def get_secret_value(self) -> str:
        return ScopedToken(super().get_secret_value(), self._hosts)


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
    """Every setting of the README's "Configuration" table."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", extra="ignore", populate_by_name=True, frozen=True
    )
    # Aliases name the environment variables only: a lower-case alias such as "database_url" would
    # also match the DATABASE_URL variable (names are case-insensitive) and beat RECSYS_DATABASE_URL.

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices(*ALIASES["database_url"])
    )
    policy: Path | None = Field(default=None, validation_alias=AliasChoices(*ALIASES["policy"]))
    pushgateway_url: str | None = None
    pushgateway_username: str | None = None
    pushgateway_password: SecretStr | None = None
    # The whole push, whatever the gateway does byte by byte (not a per-read timeout).
    pushgateway_timeout_seconds: float = Field(default=10.0, gt=0)
    enable_model_recommender_v2: bool = Field(
        default=False,
        validation_alias=AliasChoices(*ALIASES["enable_model_recommender_v2"]),
    )
    lmsys_url: str | None = None
    mteb_url: str | None = None
    # Hosts beyond the service's own that may receive the token (a mirror of the Hub, a GitHub
    # Enterprise API): comma-separated host names, "*.example.com" for every subdomain; https only.
    # Declared before the tokens, whose validators read them.
    hf_token_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    github_token_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    hf_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices(*ALIASES["hf_token"]))
    github_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices(*ALIASES["github_token"])
    )
    stale_after_hours: float = Field(default=26.0, gt=0)
    telemetry_queue_size: int = Field(default=10_000, gt=0)
    telemetry_retention_days: int = Field(default=30, gt=0, le=MAX_RETENTION_DAYS)
    keep_runs: int = Field(default=30, gt=0)
    log_format: Literal["text", "json"] = "text"
    # `recsys serve` closes a connection that sends nothing for this long (it would hold a thread).
    serve_idle_timeout_seconds: float = Field(default=30.0, gt=0, le=86_400)
    # The LiteLLM proxy database `ingest litellm` reads. A secret (its password): from the environment,
    # never argv, where any process on the node can read it.
    spend_logs_url: SecretStr | None = None
    # Files recsys can rebuild (the compiled policy of `recsys route`); unset: environ.cache_dir().
    cache_dir: Path | None = None

    @field_validator("hf_token_hosts", "github_token_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> tuple[str, ...]:
        names = value.split(",") if isinstance(value, str) else list(value or ())
        hosts = tuple(str(n).strip().lower() for n in names if str(n).strip())
        for host in hosts:
            if not _HOST_PATTERN.fullmatch(host):
                raise ValueError(f"{host[:80]!r} is not a host name; list host names such as hub.mirror.internal "
                                 "(no scheme, port or path), separated by commas")
        return hosts

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hf_token", "github_token", mode="after")
    @classmethod
    def _scoped(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        own = HF_TOKEN_HOSTS if info.field_name == "hf_token" else GITHUB_TOKEN_HOSTS
        extra = info.data.get(f"{info.field_name}_hosts", ())
        return _ScopedSecret(value.get_secret_value(), (*own, *extra))

    def source_url(self, source: str) -> str | None:
        """The mirror configured for an evidence source (``RECSYS_<SOURCE>_URL``), if any."""
        value = getattr(self, f"{source}_url", None) if f"{source}_url" in type(self).model_fields else None
        return value if isinstance(value, str) else None

    @property
    def configured_database_url(self) -> str:
        """The database URL as configured (the embedded SQLite default when none is): the one place the
        default is chosen."""
        return self.database_url or default_database_url()

    @property
    def resolved_cache_dir(self) -> str:
        """The cache folder: ``RECSYS_CACHE_DIR``, else ``environ.cache_dir``'s default."""
        from .environ import cache_dir

        return str(self.cache_dir) if self.cache_dir is not None else cache_dir()

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL to connect to (psycopg 3 for Postgres)."""
        return normalise_database_url(self.configured_database_url)

    @classmethod
    def read(cls, field: str) -> Any:
        """One setting from the environment, validated as ``Settings`` validates it, without building a
        whole ``Settings`` (about 2 ms): for per-call reads such as ``route()``'s V2 flag and policy path.
        Unset or empty: the field's default."""
        from .environ import value as env_value

        value = env_value(field)
        if value is None:
            return cls.model_fields[field].get_default(call_default_factory=True)
        from pydantic import ValidationError

        try:
            return _adapter(field).validate_python(value.strip())
        except ValidationError as exc:
            kind = "not a boolean; use true or false" if cls.model_fields[field].annotation is bool else (
                exc.errors()[0]["msg"].removeprefix("Value error, "))
            raise ConfigError(f"Invalid setting {_env_names(field)[0]}={value!r}: {kind}.") from None

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read the environment, apply non-None overrides, and turn validation errors into ConfigError."""
        from pydantic import ValidationError

        clean = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**clean)  # type: ignore[arg-type]
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "settings"
            env_name = _env_name(field)
            raise ConfigError(f"Invalid setting {env_name}: {first['msg'].removeprefix('Value error, ')}.") from exc


def _env_names(field: str) -> tuple[str, ...]:
    """Every environment variable a Settings field reads, in priority order (``environ.ALIASES``)."""
    return env_names(field)


@cache
def _adapter(field: str) -> TypeAdapter[Any]:
    info = Settings.model_fields[field]
    if not info.metadata:
        return TypeAdapter(info.annotation or Any)
    return TypeAdapter(Annotated.__class_getitem__((info.annotation, *info.metadata)))  # type: ignore[attr-defined]


def _env_name(field: str) -> str:
    """The environment variable of a Settings field (or of the alias an error names)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"RECSYS_{field.upper()}" if info is not None else field.upper()
