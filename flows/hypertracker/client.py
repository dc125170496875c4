"""The HyperTracker HTTP client: Bearer auth, paced, retried, and careful with the token.

One :class:`HyperTrackerClient` holds one ``httpx.Client`` (one connection pool) and exposes
plain synchronous methods. The four heatmap windows are fetched concurrently by a small
thread pool sharing that pool: httpx's sync client is thread-safe, and threads keep the
callers (Prefect tasks, the CLI, tests) free of event loops.

What it does for every request:

- paces itself with a client-side limiter (``HT_REQUESTS_PER_MINUTE`` in any rolling 60 s);
- retries 429, 408, 500, 502, 503, 504, timeouts, refused or dropped connections and
  truncated bodies (httpx raises ``RemoteProtocolError`` when fewer bytes arrive than
  Content-Length promised, or a chunked body stops early), with exponential back-off and
  full jitter, honouring ``Retry-After`` (seconds or an HTTP date) or the 429 body's
  ``retry_after``, within ``HT_MAX_ATTEMPTS`` and ``HT_MAX_RETRY_WAIT_S`` of total waiting;
- fails at once on 401/403 (:class:`AuthError`) and on any other 4xx (:class:`RequestFailed`);
- follows redirects (some endpoints answer 302 to a pre-signed URL). httpx drops the
  Authorization header when a redirect leaves the API's origin, so the token never reaches
  the storage host; ``Fetched.url`` is the URL asked for, never the pre-signed one.

The token lives in a ``SecretStr`` until the moment a request is sent, and is set on that
request only (not on the client's default headers). No log record, exception message or
``repr`` made here contains it; error texts are also scrubbed of it in case a server echoes
it back.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
from pydantic import SecretStr

from flows.hypertracker.errors import (
    AuthError,
    HyperTrackerError,
    MissingTokenError,
    PayloadError,
    QuotaExhausted,
    RequestFailed,
)
from flows.settings import Settings

logger = logging.getLogger(__name__)
# httpx logs every request line at INFO; after a 302 that line would hold a pre-signed
# storage URL with its signature. Our own log lines say what was fetched instead.
logging.getLogger("httpx").setLevel(logging.WARNING)

HEATMAP_PATH = "/positions/heatmap"
STATUS_PATH = "/hypertracker/state/status"
SEGMENTS_PATH = "/segments"

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Failures worth another attempt: timeouts, refused/reset/dropped connections, and a body
# cut short (RemoteProtocolError) or whose compression is damaged by the cut (DecodingError).
RETRY_EXCEPTIONS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.DecodingError,
)
BODY_EXCERPT_CHARS = 200
# Our minute is this much longer than the plan's: the server counts a request when it
# arrives, and how long a request takes from its slot to the server varies by milliseconds
# (more on a busy machine), so slots exactly 60 s apart met 429s (bench/backfill.py: 3 in
# 260 requests at 60 a minute). It costs under 1% of the plan's rate.
RATE_LIMIT_MARGIN_S = 0.5
USER_AGENT = f"hyperliquid-cohorts/0.1 httpx/{httpx.__version__}"
_REDACTED = "**********"


@dataclass(frozen=True, slots=True)
class Fetched:
    """One successful response, body verbatim.

    ``url`` is the URL requested (the token is a header, never in it); ``fetched_at`` is when
    the response arrived (aware UTC); ``elapsed_s`` covers the whole call, retries and waits
    included; ``attempts`` counts the requests it took.
    """

    endpoint: str
    window: str | None
    url: str
    status: int
    body: bytes = field(repr=False)
    fetched_at: datetime
    elapsed_s: float
    attempts: int = 1
    # A redirect asked for with ``follow_redirects=False``: where it points (a pre-signed
    # URL, whose signature is a credential: kept out of the repr).
    location: str | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True, slots=True)
class StateStatus:
    """``GET /hypertracker/state/status``: when the data behind the heatmap last changed."""

    last_update: datetime
    next_update: datetime | None
    next_update_threshold: datetime | None
    fetched: Fetched = field(repr=False)

    @property
    def snapshot_id(self) -> str:
        """``lastUpdate`` as ``YYYYMMDDTHHMMSSmmmZ``: the snapshot's id, which sorts as time."""
        t = self.last_update.astimezone(UTC)
        return f"{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z"


