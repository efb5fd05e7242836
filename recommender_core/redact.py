"""Credential redaction for anything recsys prints or logs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["first_line", "redact_text", "redact_url"]

REDACTED = "***"

# scheme://user:password@host  ->  scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)")
# libpq keyword DSNs: password=secret
_KEYWORD_PASSWORD = re.compile(r"(?P<prefix>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``.

    >>> redact_url("postgresql://app:s3cret@db:5432/recsys")
    'postgresql://app:***@db:5432/recsys'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None:
        return redact_text(url)
    userinfo = f"{parts.username}:{REDACTED}" if parts.username else f":{REDACTED}"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL password and libpq ``password=`` value found anywhere in ``text``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED, text)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED, text)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message, redacted; the class name when it has none.

    For one-line error messages and log lines built from third-party exceptions.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return redact_text(line.strip())
    return type(exc).__name__
