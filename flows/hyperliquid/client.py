"""The Hyperliquid info client: ``POST {HT_HYPERLIQUID_URL}/info``, weight-paced and retried.

The info API is public: this client has no token and sends no ``Authorization`` header,
so HyperTracker's bearer token can never reach it (it is a different ``httpx.Client``, not
a request on HyperTracker's). What it does for every request, as the HyperTracker client
does (flows/hypertracker/client.py):

- paces itself by weight (``HT_HYPERLIQUID_WEIGHT_PER_MINUTE`` in any rolling 60 s; one
  budget per process, shared by the market capture and the price history);
- retries 429, 408 and 5xx, timeouts, dropped connections and truncated bodies with
  exponential back-off and full jitter, honouring a numeric ``Retry-After``, within
  ``HT_MAX_ATTEMPTS`` and ``HT_HYPERLIQUID_MAX_RETRY_WAIT_S`` of waiting;
- fails at once on any other status (:class:`InfoRequestFailed`).

``fetched_at`` is the server's clock when it answered: the HTTP ``Date`` header (whole
seconds) taken at the end of its second, else this machine's clock. A candle closes at
``...59.999``, so "fetched after its close" is then exact; and the simulator's clock, which
may be days from the wall clock in the demo, stamps what it served.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from flows.hyperliquid.errors import InfoRequestFailed
from flows.hyperliquid.limiter import WeightLimiter, shared_limiter
from flows.hypertracker.client import RETRY_EXCEPTIONS, RETRY_STATUSES, USER_AGENT
from flows.settings import Settings

logger = logging.getLogger(__name__)

INFO_PATH = "/info"
# Documented weights (hyperliquid-info.md): 20 per call, plus 1 per 60 candles or 20 funding rows.
BASE_WEIGHT = 20
CANDLE_ITEMS_PER_WEIGHT = 60
FUNDING_ITEMS_PER_WEIGHT = 20
MAX_CANDLES = 5000  # the API keeps the newest 5000 candles per coin and interval
FUNDING_PAGE = 500  # rows per fundingHistory answer
EXCERPT_CHARS = 160


@dataclass(frozen=True, slots=True)
class InfoFetched:
    """One successful answer, body verbatim, with the request that asked for it."""

    request: Mapping[str, Any]
    url: str
    status: int
    body: bytes = field(repr=False)
    fetched_at: datetime
    elapsed_s: float
    attempts: int
    weight: int

    @property
    def what(self) -> str:
        return describe(self.request)


def describe(request: Mapping[str, Any]) -> str:
    """A request in a few words, for messages: ``metaAndAssetCtxs dex=xyz``."""
    inner = request.get("req", request)
    parts = [str(request.get("type"))]
    for key in ("dex", "coin", "interval"):
        if key in inner:
            parts.append(f"{key}={inner[key]!r}" if key == "dex" else f"{key}={inner[key]}")
    return " ".join(parts)


def server_time(response: httpx.Response) -> datetime:
    """When the server answered: its ``Date`` header at the end of that second, else now."""
    header = response.headers.get("Date")
    if header:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
            return when + timedelta(milliseconds=999)
    return datetime.now(UTC)


class HyperliquidClient:
    """Asks the info API. Use as a context manager (it owns a connection pool).

    ``transport``, ``sleep``, ``clock``, ``rng`` and ``limiter`` are for tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        limiter: WeightLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.url = settings.hyperliquid_url + INFO_PATH
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._limiter = limiter or shared_limiter(
            settings.hyperliquid_url, settings.hyperliquid_weight_per_minute
        )
        self.weight_sent = 0
        self.requests_sent = 0
        # No auth, no default Authorization header: nothing of HyperTracker's is shared.
        self._http = httpx.Client(
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=False,
            transport=transport,
        )

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
        self._http.close()

    def __repr__(self) -> str:
        return f"HyperliquidClient(url={self.url!r})"

    # --- the three calls ---------------------------------------------------------------
    def meta_and_asset_ctxs(self, dex: str) -> InfoFetched:
        """The current market of one dex (``''`` is the main dex): universe and contexts."""
        return self.post({"type": "metaAndAssetCtxs", "dex": dex}, BASE_WEIGHT)

    def candles(self, coin: str, interval: str, start_ms: int, end_ms: int) -> InfoFetched:
        """Candles overlapping ``[start_ms, end_ms]`` (the newest 5000 at most)."""
        request = {
            "type": "candleSnapshot",
            "req": {"coin": coin, "interval": interval, "startTime": start_ms, "endTime": end_ms},
        }
        expected = min(MAX_CANDLES, max(1, (end_ms - start_ms) // 3_600_000 + 1))
        return self.post(request, BASE_WEIGHT, expected, CANDLE_ITEMS_PER_WEIGHT)

    def funding_history(self, coin: str, start_ms: int, end_ms: int) -> InfoFetched:
        """Funding rows from ``start_ms`` to ``end_ms``, the first 500 at most."""
        request = {"type": "fundingHistory", "coin": coin, "startTime": start_ms, "endTime": end_ms}
        expected = min(FUNDING_PAGE, max(1, (end_ms - start_ms) // 3_600_000 + 1))
        return self.post(request, BASE_WEIGHT, expected, FUNDING_ITEMS_PER_WEIGHT)

    # --- the one request loop ------------------------------------------------------------
    def post(
        self,
        request: Mapping[str, Any],
        base_weight: int,
        expected_items: int = 0,
        items_per_weight: int = 0,
    ) -> InfoFetched:
        """POST ``request`` with pacing and retries; the 200 answer verbatim.

        The weight acquired before each attempt counts the items expected; once the answer
        is in, items beyond that are charged too.
        """
        s = self.settings
        what = describe(request)
        payload = orjson.dumps(request)
        per_attempt = base_weight + (
            math.ceil(expected_items / items_per_weight) if items_per_weight else 0
        )
        started = self._clock()
        waited = 0.0
        status: int | None = None
        reason = ""
        attempt = 0
        for attempt in range(1, s.max_attempts + 1):
            self._limiter.acquire(per_attempt)
            self.weight_sent += per_attempt
            self.requests_sent += 1
            retry_after: float | None = None
            status = None
            try:
                response = self._http.post(
                    self.url, content=payload, headers={"Content-Type": "application/json"}
                )
            except RETRY_EXCEPTIONS as exc:
                reason = f"{type(exc).__name__}: {str(exc) or 'no detail'}"
            except httpx.HTTPError as exc:
                raise InfoRequestFailed(
                    self.url, what, None, f"{type(exc).__name__}: {exc}", attempt
                ) from None
            else:
                status = response.status_code
                if status == 200:
                    return self._answer(request, response, started, attempt, per_attempt,
                                        base_weight, items_per_weight)  # fmt: skip
                excerpt = " ".join(response.text[:EXCERPT_CHARS].split())
                reason = f"HTTP {status} {response.reason_phrase}".rstrip()
                reason += f" ({excerpt!r})" if excerpt else ""
                if status not in RETRY_STATUSES:
                    raise InfoRequestFailed(self.url, what, status, reason, attempt)
                retry_after = _retry_after_seconds(response)
            remaining = s.hyperliquid_max_retry_wait_s - waited
            if attempt == s.max_attempts or remaining <= 0:
                break
            if retry_after is not None and retry_after > remaining:
                reason += f"; the server asks to wait {retry_after:.0f} s"
                break
            backoff = self._rng() * s.backoff_base_s * 2 ** (attempt - 1)
            wait = min(max(backoff, retry_after or 0.0), remaining)
            logger.warning(
                "POST %s (%s): %s (attempt %d/%d); retrying in %.2f s",
                self.url, what, reason, attempt, s.max_attempts, wait,
            )  # fmt: skip
            self._sleep(wait)
            waited += wait
        raise InfoRequestFailed(
            self.url, what, status, f"{reason} (waited {waited:.1f} s)", attempt
        )

    def _answer(
        self,
        request: Mapping[str, Any],
        response: httpx.Response,
        started: float,
        attempt: int,
        acquired: int,
        base_weight: int,
        items_per_weight: int,
    ) -> InfoFetched:
        body = response.content
        weight = acquired
        if items_per_weight:
            try:
                items = orjson.loads(body)
            except orjson.JSONDecodeError:
                items = None
            if isinstance(items, list):
                weight = base_weight + math.ceil(len(items) / items_per_weight)
                self._limiter.charge(weight - acquired)
                self.weight_sent += max(0, weight - acquired)
        return InfoFetched(
            request=request,
            url=self.url,
            status=response.status_code,
            body=body,
            fetched_at=server_time(response),
            elapsed_s=self._clock() - started,
            attempts=attempt,
            weight=weight,
        )


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """A numeric ``Retry-After`` (seconds); Hyperliquid documents none, so nothing else."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