class RateLimiter:
    """At most ``max_requests`` acquisitions in any rolling ``period_s`` (thread-safe).

    A sliding-window log rather than a token bucket: it never lets a burst exceed the plan's
    per-minute limit, whichever way the server counts its minute. ``acquire`` blocks until a
    slot is free. ``clock`` and ``sleep`` are injectable so tests need not wait.
    """

    def __init__(
        self,
        max_requests: int,
        period_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        self.max_requests = max_requests
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        # Held while sleeping on purpose: waiters queue up behind it in arrival order, and
        # nobody else could have been let through during that wait anyway.
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.period_s:
                    self._sent.popleft()
                if len(self._sent) < self.max_requests:
                    self._sent.append(now)
                    return waited
                pause = self._sent[0] + self.period_s - now
                self._sleep(pause)
                waited += pause


class _BearerAuth(httpx.Auth):
    """Sets the Bearer header on each request; the token stays a SecretStr until then."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return f"_BearerAuth({_REDACTED})"


class HyperTrackerClient:
    """Fetches HyperTracker endpoints. Use as a context manager (it owns a connection pool).

    ``transport``, ``sleep``, ``clock``, ``rng`` and ``limiter`` are for tests: a mock
    transport, a sleep that records instead of waiting, a fake clock, a fixed jitter draw.
    ``on_request`` is called before each request takes its rate-limit slot and is sent
    (retries included), so that a quota ledger counts every request, even of a process
    killed a moment later.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        limiter: RateLimiter | None = None,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        token = settings.api_token
        if token is None or not token.get_secret_value().strip():
            raise MissingTokenError(settings.base_url)
        self.settings = settings
        self._token = token
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._limiter = limiter or RateLimiter(
            settings.requests_per_minute, 60.0 + RATE_LIMIT_MARGIN_S, clock=clock, sleep=sleep
        )
        self._count_lock = threading.Lock()
        self._request_count = 0
        self._on_request = on_request
        pool = max(4, len(settings.windows))
        self._http = httpx.Client(
            base_url=settings.base_url,
            auth=_BearerAuth(token),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            transport=transport,
        )

    # --- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __repr__(self) -> str:
        return f"HyperTrackerClient(base_url={self.settings.base_url!r})"

    @property
    def request_count(self) -> int:
        """Requests sent so far (every attempt, retries included: each counts on the quota)."""
        with self._count_lock:
            return self._request_count

    # --- endpoints -----------------------------------------------------------------------
    def status(self) -> StateStatus:
        """``GET /hypertracker/state/status``, parsed (times as aware UTC datetimes).

        Raises PayloadError when the body is not the expected object.
        """
        fetched = self.get("status", STATUS_PATH)
        return parse_status(fetched)

    def heatmap(self, window: str) -> Fetched:
        """``GET /positions/heatmap?openedWithin=<window>``; the body is returned verbatim."""
        return self.get("heatmap", HEATMAP_PATH, params={"openedWithin": window}, window=window)

    def heatmaps(
        self,
        windows: Iterable[str] | None = None,
        on_fetched: Callable[[Fetched], None] | None = None,
    ) -> dict[str, Fetched]:
        """All windows (default: ``settings.windows``) fetched concurrently, keyed by window.

        ``on_fetched`` is called with each response the moment it arrives (from the fetching
        thread), so the caller can store a body before the other windows are in. Waits for
        every request to finish; if any failed, raises the first failure in window order,
        with the others noted on it.
        """
        wins = list(dict.fromkeys(self.settings.windows if windows is None else windows))
        if not wins:
            return {}

        def fetch(window: str) -> Fetched:
            fetched = self.heatmap(window)
            if on_fetched is not None:
                on_fetched(fetched)
            return fetched

        with ThreadPoolExecutor(max_workers=len(wins), thread_name_prefix="ht-fetch") as pool:
            futures = {w: pool.submit(fetch, w) for w in wins}
        errors = [(w, f.exception()) for w, f in futures.items() if f.exception() is not None]
        if errors:
            first = errors[0][1]
            assert first is not None
            for w, other in errors[1:]:
                first.add_note(f"window {w} failed too: {other}")
            raise first
        return {w: f.result() for w, f in futures.items()}

    def segments(self) -> Fetched:
        """``GET /segments`` (the cohort ladder); the body is returned verbatim."""
        return self.get("segments", SEGMENTS_PATH)

    def get(
        self,
        endpoint: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        window: str | None = None,
        follow_redirects: bool = True,
    ) -> Fetched:
        """GET ``path`` (relative to the base URL) with pacing and retries.

        Returns the 2xx response verbatim; with ``follow_redirects=False``, a redirect too
        (``Fetched.location`` says where to: the caller follows it without the token).
        Raises AuthError (401/403), RequestFailed (other 4xx, or retries exhausted),
        QuotaExhausted (429 beyond the wait budget).
        """
        url = str(self._http.build_request("GET", path, params=params).url)
        s = self.settings
        started = self._clock()
        waited = 0.0
        status: int | None = None
        reason = ""
        excerpt = ""
        retry_after: float | None = None
        attempt = 0
        for attempt in range(1, s.max_attempts + 1):
            # Counted before it waits for its slot: the slot's time must be the send's (the
            # server counts a request when it arrives, and the ledger's fsyncs take up to
            # tens of ms under load), and a kill while waiting over-counts one, never under.
            with self._count_lock:
                self._request_count += 1
                if self._on_request is not None:
                    self._on_request()
            self._limiter.acquire()
            status, retry_after, excerpt = None, None, ""
            try:
                response = self._http.get(path, params=params, follow_redirects=follow_redirects)
            except RETRY_EXCEPTIONS as exc:
                reason = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
            except httpx.HTTPError as exc:
                # Too many redirects, an unsupported scheme, a header value refused...: the
                # same request fails again. "from None": httpx errors carry the request,
                # Authorization header included; their type and text are in the message.
                header = isinstance(exc, httpx.LocalProtocolError) and "header" in str(exc)
                raise RequestFailed(
                    url,
                    status=None,
                    reason=f"{type(exc).__name__}: {self._scrub(str(exc))}",
                    attempts=attempt,
                    window=window,
                    advice=(
                        "Check HT_API_TOKEN: it holds characters an HTTP header cannot carry"
                        if header
                        else "Check HT_BASE_URL"
                    ),
                ) from None
            else:
                status = response.status_code
                redirect = not follow_redirects and response.is_redirect
                if 200 <= status < 300 or redirect:
                    return Fetched(
                        endpoint=endpoint,
                        window=window,
                        url=url,
                        status=status,
                        body=response.content,
                        fetched_at=datetime.now(UTC),
                        elapsed_s=self._clock() - started,
                        attempts=attempt,
                        location=response.headers.get("Location") if redirect else None,
                    )
                reason = f"HTTP {status} {response.reason_phrase}".rstrip()
                excerpt = self._scrub(response.text[:BODY_EXCERPT_CHARS])
                if status in (401, 403) and not _left_origin(response):
                    raise AuthError(url, status)
                if status in (401, 403):
                    # A pre-signed storage URL that refused us has most likely expired:
                    # asking the API again yields a fresh one.
                    reason += " from the redirect target (expired pre-signed URL?)"
                elif status not in RETRY_STATUSES:
                    raise RequestFailed(
                        url,
                        status=status,
                        reason=reason,
                        attempts=attempt,
                        window=window,
                        body_excerpt=excerpt,
                    )
                retry_after = _retry_after(response)
            if attempt == s.max_attempts:
                break
            remaining = s.max_retry_wait_s - waited
            if retry_after is not None and retry_after > remaining:
                reason += f"; the server asks to wait {retry_after:.0f} s"
                break
            backoff = self._rng() * s.backoff_base_s * 2 ** (attempt - 1)  # full jitter
            if remaining <= 0:
                break
            wait = min(max(backoff, retry_after or 0.0), remaining)
            logger.warning(
                "GET %s: %s (attempt %d/%d); retrying in %.2f s%s",
                url,
                reason,
                attempt,
                s.max_attempts,
                wait,
                "" if retry_after is None else f" (server asked for {retry_after:.2f} s)",
            )
            self._sleep(wait)
            waited += wait
        if status == 429:
            raise QuotaExhausted(
                url,
                reason=reason,
                attempts=attempt,
                window=window,
                body_excerpt=excerpt,
                retry_after_s=retry_after,
            )
        raise RequestFailed(
            url,
            status=status,
            reason=f"{reason} (waited {waited:.1f} s of {s.max_retry_wait_s:g} s allowed)",
            attempts=attempt,
            window=window,
            body_excerpt=excerpt,
        )

    def _scrub(self, text: str) -> str:
        # Defence in depth: a server or a proxy could echo the header back in an error body,
        # and httpx names a header value it refuses in its error, escaped as bytes.
        secret = self._token.get_secret_value()
        for form in {secret, secret.strip(), repr(secret)[1:-1], repr(secret.encode())[2:-1]}:
            if form:
                text = text.replace(form, _REDACTED)
        return text


def _left_origin(response: httpx.Response) -> bool:
    """True when redirects took the request to another scheme, host or port."""
    if not response.history:
        return False
    first, last = response.history[0].request.url, response.request.url
    return (first.scheme, first.host, first.port) != (last.scheme, last.host, last.port)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks us to wait: the Retry-After header, else the body's field."""
    header = response.headers.get("Retry-After")
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:  # an HTTP date is GMT by definition
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("retry_after") if isinstance(doc, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return max(0.0, float(value))
    if isinstance(value, str):
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


# --- the status endpoint's body ------------------------------------------------------------
def parse_status(fetched: Fetched) -> StateStatus:
    """Parse a ``/hypertracker/state/status`` response (raises PayloadError)."""
    try:
        doc: Any = orjson.loads(fetched.body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(None, fetched.url, [f"$: not valid JSON ({exc})"]) from None
    if isinstance(doc, dict) and "lastUpdate" not in doc and isinstance(doc.get("data"), dict):
        doc = doc["data"]  # tolerate an envelope
    if not isinstance(doc, dict):
        raise PayloadError(None, fetched.url, ["$: expected a JSON object"])
    reasons: list[str] = []
    values: dict[str, datetime | None] = {}
    for key, required in (
        ("lastUpdate", True),
        ("nextUpdate", False),
        ("nextUpdateThreshold", False),
    ):
        raw = doc.get(key)
        if raw is None:
            if required:
                reasons.append(f"{key}: required field is missing")
            values[key] = None
            continue
        try:
            values[key] = parse_utc(raw)
        except ValueError as exc:
            reasons.append(f"{key}: {exc}")
    if reasons:
        raise PayloadError(None, fetched.url, reasons)
    last = values["lastUpdate"]
    assert last is not None
    return StateStatus(
        last_update=last,
        next_update=values["nextUpdate"],
        next_update_threshold=values["nextUpdateThreshold"],
        fetched=fetched,
    )


def parse_utc(value: object) -> datetime:
    """An API time as an aware UTC datetime.

    Accepts ISO-8601 text (``Z`` or an offset, any fraction of a second; no zone = UTC) and
    epoch numbers (seconds, or milliseconds when larger than 1e11).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a time, got {value!r}")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected a time, got {type(value).__name__}")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


__all__ = [
    "AuthError",
    "Fetched",
    "HyperTrackerClient",
    "HyperTrackerError",
    "MissingTokenError",
    "QuotaExhausted",
    "RateLimiter",
    "RequestFailed",
    "StateStatus",
    "parse_status",
    "parse_utc",
]
