"""The simulator's history endpoints over real HTTP: paging, refusals, the pre-signed file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from simulator import Fault, SimulatedApi

TOKEN = "history-sim-token-7"
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(hours=30)
PM = "/position-metrics/coin/BTC/segment/3"


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
def client(api: SimulatedApi) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=30) as c:
        yield c


def test_pages_run_newest_first_and_the_cursor_continues_without_overlap(
    api: SimulatedApi, client: httpx.Client
) -> None:
    params = {"start": "2026-11-02T00:00:00Z", "limit": "4", "positionRecencyTimeframe": "7d"}
    times: list[str] = []
    cursor = None
    for _ in range(10):
        doc = client.get(PM, params={**params, **({"nextCursor": cursor} if cursor else {})}).json()
        times += [m["createdAt"] for m in doc["metrics"]]
        cursor = doc["nextCursor"]
        if cursor is None:
            break
    assert cursor is None
    assert times == sorted(times, reverse=True)
    assert len(set(times)) == len(times)
    # One row per state published since the start (BTC always has this cohort).
    market = api.market
    expected = market.state_index_at(NOW) - market.state_index_at(START + timedelta(days=1))
    assert len(times) in (expected, expected + 1)
    assert times[-1] >= "2026-11-02T00:00:00.000Z"


def test_history_starts_at_the_market_start(client: httpx.Client) -> None:
    doc = client.get(PM, params={"start": "2026-01-01T00:00:00Z", "end": "2026-11-01T01:00:00Z"})
    rows = doc.json()["metrics"]
    assert rows
    assert min(r["createdAt"] for r in rows) >= "2026-11-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        (PM, {}, 400),  # start is required
        (PM, {"start": "yesterday"}, 400),
        (PM, {"start": "2026-11-01T00:00:00Z", "limit": "1001"}, 400),
        (PM, {"start": "2026-11-01T00:00:00Z", "positionRecencyTimeframe": "1h"}, 400),
        (PM, {"start": "2026-11-01T00:00:00Z", "nextCursor": "garbage!"}, 400),
        ("/position-metrics/coin/BTC/segment/17", {"start": "2026-11-01T00:00:00Z"}, 400),
        ("/position-metrics/coin/NOPE/segment/1", {"start": "2026-11-01T00:00:00Z"}, 404),
        ("/exports/coins/NOPE/segment-metrics", {}, 404),
    ],
)
def test_refusals(client: httpx.Client, path: str, params: dict, status: int) -> None:
    assert client.get(path, params=params).status_code == status


def test_history_needs_the_token(api: SimulatedApi) -> None:
    assert httpx.get(f"{api.base_url}{PM}?start=2026-11-01T00:00:00Z").status_code == 401


def test_export_redirects_to_a_presigned_file_that_expires(
    api: SimulatedApi, client: httpx.Client
) -> None:
    answer = client.get("/exports/coins/xyz:GOLD/segment-metrics-24h")
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(f"http://127.0.0.1:{api.port}/files/exports/")
    file = httpx.get(location)  # no token: the signature is the credential
    assert file.status_code == 200
    doc = file.json()
    assert doc["coin"] == "xyz:GOLD"
    assert [d["segment"]["id"] for d in doc["data"]] == list(range(1, 17))
    assert httpx.get(location.replace("Signature=", "Signature=0")).status_code == 404
    api.history.url_ttl_s = 0.0
    expired = client.get("/exports/coins/BTC/segment-metrics").headers["Location"]
    assert httpx.get(expired).status_code == 403


def test_the_file_host_logs_a_token_sent_to_it(api: SimulatedApi, client: httpx.Client) -> None:
    first = client.get("/exports/coins/BTC/segment-metrics").headers["Location"]
    second = client.get("/exports/coins/BTC/segment-metrics-7d").headers["Location"]
    httpx.get(first)
    client.get(second)  # the API client's headers: the token goes along
    # Keyed by file: the server records a request after answering it, so two requests in a
    # row may be logged in either order.
    seen = {r["path"]: r["token_seen"] for r in api.history.file_requests()}
    assert seen == {urlsplit(first).path: False, urlsplit(second).path: True}


@pytest.mark.parametrize("path", ["position_metrics", "segment_metrics_export", "export_file"])
def test_rate_limits_reach_the_history_paths(
    api: SimulatedApi, client: httpx.Client, path: str
) -> None:
    api.inject(Fault(kind="rate_limit", path=path, retry_after=7))
    if path == "export_file":
        location = client.get("/exports/coins/BTC/segment-metrics").headers["Location"]
        answer = httpx.get(location)
    elif path == "segment_metrics_export":
        answer = client.get("/exports/coins/BTC/segment-metrics")
    else:
        answer = client.get(PM, params={"start": "2026-11-01T20:00:00Z"})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert api.request_log[-1].status == 429
