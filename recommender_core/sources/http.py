"""The one HTTP client every source uses: timeouts, retries with backoff, and honest errors.

- Retries 429 and 5xx (and connection failures) with exponential backoff, honouring ``Retry-After``
  (seconds or an HTTP date) and the ``RateLimit`` header's ``t=`` reset.
- Sends a User-Agent naming recsys, and a bearer token when one is configured, but only where the
  token belongs: https URLs on its own service's hosts (``BearerToken``). A mirror, any other host,
  and every plain-http URL get no token, unless the user lists the host for it
  (``RECSYS_HF_TOKEN_HOSTS``, ``RECSYS_GITHUB_TOKEN_HOSTS``; still https only).
- Streams downloads with a size cap and checks the body length against ``Content-Length``, so a
  truncated body fails instead of being parsed.
- Every httpx exception becomes a ``SourceError`` here, at the boundary (table-driven; a test checks
  that every httpx exception class is mapped).
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from .. import __version__
from ..clock import SYSTEM_CLOCK, Clock
from ..config import GITHUB_TOKEN_HOSTS, HF_TOKEN_HOSTS, ScopedToken
from ..errors import SourceError, SourceHTTPError, SourceTimeout
from ..redact import redact_url

__all__ = ["EXCEPTION_MAP", "USER_AGENT", "BearerToken", "HttpSettings", "SourceClient", "parse_retry_after"]

log = logging.getLogger("recsys.http")

USER_AGENT = f"recsys/{__version__} (+https://github.com/recsys; evidence-guided model recommender)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts, retries and limits; tests shrink them."""

    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    # A server asking us to wait longer than this gets a clear error instead of a hung CronJob.
    max_retry_after: float = 300.0
    max_bytes: int = 2 * 1024**3


# httpx exception -> (RecsysError class, what happened). Most specific first.
EXCEPTION_MAP: tuple[tuple[type[Exception], type[SourceError], str], ...] = (
    (httpx.TimeoutException, SourceTimeout, "timed out"),
    (httpx.TooManyRedirects, SourceError, "redirected too many times"),
    (httpx.RemoteProtocolError, SourceError, "broke the HTTP protocol (connection reset or truncated body)"),
    (httpx.LocalProtocolError, SourceError, "could not be sent a valid request"),
    (httpx.ProtocolError, SourceError, "broke the HTTP protocol"),
    (httpx.ProxyError, SourceError, "could not be reached through the proxy"),
    (httpx.ConnectError, SourceError, "could not be reached (connection failed)"),
    (httpx.ReadError, SourceError, "dropped the connection while answering"),
    (httpx.WriteError, SourceError, "dropped the connection while we sent the request"),
    (httpx.CloseError, SourceError, "failed while closing the connection"),
    (httpx.NetworkError, SourceError, "could not be reached (network error)"),
    (httpx.UnsupportedProtocol, SourceError, "has a URL scheme httpx cannot fetch"),
    (httpx.DecodingError, SourceError, "sent a body that could not be decoded"),
    (httpx.TransportError, SourceError, "could not be reached"),
    (httpx.HTTPStatusError, SourceHTTPError, "answered with an error status"),
    (httpx.RequestError, SourceError, "could not be fetched"),
    (httpx.HTTPError, SourceError, "could not be fetched"),
    (httpx.InvalidURL, SourceError, "is not a valid URL"),
    (httpx.CookieConflict, SourceError, "set conflicting cookies"),
    (httpx.StreamError, SourceError, "was read in the wrong order (a recsys bug)"),
)


def _translate(exc: Exception, *, source: str, url: str) -> SourceError:
    for exc_type, error_type, what in EXCEPTION_MAP:
        if isinstance(exc, exc_type):
            # Transport failures (no route, DNS, refused, timeouts): the network is the problem, and
            # a local mirror is the way round it (the CLI names the options).
            unreachable = isinstance(exc, httpx.TransportError) and not isinstance(
                exc, (httpx.UnsupportedProtocol, httpx.ProtocolError, httpx.DecodingError))
            return error_type(f"{source}: {redact_url(url)} {what}: {exc or type(exc).__name__}.",
                              source=source, url=url, unreachable=unreachable)
    return SourceError(f"{source}: {redact_url(url)} could not be fetched: {exc}.", source=source, url=url)


