"""HyperTracker's history endpoints, through the production client's ``get``.

:class:`HistoryClient` wraps a :class:`~flows.hypertracker.client.HyperTrackerClient`, so
every API request is paced, retried, counted by the quota hook and scrubbed of the token
as the heatmap's are. Two endpoints (see ``/work/shared/reference/history-endpoints.md``):

- :meth:`HistoryClient.position_metrics_pages`: one coin x cohort x window, page by page
  along ``nextCursor``. A generator of :class:`Page`: each holds the response verbatim
  (archive it before parsing) and the cursor that asked for it, so a backfill killed midway
  resumes from its last archived page's ``next_cursor``.
- :meth:`HistoryClient.segment_metrics_export`: the API answers 302 to a pre-signed file
  that expires in about 30 s. The redirect is *not* followed by the API client: on the same
  origin httpx would keep the Authorization header. The file is fetched by a separate
  ``httpx.Client`` that has no token at all, at once; an expired or failing file is asked
  for again (a fresh URL, one more API request). The pre-signed URL is never logged, nor
  put in an error or a ``Fetched`` (``Fetched.url`` is the API URL asked for).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from flows.hypertracker.client import USER_AGENT, Fetched, HyperTrackerClient
from flows.hypertracker.errors import RequestFailed
from flows.hypertracker.history_payload import next_cursor

logger = logging.getLogger(__name__)

HISTORY_WINDOWS = ("24h", "7d", "30d", "all")
# Where position-metrics history begins, per window (history-endpoints.md; unverified).
HISTORY_START = {
    "all": datetime(2026, 2, 19, tzinfo=UTC),
    "24h": datetime(2026, 3, 19, tzinfo=UTC),
    "7d": datetime(2026, 3, 19, tzinfo=UTC),
    "30d": datetime(2026, 3, 19, tzinfo=UTC),
}
MAX_LIMIT = 1000
# Statuses of the file host worth asking the API for a fresh URL: expired (403), gone
# (404, 410), or the storage failing.
_FILE_RETRY = frozenset({403, 404, 408, 410, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Page:
    """One position-metrics page: the response verbatim, the cursor sent and the next one."""

    fetched: Fetched
    cursor: str | None
    next_cursor: str | None


def position_metrics_path(coin: str, segment_id: int) -> str:
    """``/position-metrics/coin/{coin}/segment/{id}`` (the coin quoted: ``xyz%3AGOLD``)."""
    return f"/position-metrics/coin/{quote(coin, safe='')}/segment/{int(segment_id)}"


def export_path(coin: str, window: str) -> str:
    """``/exports/coins/{coin}/segment-metrics`` with the window's suffix (none for all)."""
    _check_window(window)
    suffix = "" if window == "all" else f"-{window}"
    return f"/exports/coins/{quote(coin, safe='')}/segment-metrics{suffix}"


class HistoryClient:
    """The history endpoints over one HyperTrackerClient (which the caller owns and closes).

    ``file_transport`` and ``sleep`` are for tests (a mock storage host; no real waits).
    """

    def __init__(
        self,
        client: HyperTrackerClient,
        *,
        file_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._sleep = sleep
        s = client.settings
        # No auth, no Authorization default header: this client cannot leak the token.
        self._files = httpx.Client(
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(s.read_timeout_s, connect=s.connect_timeout_s),
            follow_redirects=False,
            transport=file_transport,
        )

    def close(self) -> None:
        """Close the file host's connection pool (the API client is the caller's)."""
        self._files.close()

    def __enter__(self) -> HistoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- position-metrics ----------------------------------------------------------------

    def position_metrics_pages(
        self,
        coin: str,
        segment_id: int,
        window: str,
        start: datetime,
        end: datetime | None = None,
        *,
        limit: int = MAX_LIMIT,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        """Pages newest first, from ``cursor`` (None: the newest) until ``nextCursor`` is null.

        Each page is one request. The cursor is read with a minimal check here (the caller
        validates the rows with ``parse_position_metrics``); a body that is not JSON with a
        string-or-null ``nextCursor`` raises PayloadError after the page is yielded, so it
        can still be archived (quarantined).
        """
        _check_window(window)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_LIMIT}, got {limit}")
        path = position_metrics_path(coin, segment_id)
        params = {
            "start": _iso(start),
            "positionRecencyTimeframe": window,
            "limit": str(limit),
        }
        if end is not None:
            params["end"] = _iso(end)
        while True:
            asked = dict(params, nextCursor=cursor) if cursor else params
            fetched = self._client.get("position_metrics", path, params=asked, window=window)
            following = next_cursor(fetched)
            yield Page(fetched=fetched, cursor=cursor, next_cursor=following)
            if following is None:
                return
            if following == cursor:
                raise RequestFailed(
                    fetched.url,
                    status=fetched.status,
                    reason="the page's nextCursor is the cursor that asked for it",
                    attempts=fetched.attempts,
                    window=window,
                    advice="The API is not paging: stop and report it; resume later",
                )
            cursor = following

    # --- the export --------------------------------------------------------------------------

    def segment_metrics_export(self, coin: str, window: str) -> Fetched:
        """The export of one coin and window: the file's body verbatim, as a Fetched.

        ``url`` is the API URL asked for, ``attempts`` counts API requests (the file fetches
        are assumed free). Raises RequestFailed when the file cannot be had within
        ``HT_MAX_ATTEMPTS`` fresh URLs.
        """
        path = export_path(coin, window)
        started = time.monotonic()
        s = self._client.settings
        api_requests = 0
        reason = ""
        status: int | None = None
        url = ""
        for attempt in range(1, s.max_attempts + 1):
            redirect = self._client.get(
                "segment_metrics_export", path, window=window, follow_redirects=False
            )
            api_requests += redirect.attempts
            url = redirect.url
            if redirect.location is None:
                return redirect  # the body itself (a server that inlines the file)
            target = httpx.URL(redirect.url).join(redirect.location)
            try:
                response = self._files.get(target)
            except httpx.HTTPError as exc:
                # The exception's text may hold the pre-signed URL: its type says enough.
                status, reason = None, f"the file host failed: {type(exc).__name__}"
            else:
                status = response.status_code
                if status == 200:
                    return Fetched(
                        endpoint="segment_metrics_export",
                        window=window,
                        url=redirect.url,
                        status=200,
                        body=response.content,
                        fetched_at=datetime.now(UTC),
                        elapsed_s=time.monotonic() - started,
                        attempts=api_requests,
                    )
                reason = f"the file host answered HTTP {status}"
                if status not in _FILE_RETRY:
                    break
            if attempt < s.max_attempts:
                logger.warning(
                    "GET %s: %s (attempt %d/%d); asking for a fresh file URL",
                    url,
                    reason,
                    attempt,
                    s.max_attempts,
                )
                self._sleep(min(s.backoff_base_s * 2 ** (attempt - 1), 5.0))
        raise RequestFailed(
            url,
            status=status,
            reason=f"{reason} (pre-signed file, {api_requests} API request(s))",
            attempts=api_requests,
            window=window,
            advice="The export's file could not be fetched: run again later",
        )


def _check_window(window: str) -> None:
    if window not in HISTORY_WINDOWS:
        raise ValueError(f"unknown window {window!r}; expected one of {HISTORY_WINDOWS}")


def _iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``; naive = UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
