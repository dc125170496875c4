"""HistoryClient against the simulated API: cursors, resume, the 302 without the token, 429s."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from flows.hypertracker.client import HyperTrackerClient
from flows.hypertracker.errors import RequestFailed
from flows.hypertracker.history import HistoryClient
from flows.hypertracker.history_payload import parse_position_metrics, parse_segment_export
from flows.settings import Settings
from simulator import Fault, SimulatedApi

TOKEN = "history-client-token-99"
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(hours=30)


@pytest.fixture(scope="module")
def api() -> Iterator[SimulatedApi]:
    with SimulatedApi(seed=7, token=TOKEN, start=START, now=NOW, history_days=1) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(api: SimulatedApi) -> Iterator[None]:
    api.clear_faults()
    api.clear_request_log()
    api.history.url_ttl_s = 30.0
    yield
    api.clear_faults()


@pytest.fixture
def counted(api: SimulatedApi) -> Iterator[tuple[HistoryClient, list[int]]]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_token=TOKEN,
        base_url=api.base_url,
        requests_per_minute=100_000,
        backoff_base_s=0.01,
        max_attempts=3,
    )
    requests: list[int] = []
    with (
        HyperTrackerClient(settings, on_request=lambda: requests.append(1)) as client,
        HistoryClient(client, sleep=lambda s: None) as history,
    ):
        yield history, requests


def test_pages_follow_the_cursor_and_resume_from_one(
    api: SimulatedApi, counted: tuple[HistoryClient, list[int]]
) -> None:
    history, requests = counted
    start = START + timedelta(hours=22)
    pages = list(history.position_metrics_pages("ETH", 5, "all", start, limit=3))
    assert len(pages) >= 3
    assert len(requests) == len(pages)  # each page is one request on the quota
    assert pages[0].cursor is None
    assert pages[-1].next_cursor is None
    assert all(a.next_cursor == b.cursor for a, b in itertools.pairwise(pages))
    rows = [
        r
        for p in pages
        for r in parse_position_metrics(p.fetched, coin="ETH", segment_id=5, window="all").rows
    ]
    times = [r.created_at for r in rows]
    assert times == sorted(times, reverse=True)
    assert pages[0].fetched.body.startswith(b'{"metrics":')  # verbatim, to be archived
    # Killed after the second page: resuming from its cursor gives the same rest.
    resumed = list(
        history.position_metrics_pages("ETH", 5, "all", start, limit=3, cursor=pages[1].next_cursor)
    )
    assert [p.fetched.body for p in resumed] == [p.fetched.body for p in pages[2:]]


def test_export_follows_the_302_without_the_token(
    api: SimulatedApi, counted: tuple[HistoryClient, list[int]]
) -> None:
    history, requests = counted
    fetched = history.segment_metrics_export("xyz:GOLD", "7d")
    rows = parse_segment_export(fetched, coin="xyz:GOLD", window="7d")
    assert rows
    assert fetched.url == f"{api.base_url}/exports/coins/xyz%3AGOLD/segment-metrics-7d"
    assert "Signature" not in repr(fetched)
    assert len(requests) == 1  # the file is not an API request
    (file,) = api.history.file_requests()
    assert file["status"] == 200
    assert file["token_seen"] is False
    api_calls = [r for r in api.request_log if r.path.startswith("/api/external/exports")]
    assert [r.status for r in api_calls] == [302]


def test_a_failing_file_is_asked_for_again_with_a_fresh_url(
    api: SimulatedApi, counted: tuple[HistoryClient, list[int]]
) -> None:
    history, requests = counted
    api.inject(Fault(kind="server_error", path="export_file", status=503))
    history.segment_metrics_export("BTC", "all")
    assert [f["status"] for f in api.history.file_requests()] == [503, 200]
    assert len(requests) == 2
    assert not any(f["token_seen"] for f in api.history.file_requests())


def test_an_expired_url_fails_in_one_line_without_secrets(
    api: SimulatedApi, counted: tuple[HistoryClient, list[int]]
) -> None:
    history, _ = counted
    api.history.url_ttl_s = 0.0
    with pytest.raises(RequestFailed) as caught:
        history.segment_metrics_export("BTC", "24h")
    message = str(caught.value)
    assert "the file host answered HTTP 403" in message
    assert TOKEN not in message
    assert "Signature" not in message
    assert "/files/" not in message
    assert len(api.history.file_requests()) == 3  # max_attempts fresh URLs


def test_429_on_a_page_is_retried(
    api: SimulatedApi, counted: tuple[HistoryClient, list[int]]
) -> None:
    history, requests = counted
    api.inject(Fault(kind="rate_limit", path="position_metrics", retry_after=0, times=2))
    pages = list(history.position_metrics_pages("BTC", 1, "30d", NOW - timedelta(hours=1)))
    assert len(pages) == 1
    assert pages[0].fetched.attempts == 3
    assert len(requests) == 3


def test_unknown_coin_fails_at_once_without_the_token(
    counted: tuple[HistoryClient, list[int]],
) -> None:
    history, _ = counted
    with pytest.raises(RequestFailed) as caught:
        next(history.position_metrics_pages("NOPE", 1, "all", START))
    assert caught.value.status == 404
    assert TOKEN not in str(caught.value)


def test_a_page_cut_short_is_fetched_again(
    api: SimulatedApi, counted: tuple[HistoryClient, list[int]]
) -> None:
    history, _ = counted
    api.inject(Fault(kind="truncate", path="position_metrics"))
    (page,) = history.position_metrics_pages("BTC", 2, "all", NOW - timedelta(hours=1))
    assert page.fetched.attempts == 2
    assert parse_position_metrics(page.fetched, coin="BTC", segment_id=2, window="all").rows
