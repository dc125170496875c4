"""The info client: weight pacing, retries, the server's clock, and no token, ever."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson
import pytest

from flows.hyperliquid.client import HyperliquidClient
from flows.hyperliquid.errors import InfoRequestFailed
from flows.hyperliquid.limiter import WeightLimiter
from flows.settings import Settings

TOKEN = "tok_hypertracker_only_9d2e"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def settings(**overrides: object) -> Settings:
    base = {"api_token": TOKEN, "hyperliquid_url": "http://info.test", "backoff_base_s": 0.1}
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def test_the_limiter_never_lets_more_than_the_budget_into_a_minute() -> None:
    clock = FakeClock()
    limiter = WeightLimiter(100, clock=clock, sleep=clock.sleep)
    sent: list[tuple[float, int]] = []
    for weight in [20, 20, 20, 20, 20, 20, 30, 20, 50]:
        limiter.acquire(weight)
        sent.append((clock.now, weight))
        clock.now += 1.0
    for at, _ in sent:
        assert sum(w for t, w in sent if at - 60 < t <= at) <= 100
    assert clock.slept  # the sixth request had to wait for the first to leave the window
    limiter.charge(500)  # weight learned after an answer is counted ...
    before = clock.now
    limiter.acquire(20)  # ... and waited for
    assert clock.now - before >= 59


def test_a_weight_above_the_budget_goes_alone_once_the_window_is_empty() -> None:
    clock = FakeClock()
    limiter = WeightLimiter(50, clock=clock, sleep=clock.sleep)
    limiter.acquire(20)
    limiter.acquire(120)
    assert clock.now >= 60
    assert limiter.spent == 120


def transport(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handle)


def test_requests_carry_no_token_and_post_the_documented_body() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(200, content=b"[]")]
    with HyperliquidClient(settings(), transport=transport(answers, seen)) as client:
        fetched = client.funding_history("xyz:GOLD", 1000, 3_601_000)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://info.test/info"
    assert orjson.loads(request.content) == {
        "type": "fundingHistory", "coin": "xyz:GOLD", "startTime": 1000, "endTime": 3_601_000,
    }  # fmt: skip
    assert "authorization" not in {k.lower() for k in request.headers}
    assert TOKEN not in repr(request.headers) + request.content.decode() + str(request.url)
    assert fetched.weight == 20  # 20 per call, plus 1 per 20 rows returned (none)


def test_retries_back_off_and_the_server_clock_stamps_the_answer() -> None:
    clock = FakeClock()
    seen: list[httpx.Request] = []
    date = {"Date": "Mon, 17 Jul 2023 21:43:24 GMT"}
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, content=b"[]", headers=date),
    ]
    limiter = WeightLimiter(10_000, clock=clock, sleep=clock.sleep)
    with HyperliquidClient(
        settings(), transport=transport(answers, seen), sleep=clock.sleep, clock=clock,
        rng=lambda: 0.5, limiter=limiter,
    ) as client:  # fmt: skip
        fetched = client.meta_and_asset_ctxs("xyz")
    assert len(seen) == 3
    assert clock.slept == [2.0, 0.1]  # Retry-After, then half of 2 x 0.1 s
    assert fetched.attempts == 3
    assert client.weight_sent == 60  # each attempt counts
    assert fetched.fetched_at == datetime(2023, 7, 17, 21, 43, 24, 999000, tzinfo=UTC)


def test_retries_run_out_in_one_clear_line() -> None:
    clock = FakeClock()
    answers = [httpx.Response(503, text="busy") for _ in range(3)]
    with (
        HyperliquidClient(
            settings(max_attempts=3), transport=transport(answers, []), sleep=clock.sleep,
            clock=clock, rng=lambda: 0.0, limiter=WeightLimiter(1000, clock=clock),
        ) as client,
        pytest.raises(InfoRequestFailed) as err,
    ):  # fmt: skip
        client.meta_and_asset_ctxs("")
    message = str(err.value)
    assert "\n" not in message
    assert "metaAndAssetCtxs dex=''" in message
    assert "after 3 attempt(s): HTTP 503" in message
    assert err.value.status == 503


def test_a_refused_request_is_not_retried() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(422, text="Failed to deserialize the JSON body")]
    with (
        HyperliquidClient(settings(), transport=transport(answers, seen)) as client,
        pytest.raises(InfoRequestFailed, match="HTTP 422"),
    ):
        client.candles("BTC", "1h", 0, 3_600_000)
    assert len(seen) == 1


def test_items_beyond_the_estimate_are_charged() -> None:
    clock = FakeClock()
    candles = [{"t": i} for i in range(130)]
    answers = [httpx.Response(200, content=orjson.dumps(candles))]
    limiter = WeightLimiter(10_000, clock=clock, sleep=clock.sleep)
    with HyperliquidClient(
        settings(), transport=transport(answers, []), limiter=limiter, clock=clock
    ) as client:
        fetched = client.candles("BTC", "1h", 0, 3_600_000)  # expects 2 candles: weight 21
    assert fetched.weight == 20 + 3
    assert limiter.spent == 23


def test_the_info_url_is_checked_and_named_by_its_variable() -> None:
    assert settings(hyperliquid_url="http://127.0.0.1:9/").hyperliquid_url == "http://127.0.0.1:9"
    assert Settings().hyperliquid_url == "https://api.hyperliquid.xyz"
    with pytest.raises(ValueError, match=r"HT_HYPERLIQUID_URL='api\.hyperliquid\.xyz' is not an"):
        settings(hyperliquid_url="api.hyperliquid.xyz")
