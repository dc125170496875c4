"""The simulator's plan rate: any rolling minute, 429 + Retry-After beyond it, and the
production client kept within it (or recovering from a 429) over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from flows.hypertracker.client import RATE_LIMIT_MARGIN_S, HyperTrackerClient
from flows.settings import Settings
from simulator import SimulatedApi
from simulator.faults import RateLimit
from tests.unit.test_client import FakeClock

TOKEN = "rate-token"
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def test_a_rolling_minute_admits_the_plan_and_says_when_the_next_fits() -> None:
    clock = FakeClock()
    limit = RateLimit(3, clock=clock)
    assert [limit.admit() for _ in range(3)] == [None, None, None]
    clock.now += 20.5
    assert limit.admit() == 40  # the oldest leaves the window 39.5 s from now: whole seconds
    clock.now += 39.4
    assert limit.admit() == 1  # never 0
    clock.now += 0.1
    assert limit.admit() is None  # the first left the window; refused requests took no place
    assert (limit.admitted, limit.refused) == (4, 2)
    with pytest.raises(ValueError, match=">= 1"):
        RateLimit(0)


@pytest.fixture
def api() -> Iterator[tuple[SimulatedApi, FakeClock]]:
    clock = FakeClock()
    with SimulatedApi(seed=7, token=TOKEN, now=NOW) as server:
        server.rate_limit = RateLimit(2, clock=clock)
        yield server, clock


def test_hypertracker_requests_beyond_the_rate_get_429_with_retry_after(api) -> None:
    server, _ = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        assert c.get("/segments").status_code == 401  # no token: not counted
        assert c.get("/segments", headers=auth).status_code == 200
        assert c.post(f"{server.info_url}/info", json={"type": "meta"}).status_code != 429
        export = c.get("/exports/coins/BTC/segment-metrics", headers=auth)
        assert export.status_code == 302  # the second request of the minute
        file = httpx.get(export.headers["Location"], timeout=30)  # pre-signed: not counted
        assert file.status_code == 200
        over = c.get("/hypertracker/state/status", headers=auth)
        assert over.status_code == 429
        assert over.headers["Retry-After"] == "60"
        assert orjson.loads(over.content) == {
            "error": "rate_limit_exceeded",
            "message": "Rate limit exceeded",
            "retry_after": 60,
        }
        metrics = c.get(
            "/position-metrics/coin/BTC/segment/1",
            params={"start": "2026-11-03T00:00:00Z"},
            headers=auth,
        )
        assert metrics.status_code == 429  # the history endpoints count too
    statuses = [(r.path.rsplit("/", 1)[-1], r.status) for r in server.request_log]
    assert statuses[-2:] == [("status", 429), ("1", 429)]
    assert (server.rate_limit.admitted, server.rate_limit.refused) == (2, 2)


def _client(server: SimulatedApi, clock: FakeClock, per_minute: int) -> HyperTrackerClient:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_token=TOKEN,
        base_url=server.base_url,
        requests_per_minute=per_minute,
        backoff_base_s=0.01,
    )
    return HyperTrackerClient(settings, sleep=clock.sleep, clock=clock, rng=lambda: 0.5)


def test_the_client_at_the_plans_rate_never_hears_429(api) -> None:
    server, clock = api
    with _client(server, clock, 2) as client:
        for _ in range(5):
            client.segments()
    assert [r.status for r in server.request_log] == [200] * 5
    # 2 a minute: the 3rd and the 5th wait, each a minute and the client's margin
    assert sum(clock.sleeps) == pytest.approx(2 * (60 + RATE_LIMIT_MARGIN_S))


def test_a_client_faster_than_the_plan_waits_as_told_and_gets_through(api) -> None:
    server, clock = api
    with _client(server, clock, 3) as client:
        for _ in range(3):
            client.segments()
    assert [r.status for r in server.request_log] == [200, 200, 429, 200]
    # Retry-After, honoured; then the client's own minute (with its margin) ends too
    assert clock.sleeps == [60, RATE_LIMIT_MARGIN_S]
    assert client.request_count == 4  # the refused request counts on the quota too
