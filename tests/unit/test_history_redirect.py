"""HistoryClient on mock transports: the 302 is followed by a client that has no token."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from flows.hypertracker.client import HyperTrackerClient
from flows.hypertracker.errors import RequestFailed
from flows.hypertracker.history import HistoryClient, export_path, position_metrics_path
from flows.settings import Settings

TOKEN = "mock-history-token-5"
BASE = "https://api.example.test/api/external"
# The API's own origin: httpx would keep the Authorization header on such a redirect.
SAME_ORIGIN_FILE = "https://api.example.test/files/exports/k1?X-Amz-Signature=s3cr3t"


def make(api: httpx.MockTransport, files: httpx.MockTransport) -> HistoryClient:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_token=TOKEN,
        base_url=BASE,
        max_attempts=2,
        requests_per_minute=1000,
    )
    client = HyperTrackerClient(settings, transport=api, sleep=lambda s: None)
    return HistoryClient(client, file_transport=files, sleep=lambda s: None)


def test_paths_quote_the_coin_and_pick_the_window() -> None:
    assert position_metrics_path("xyz:GOLD", 3) == "/position-metrics/coin/xyz%3AGOLD/segment/3"
    assert export_path("BTC", "all") == "/exports/coins/BTC/segment-metrics"
    assert export_path("BTC", "24h") == "/exports/coins/BTC/segment-metrics-24h"
    with pytest.raises(ValueError, match="unknown window"):
        export_path("BTC", "1h")


def test_same_origin_redirect_is_followed_without_authorization() -> None:
    api_seen: list[httpx.Request] = []
    file_seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        api_seen.append(request)
        return httpx.Response(302, headers={"Location": SAME_ORIGIN_FILE})

    def files(request: httpx.Request) -> httpx.Response:
        file_seen.append(request)
        return httpx.Response(200, content=b'{"coin":"BTC","data":[]}')

    with make(httpx.MockTransport(api), httpx.MockTransport(files)) as history:
        fetched = history.segment_metrics_export("BTC", "30d")
    assert api_seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    (file,) = file_seen
    assert str(file.url) == SAME_ORIGIN_FILE
    assert "Authorization" not in file.headers
    assert TOKEN not in str(file.headers)
    assert fetched.body == b'{"coin":"BTC","data":[]}'
    assert fetched.url == f"{BASE}/exports/coins/BTC/segment-metrics-30d"
    assert "s3cr3t" not in repr(fetched)


def test_a_file_host_refusal_that_will_not_change_fails_without_the_signature() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": SAME_ORIGIN_FILE})

    def files(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=b"bad request")

    with (
        make(httpx.MockTransport(api), httpx.MockTransport(files)) as history,
        pytest.raises(RequestFailed) as caught,
    ):
        history.segment_metrics_export("BTC", "all")
    assert "HTTP 400" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_cursor_that_does_not_move_stops_the_paging() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"metrics":[],"nextCursor":"same"}')

    with make(httpx.MockTransport(api), httpx.MockTransport(api)) as history:
        pages = history.position_metrics_pages("BTC", 1, "all", datetime(2026, 11, 1, tzinfo=UTC))
        assert next(pages).cursor is None
        assert next(pages).cursor == "same"  # yielded (to be archived), then refused
        with pytest.raises(RequestFailed, match="nextCursor is the cursor that asked for it"):
            next(pages)