_RATELIMIT_RESET = re.compile(r"(?:^|[;,\s])t=(\d+)")


def parse_retry_after(headers: Mapping[str, str], *, now: datetime) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds, or an HTTP date compared with ``now``), else the
    ``RateLimit`` header's ``t=``."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - now).total_seconds())
    ratelimit = headers.get("ratelimit")
    if ratelimit:
        match = _RATELIMIT_RESET.search(ratelimit)
        if match:
            return float(match.group(1))
    return None


class BearerToken(httpx.Auth):
    """``Authorization: Bearer <token>`` on each request whose URL the token may go to: https, on a
    host of its ``ScopedToken.hosts`` (from ``Settings``). A token given as a plain string goes only to
    the services recsys knows (the Hugging Face Hub and its CDN, the GitHub API).

    The check runs once per request, on the URL asked for. Redirects are httpx's: it drops the header
    when a redirect leaves the origin (another host, or https to http), so a token never follows a
    redirect off its host.
    """

    def __init__(self, token: str) -> None:
        self._token = token if isinstance(token, ScopedToken) else ScopedToken(
            token, (*HF_TOKEN_HOSTS, *GITHUB_TOKEN_HOSTS))

    def allowed_for(self, url: str) -> bool:
        return self._token.allowed_for(url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.allowed_for(str(request.url)):
            request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class SourceClient:
    """An httpx client for one source. Inject ``transport`` (or a whole ``client``) in tests.

    >>> def handler(request: httpx.Request) -> httpx.Response:
    ...     return httpx.Response(200, json={"sha": "abc"})
    >>> with SourceClient(source="demo", transport=httpx.MockTransport(handler)) as http:
    ...     http.get_json("https://example.invalid/api")["sha"]
    'abc'
    """

    def __init__(
        self,
        *,
        source: str,
        token: str | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        settings: HttpSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.source = source
        self.settings = settings or HttpSettings()
        self._sleep = sleep
        self._clock = clock
        headers = {"User-Agent": USER_AGENT}
        # Per request, not a client header: the header depends on each request's URL.
        self._auth: httpx.Auth | None = BearerToken(token) if token else None
        self._owns_client = client is None
        self._client = client or httpx.Client(
            transport=transport,
            headers=headers,
            follow_redirects=True,
            timeout=httpx.Timeout(self.settings.read_timeout, connect=self.settings.connect_timeout),
        )
        if client is not None:
            self._client.headers.update(headers)

    def __enter__(self) -> SourceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # --- requests -------------------------------------------------------------------------------

    def _backoff(self, attempt: int, response: httpx.Response | None) -> float:
        delay = min(self.settings.backoff_max, self.settings.backoff_base * 2.0 ** (attempt - 1))
        if response is not None:
            asked = parse_retry_after(response.headers, now=self._clock.now())
            if asked is not None:
                if asked > self.settings.max_retry_after:
                    raise SourceHTTPError(
                        f"{self.source}: {redact_url(str(response.request.url))} is rate limited for "
                        f"{asked:.0f} s (HTTP {response.status_code}); run again later"
                        + (" or set a token for a higher limit" if response.status_code in (403, 429) else "")
                        + ".", source=self.source, url=str(response.request.url),
                        status_code=response.status_code)
                delay = max(delay, asked)
        return delay

    def _status_error(self, response: httpx.Response) -> SourceHTTPError:
        url = str(response.request.url)
        status = response.status_code
        hint = {
            401: "check the token",
            403: "check the token (or the rate limit)",
            404: "check the source URL and that the revision exists",
            429: "the source is rate limiting us; run again later or set a token",
        }.get(status, "run again later" if status >= 500 else "check the source URL")
        if status == 403 and response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset")
            when = (datetime.fromtimestamp(int(reset), UTC).strftime("%H:%M UTC") if reset and reset.isdigit()
                    else "later")
            hint = f"the API rate limit is exhausted until {when}; set GITHUB_TOKEN for a higher limit"
        return SourceHTTPError(f"{self.source}: {redact_url(url)} answered HTTP {status}; {hint}.",
                               source=self.source, url=url, status_code=status)

    @contextmanager
    def stream(self, url: str, *, headers: Mapping[str, str] | None = None) -> Iterator[httpx.Response]:
        """A successful (2xx/304) streamed response, after retries; raises SourceError otherwise."""
        attempt = 0
        yielded = False
        while True:
            attempt += 1
            try:
                auth = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
                with self._client.stream("GET", url, headers=headers, auth=auth) as response:
                    if response.status_code in RETRY_STATUSES and attempt < self.settings.max_attempts:
                        delay = self._backoff(attempt, response)
                        log.info("%s answered %s; retry %d in %.1f s", redact_url(url), response.status_code,
                                 attempt, delay)
                    elif response.is_success or response.status_code == 304:
                        yielded = True
                        yield response
                        return
                    else:
                        if response.status_code in RETRY_STATUSES:
                            self._backoff(attempt, response)  # raises if asked to wait too long
                        raise self._status_error(response)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if yielded or attempt >= self.settings.max_attempts:
                    raise _translate(exc, source=self.source, url=url) from exc
                delay = self._backoff(attempt, None)
                log.info("%s failed (%s); retry %d in %.1f s", redact_url(url), type(exc).__name__, attempt, delay)
            except httpx.HTTPError as exc:
                raise _translate(exc, source=self.source, url=url) from exc
            self._sleep(delay)

    def get(self, url: str, *, headers: Mapping[str, str] | None = None,
            progress: ProgressCallback | None = None, max_bytes: int | None = None) -> httpx.Response:
        """GET ``url`` fully into memory (capped and length-checked); the response's ``content`` is set."""
        limit = max_bytes or self.settings.max_bytes
        with self.stream(url, headers=headers) as response:
            expected = response.headers.get("content-length")
            total = int(expected) if expected and expected.isdigit() else None
            if total is not None and total > limit:
                raise SourceError(f"{self.source}: {redact_url(url)} is {total} bytes, over the {limit}-byte cap.",
                                  source=self.source, url=url)
            chunks: list[bytes] = []
            received = 0
            try:
                # Decoded bytes (gzip and friends are undone by httpx; a cut-off compressed body fails
                # to decode). The cap counts decoded bytes, which is what memory holds.
                for chunk in response.iter_bytes():
                    received += len(chunk)
                    if received > limit:
                        raise SourceError(f"{self.source}: {redact_url(url)} exceeded the {limit}-byte cap.",
                                          source=self.source, url=url)
                    chunks.append(chunk)
                    if progress is not None:
                        progress(received, total)
            except httpx.HTTPError as exc:
                raise _translate(exc, source=self.source, url=url) from exc
            encoding = response.headers.get("content-encoding", "identity").lower()
            if total is not None and received != total and encoding in ("", "identity"):
                raise SourceError(
                    f"{self.source}: {redact_url(url)} was truncated ({received} of {total} bytes); run again.",
                    source=self.source, url=url)
            headers = httpx.Headers(response.headers)
            headers.pop("content-encoding", None)  # the body handed back is already decoded
            # Hand back a complete, read response carrying the final URL, status and headers.
            return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                                  request=response.request)

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> Any:
        """GET and decode JSON; an HTML page or other non-JSON body is a clear SourceError."""
        import json

        response = self.get(url, headers=headers)
        content_type = response.headers.get("content-type", "")
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            kind = "an HTML page" if "html" in content_type or response.content.lstrip()[:1] == b"<" else (
                f"non-JSON content ({content_type or 'no content type'})")
            raise SourceError(f"{self.source}: {redact_url(url)} returned {kind} where JSON was expected.",
                              source=self.source, url=url) from exc
