"""The HTTP client against httpx.MockTransport (and one raw socket on 127.0.0.1).

Nothing here really sleeps: the client gets a fake clock whose ``sleep`` records the wait and
moves time forward, so back-off and pacing are checked by value, never by timing.
"""

from __future__ import annotations

import logging
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import orjson
import pytest
from pydantic import SecretStr

from flows.hypertracker.client import (
    RATE_LIMIT_MARGIN_S,
    Fetched,
    HyperTrackerClient,
    RateLimiter,
    parse_utc,
)
from flows.hypertracker.errors import (
    AuthError,
    MissingTokenError,
    PayloadError,
    QuotaExhausted,
    RequestFailed,
)
from flows.settings import Settings

TOKEN = "tok-SeCrEt-9f8e7d6c5b4a"
BASE = "https://api.test/api/external"
HEATMAP_BODY = b'{"heatmap": [{"coin": "BTC"}]}'


class FakeClock:
    """A monotonic clock that only moves when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "api_token": TOKEN,
        "base_url": BASE,
        "max_attempts": 5,
        "backoff_base_s": 0.5,
        "max_retry_wait_s": 120.0,
        "requests_per_minute": 1000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., HyperTrackerClient]]:
    clients: list[HyperTrackerClient] = []

    def make(
        handler: Handler,
        rng: float = 0.0,
        on_request: Callable[[], None] | None = None,
        **overrides: object,
    ) -> HyperTrackerClient:
        client = HyperTrackerClient(
            make_settings(**overrides),
            transport=httpx.MockTransport(handler),
            sleep=clock.sleep,
            clock=clock,
            rng=lambda: rng,
            on_request=on_request,
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def scripted(*steps: httpx.Response | type[Exception] | Exception) -> tuple[Handler, list]:
    """A handler that answers with each step in turn (an exception class is raised)."""
    seen: list[httpx.Request] = []
    queue = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, type):
            raise step("simulated failure", request=request)  # type: ignore[call-arg]
        if isinstance(step, Exception):
            raise step
        return step

    return handler, seen


def ok(body: bytes = HEATMAP_BODY) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})


# --- the happy path ------------------------------------------------------------------------
def test_heatmap_sends_bearer_and_returns_body_verbatim(make_client) -> None:
    handler, seen = scripted(ok())
    client = make_client(handler)
    got = client.heatmap("24h")
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen[0].url.path == "/api/external/positions/heatmap"
    assert seen[0].url.params["openedWithin"] == "24h"
    assert got.body == HEATMAP_BODY
    assert (got.endpoint, got.window, got.status, got.attempts) == ("heatmap", "24h", 200, 1)
    assert got.url == f"{BASE}/positions/heatmap?openedWithin=24h"
    assert got.fetched_at.tzinfo is not None
    assert got.fetched_at.utcoffset() == timedelta(0)
    assert client.request_count == 1


def test_missing_token_is_a_config_error() -> None:
    with pytest.raises(MissingTokenError, match="HT_API_TOKEN") as info:
        HyperTrackerClient(make_settings(api_token=None))
    assert isinstance(info.value, AuthError)


def test_segments_and_status(make_client) -> None:
    status_body = orjson.dumps(
        {
            "lastUpdate": "2026-11-24T15:30:00.000Z",
            "nextUpdate": "2026-11-24T15:45:00Z",
            "nextUpdateThreshold": None,
        }
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/hypertracker/state/status"):
            return ok(status_body)
        if request.url.path.endswith("/segments"):
            return ok(b'[{"id": 1, "name": "Fish"}]')
        return httpx.Response(404)

    client = make_client(handler)
    status = client.status()
    assert status.last_update == datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    assert status.next_update == datetime(2026, 11, 24, 15, 45, tzinfo=UTC)
    assert status.next_update_threshold is None
    assert status.snapshot_id == "20261124T153000000Z"
    assert status.fetched.body == status_body
    assert client.segments().body == b'[{"id": 1, "name": "Fish"}]'


def test_status_without_last_update_is_a_payload_error(make_client) -> None:
    handler, _ = scripted(ok(b'{"nextUpdate": "2026-11-24T15:45:00Z"}'))
    with pytest.raises(PayloadError, match="lastUpdate"):
        make_client(handler).status()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-02-25T00:00:00.000Z", datetime(2026, 2, 25, tzinfo=UTC)),
        ("2026-02-25T00:00:00.123Z", datetime(2026, 2, 25, 0, 0, 0, 123000, tzinfo=UTC)),
        ("2026-02-25T02:00:00+02:00", datetime(2026, 2, 25, tzinfo=UTC)),
        ("2026-02-25T00:00:00", datetime(2026, 2, 25, tzinfo=UTC)),
        (1771977600000, datetime(2026, 2, 25, tzinfo=UTC)),
        (1771977600, datetime(2026, 2, 25, tzinfo=UTC)),
    ],
)
def test_parse_utc(raw: object, expected: datetime) -> None:
    assert parse_utc(raw) == expected


# --- failing fast --------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_immediate_and_names_no_token(make_client, clock, status) -> None:
    handler, seen = scripted(httpx.Response(status, text=f"invalid token {TOKEN}"))
    with pytest.raises(AuthError) as info:
        make_client(handler).heatmap("all")
    assert len(seen) == 1
    assert clock.sleeps == []
    message = str(info.value)
    assert f"HTTP {status}" in message
    assert "HT_API_TOKEN" in message
    assert f"{BASE}/positions/heatmap?openedWithin=all" in message
    assert TOKEN not in message
    assert TOKEN not in repr(info.value)


def test_bad_request_fails_at_once_with_body_excerpt(make_client, clock) -> None:
    body = "openedWithin must be one of 24h, 7d, 30d, all " + "x" * 500
    handler, seen = scripted(httpx.Response(400, text=body))
    with pytest.raises(RequestFailed) as info:
        make_client(handler).heatmap("1y")
    assert len(seen) == 1
    assert clock.sleeps == []
    assert info.value.status == 400
    assert info.value.body_excerpt == body[:200]
    assert "openedWithin must be one of" in str(info.value)
    assert "window 1y" in str(info.value)


def test_not_found_is_not_retried(make_client) -> None:
    handler, seen = scripted(httpx.Response(404, text="no such route"))
    with pytest.raises(RequestFailed, match="HTTP 404"):
        make_client(handler).segments()
    assert len(seen) == 1


# --- retrying ------------------------------------------------------------------------------
def test_429_honours_retry_after_header(make_client, clock) -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    got = make_client(handler, rng=0.0).heatmap("7d")
    assert got.body == HEATMAP_BODY
    assert got.attempts == 2
    assert clock.sleeps == [7.0]
    assert len(seen) == 2


def test_429_honours_retry_after_http_date(make_client, clock) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}), ok()
    )
    make_client(handler, rng=0.0).heatmap("7d")
    assert len(clock.sleeps) == 1
    assert 25.0 <= clock.sleeps[0] <= 31.0


def test_429_honours_retry_after_in_body(make_client, clock) -> None:
    body = {"error": "rate_limit_exceeded", "message": "slow down", "retry_after": 3}
    handler, _ = scripted(httpx.Response(429, json=body), ok())
    make_client(handler, rng=0.0).heatmap("30d")
    assert clock.sleeps == [3.0]


def test_retry_after_is_a_floor_not_a_ceiling(make_client, clock) -> None:
    # Jittered back-off larger than the server's ask wins: never retry sooner than asked.
    handler, _ = scripted(httpx.Response(503, headers={"Retry-After": "0.1"}), ok())
    make_client(handler, rng=1.0, backoff_base_s=2.0).heatmap("all")
    assert clock.sleeps == [2.0]


def test_5xx_retried_with_exponential_backoff_then_success(make_client, clock, caplog) -> None:
    handler, seen = scripted(
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(504),
        ok(),
    )
    with caplog.at_level(logging.WARNING, logger="flows.hypertracker.client"):
        got = make_client(handler, rng=1.0, max_attempts=5).heatmap("all")
    assert got.attempts == 5
    assert len(seen) == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    warnings = [r for r in caplog.records if r.name == "flows.hypertracker.client"]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 4
    assert "HTTP 500" in warnings[0].getMessage()
    assert "attempt 1/5" in warnings[0].getMessage()
    assert "attempt 4/5" in warnings[3].getMessage()


def test_full_jitter_scales_the_backoff(make_client, clock) -> None:
    handler, _ = scripted(httpx.Response(503), httpx.Response(503), ok())
    make_client(handler, rng=0.25, backoff_base_s=2.0).heatmap("all")
    assert clock.sleeps == [0.5, 1.0]


def test_retries_exhausted_raise_request_failed(make_client, clock) -> None:
    handler, seen = scripted(httpx.Response(503, text="upstream down"))
    with pytest.raises(RequestFailed) as info:
        make_client(handler, rng=1.0, max_attempts=3).heatmap("24h")
    assert not isinstance(info.value, QuotaExhausted)
    assert len(seen) == 3
    assert len(clock.sleeps) == 2
    assert info.value.status == 503
    assert info.value.attempts == 3
    assert "upstream down" in str(info.value)


def test_429_until_attempts_run_out_is_quota_exhausted(make_client) -> None:
    handler, seen = scripted(httpx.Response(429, json={"retry_after": 1}))
    with pytest.raises(QuotaExhausted) as info:
        make_client(handler, max_attempts=3).heatmap("24h")
    assert len(seen) == 3
    assert isinstance(info.value, RequestFailed)
    assert info.value.retry_after_s == 1.0


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.RemoteProtocolError],
)
def test_timeouts_and_drops_are_retried(make_client, clock, failure) -> None:
    handler, seen = scripted(failure, failure, ok())
    got = make_client(handler, rng=1.0).heatmap("all")
    assert got.body == HEATMAP_BODY
    assert got.attempts == 3
    assert len(seen) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_transport_failure_exhausted_says_no_response(make_client) -> None:
    handler, _ = scripted(httpx.ConnectError)
    with pytest.raises(RequestFailed) as info:
        make_client(handler, max_attempts=2).heatmap("all")
    assert info.value.status is None
    assert "no response" in str(info.value)
    assert "ConnectError" in str(info.value)


def test_total_wait_is_bounded(make_client, clock) -> None:
    handler, seen = scripted(httpx.Response(503))
    with pytest.raises(RequestFailed):
        make_client(
            handler, rng=1.0, backoff_base_s=1.0, max_attempts=10, max_retry_wait_s=5.0
        ).heatmap("all")
    # 1 + 2, then 4 is cut to the 2 s left; then nothing is left.
    assert clock.sleeps == [1.0, 2.0, 2.0]
    assert sum(clock.sleeps) <= 5.0
    assert len(seen) == 4


def test_retry_after_beyond_the_budget_gives_up_at_once(make_client, clock) -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": "quota"})
    )
    with pytest.raises(QuotaExhausted) as info:
        make_client(handler, max_retry_wait_s=60.0).heatmap("all")
    assert len(seen) == 1
    assert clock.sleeps == []
    assert info.value.retry_after_s == 3600.0
    assert "3600" in str(info.value)


def test_truncated_body_over_a_real_socket_is_retried(clock, caplog) -> None:
    """A body shorter than Content-Length surfaces as RemoteProtocolError and is retried.

    Also the one test through httpx's real transport: its debug logs must not show the token.
    """
    body = b'{"heatmap": [{"coin": "BTC", "count": 1}]}'
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)  # a hang guard, not a timed assertion
    port = server.getsockname()[1]
    served: list[int] = []

    def serve() -> None:
        with server:
            for i in range(2):
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    head += b"Content-Length: %d\r\n\r\n" % len(body)
                    conn.sendall(head + (body[:10] if i == 0 else body))
                    served.append(i)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings = make_settings(base_url=f"http://127.0.0.1:{port}/api/external")
    with (
        caplog.at_level(logging.DEBUG),
        HyperTrackerClient(settings, sleep=clock.sleep, clock=clock, rng=lambda: 0.0) as client,
    ):
        got = client.heatmap("all")
    thread.join(10)
    assert served == [0, 1]
    assert got.body == body
    assert got.attempts == 2
    retries = [r.getMessage() for r in caplog.records if r.name == "flows.hypertracker.client"]
    assert len(retries) == 1
    assert "RemoteProtocolError" in retries[0]
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


# --- redirects -----------------------------------------------------------------------------
def test_redirect_is_followed_and_url_is_the_one_asked_for(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"Location": "https://bucket.test/h.json?sig=abc"})
        return ok()

    got = make_client(handler).heatmap("all")
    assert got.body == HEATMAP_BODY
    assert got.url == f"{BASE}/positions/heatmap?openedWithin=all"
    assert [r.url.host for r in seen] == ["api.test", "bucket.test"]
    # The token must not travel to the storage host.
    assert "Authorization" in seen[0].headers
    assert "Authorization" not in seen[1].headers


def test_same_origin_redirect_keeps_auth(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/segments"):
            return httpx.Response(301, headers={"Location": "/api/external/v2/segments/"})
        return ok(b"[]")

    assert make_client(handler).segments().body == b"[]"
    assert seen[1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_refused_presigned_url_is_retried_not_an_auth_error(make_client) -> None:
    calls = {"bucket": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"Location": "https://bucket.test/h.json"})
        calls["bucket"] += 1
        return httpx.Response(403, text="Request has expired") if calls["bucket"] == 1 else ok()

    got = make_client(handler).heatmap("all")
    assert got.attempts == 2


def test_redirect_loop_fails_without_retry(make_client, clock) -> None:
    handler, seen = scripted(httpx.Response(302, headers={"Location": f"{BASE}/segments"}))
    with pytest.raises(RequestFailed, match="TooManyRedirects"):
        make_client(handler).segments()
    assert clock.sleeps == []
    assert len(seen) == 21  # one attempt: the request and httpx's 20 redirects


# --- pacing --------------------------------------------------------------------------------
def test_rate_limiter_spaces_requests_in_a_rolling_window(clock) -> None:
    limiter = RateLimiter(3, 60.0, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # t = 1000
    clock.now += 10  # t = 1010
    assert limiter.acquire() == 50.0  # waits for the t=1000 slots to age out at 1060
    assert clock.now == 1060.0
    clock.now += 30  # t = 1090: the window holds one request (1060)
    assert [limiter.acquire() for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire() == 30.0  # full until the 1060 request ages out at 1120
    assert clock.sleeps == [50.0, 30.0]


def test_rate_limiter_is_thread_safe(clock) -> None:
    limiter = RateLimiter(5, 60.0, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(clock())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(stamps) == 20
    stamps.sort()
    for i, start in enumerate(stamps):
        in_window = [s for s in stamps[i:] if s < start + 60.0]
        assert len(in_window) <= 5


def test_client_is_paced_by_requests_per_minute(make_client, clock) -> None:
    handler, seen = scripted(ok())
    client = make_client(handler, requests_per_minute=2)
    for w in ("24h", "7d", "30d"):
        client.heatmap(w)
    assert len(seen) == 3
    assert clock.sleeps == [60.0 + RATE_LIMIT_MARGIN_S]  # the third waits for the first's minute
    assert client.request_count == 3


def test_retries_count_as_requests(make_client) -> None:
    handler, _ = scripted(httpx.Response(503), ok())
    client = make_client(handler)
    client.heatmap("all")
    assert client.request_count == 2


# --- concurrency ---------------------------------------------------------------------------
def test_heatmaps_fetches_all_windows_concurrently(make_client) -> None:
    windows = ("24h", "7d", "30d", "all")
    # Every request waits until all four are in flight: a sequential client breaks the
    # barrier (its timeout is a hang guard, not a timed assertion).
    barrier = threading.Barrier(len(windows), timeout=10)

    def handler(request: httpx.Request) -> httpx.Response:
        barrier.wait()
        return ok(b'{"window": "%s"}' % request.url.params["openedWithin"].encode())

    got = make_client(handler).heatmaps(windows)
    assert list(got) == list(windows)
    for w, fetched in got.items():
        assert isinstance(fetched, Fetched)
        assert fetched.window == w
        assert orjson.loads(fetched.body) == {"window": w}


def test_heatmaps_defaults_to_settings_windows(make_client) -> None:
    handler, seen = scripted(ok())
    got = make_client(handler, windows=("24h", "all")).heatmaps()
    assert set(got) == {"24h", "all"}
    assert len(seen) == 2


def test_heatmaps_raises_when_a_window_fails(make_client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["openedWithin"] == "7d":
            return httpx.Response(400, text="bad window")
        return ok()

    with pytest.raises(RequestFailed, match="window 7d"):
        make_client(handler).heatmaps(("24h", "7d", "30d", "all"))


# --- the token stays secret ----------------------------------------------------------------
def test_token_never_in_logs_reprs_or_errors(make_client, caplog) -> None:
    responses = {
        "24h": [httpx.Response(503, text=f"echo {TOKEN}"), ok()],
        "7d": [httpx.Response(429, headers={"Retry-After": "1"}), ok()],
        "30d": [httpx.Response(400, text=f"Bearer {TOKEN} is malformed")],
        "all": [httpx.Response(401, text=f"bad token {TOKEN}")],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        queue = responses[request.url.params["openedWithin"]]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        client = make_client(handler)
        fetched = [client.heatmap("24h"), client.heatmap("7d")]
        for w in ("30d", "all"):
            try:
                client.heatmap(w)
            except (RequestFailed, AuthError) as exc:
                errors.append(exc)
    assert len(errors) == 2
    texts = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [repr(client), repr(client.settings), repr(vars(client))]
    texts += [repr(f) for f in fetched]
    texts += [str(pickle.loads(pickle.dumps(e))) for e in errors]  # noqa: S301 (our own bytes)
    assert any("HTTP 503" in t for t in texts)  # the logs were captured at all
    for text in texts:
        assert TOKEN not in text
    assert "**********" in str(errors[0])  # the echoed token was scrubbed


def test_errors_survive_pickling() -> None:
    for exc in (
        AuthError("https://x/y", 401),
        MissingTokenError("https://x"),
        RequestFailed("https://x/y", status=503, reason="r", attempts=3, window="7d"),
        QuotaExhausted("https://x/y", reason="r", attempts=1, retry_after_s=60.0),
        PayloadError("all", "https://x/y", ["heatmap[0].count: bad"]),
    ):
        back = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
        assert type(back) is type(exc)
        assert str(back) == str(exc)


def test_the_quota_ledger_counts_each_request_before_it_is_sent(
    tmp_path: Path, make_client
) -> None:
    from flows.quota import Ledger

    settings = make_settings(data_dir=tmp_path)
    ledger = Ledger.open(settings)
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # By the time the server sees a request, the ledger on disk has counted it.
        seen.append(Ledger.open(settings).day_count)
        return httpx.Response(503 if len(seen) < 3 else 200, json={"lastUpdate": "x"})

    client = make_client(handler, on_request=ledger.record, data_dir=tmp_path)
    client.get("status", "/hypertracker/state/status")
    assert seen == [1, 2, 3]
    assert Ledger.open(settings).day_count == 3


def test_a_slow_ledger_write_does_not_eat_into_the_rate_limits_minute(
    make_client, clock: FakeClock
) -> None:
    # The simulator found it (bench/backfill.py): a slot stamped before the ledger's fsyncs
    # let the 61st request reach the server within 60 s of the 1st, which it answered 429.
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock())
        return httpx.Response(200, json={"lastUpdate": "x"})

    writes = iter([0.040, 0.001, 0.001])  # the first write's fsyncs are slow, the rest not

    def slow_ledger_write() -> None:
        clock.now += next(writes)

    client = make_client(handler, on_request=slow_ledger_write, requests_per_minute=2)
    for _ in range(3):
        client.get("status", "/hypertracker/state/status")
    assert sent[2] - sent[0] >= 60.0 + RATE_LIMIT_MARGIN_S, sent


def test_a_token_a_header_cannot_carry_is_named_and_never_echoed(clock: FakeClock) -> None:
    # The settings refuse such a token; this checks the client's own scrubbing behind them.
    # On a real connection h11 refuses the header and names its value, escaped as bytes.
    token = "tok_SECRET_\n_rest_of_it"
    settings = make_settings().model_copy(update={"api_token": SecretStr(token)})

    def h11_refuses(request: httpx.Request) -> httpx.Response:
        value = request.headers["authorization"].encode()
        raise httpx.LocalProtocolError(f"Illegal header value {value!r}")

    with (
        HyperTrackerClient(
            settings, transport=httpx.MockTransport(h11_refuses), sleep=clock.sleep
        ) as client,
        pytest.raises(RequestFailed) as info,
    ):
        client.get("status", "/hypertracker/state/status")
    text = f"{info.value} {info.value!r} {info.value.reason}"
    assert "SECRET" not in text
    assert "rest_of_it" not in text
    assert "HT_API_TOKEN" in str(info.value)
