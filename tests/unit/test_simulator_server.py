"""The simulated API over real HTTP: auth, windows, every fault on the wire, clock control."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from flows.cohorts import COHORTS
from flows.hypertracker.payload import parse_heatmap, parse_segments
from simulator import Fault, SimulatedApi, SimulatorControl
from simulator.faults import EXTRA_FIELD, UNKNOWN_SEGMENT_ID

TOKEN = "test-token-123"
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
HEATMAP = "/positions/heatmap"
STATUS = "/hypertracker/state/status"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api() -> Iterator[SimulatedApi]:
    with SimulatedApi(seed=7, token=TOKEN, now=NOW) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(api: SimulatedApi) -> Iterator[None]:
    api.clear_faults()
    api.set_time(NOW)
    api.clear_request_log()
    yield
    api.clear_faults()


@pytest.fixture
def client(api: SimulatedApi) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=api.base_url, headers=headers, timeout=10) as c:
        yield c


def heatmap(client: httpx.Client, window: str | None = None) -> httpx.Response:
    return client.get(HEATMAP, params={"openedWithin": window} if window else None)


# --- the normal answers ------------------------------------------------------------------------


def test_base_url_points_at_the_api(api: SimulatedApi) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/external", api.base_url)
    assert TOKEN not in repr(api)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
)
@pytest.mark.parametrize("path", [HEATMAP, "/segments", STATUS])
def test_a_missing_or_wrong_token_gets_401(
    api: SimulatedApi, headers: dict[str, str], path: str
) -> None:
    response = httpx.get(api.base_url + path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "Invalid or missing API token"}


def test_a_bad_window_gets_400_with_a_plain_string(client: httpx.Client) -> None:
    response = heatmap(client, "12h")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == (
        "Invalid openedWithin value: '12h'. Expected one of: 24h, 7d, 30d, all"
    )


def test_default_window_is_all_and_coin_is_ignored(client: httpx.Client) -> None:
    default = heatmap(client)
    assert default.status_code == 200
    assert default.headers["content-type"] == "application/json"
    assert int(default.headers["content-length"]) == len(default.content)
    assert default.content == heatmap(client, "all").content
    assert default.content == client.get(HEATMAP, params={"coin": "ETH"}).content
    payload = parse_heatmap(default.content, "all", str(default.url))  # raises if invalid
    assert not payload.extra_fields
    assert not payload.unknown_segment_ids
    coins = payload.coins
    assert coins[0]["coin"] == "BTC"
    assert len(coins) > 300
    assert len(default.content) > 500_000


def test_windows_are_served_and_nest(client: httpx.Client) -> None:
    counts = {}
    for window in ("24h", "7d", "30d", "all"):
        body = heatmap(client, window).json()["heatmap"]
        counts[window] = next(c["count"] for c in body if c["coin"] == "BTC")
    assert counts["24h"] < counts["7d"] < counts["30d"] < counts["all"]


def test_status_and_segments(api: SimulatedApi, client: httpx.Client) -> None:
    status = client.get(STATUS).json()
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert all(re.fullmatch(iso, status[key]) for key in ("lastUpdate", "nextUpdate"))
    last = datetime.fromisoformat(status["lastUpdate"].replace("Z", "+00:00"))
    threshold = datetime.fromisoformat(status["nextUpdateThreshold"].replace("Z", "+00:00"))
    assert last <= NOW < threshold
    assert last == api.last_update
    response = client.get("/segments")
    segments = parse_segments(response.content, str(response.url))
    assert [s.id for s in segments] == [c.segment_id for c in COHORTS]


def test_keep_alive_serves_many_requests_on_one_connection(api: SimulatedApi) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        for path in (
            "/segments",
            "/hypertracker/state/status",
            "/positions/heatmap?openedWithin=7d",
        ):
            conn.request(
                "GET", "/api/external" + path, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            response = conn.getresponse()
            assert response.status == 200
            orjson.loads(response.read())
            assert not response.will_close
    finally:
        conn.close()


def test_unknown_paths_get_404(client: httpx.Client) -> None:
    assert client.get("/positions/nope").status_code == 404


def test_request_log_records_api_calls(api: SimulatedApi, client: httpx.Client) -> None:
    heatmap(client, "24h")
    httpx.get(api.base_url + STATUS)
    assert api.request_log == [
        ("GET", "/api/external/positions/heatmap", {"openedWithin": "24h"}, 200),
        ("GET", "/api/external/hypertracker/state/status", {}, 401),
    ]


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [True, False])
def test_rate_limit(api: SimulatedApi, client: httpx.Client, header: bool) -> None:
    api.inject(Fault("rate_limit", path="heatmap", retry_after=2, retry_after_header=header))
    response = heatmap(client)
    assert response.status_code == 429
    assert response.headers.get("retry-after") == ("2" if header else None)
    assert response.json() == {
        "error": "rate_limit_exceeded",
        "message": "Rate limit exceeded",
        "retry_after": 2,
    }
    assert heatmap(client).status_code == 200  # times=1: the next one goes through


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(api: SimulatedApi, client: httpx.Client, status: int) -> None:
    api.inject(Fault("server_error", status=status))
    response = client.get(STATUS)
    assert response.status_code == status
    assert response.content
    assert client.get(STATUS).status_code == 200


def test_slow_answers_late_but_right(api: SimulatedApi, client: httpx.Client) -> None:
    api.inject(Fault("slow", path="status", delay_s=0.5))
    with pytest.raises(httpx.ReadTimeout):
        client.get(STATUS, timeout=0.1)
    api.inject(Fault("slow", path="status", delay_s=0.05))
    assert client.get(STATUS).json()["lastUpdate"] == client.get(STATUS).json()["lastUpdate"]


def test_drop_closes_without_a_response(api: SimulatedApi, client: httpx.Client) -> None:
    client.get(STATUS)  # a pooled, kept-alive connection to drop
    api.inject(Fault("drop"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(STATUS)
    assert client.get(STATUS).status_code == 200
    assert api.request_log[1].status == 0


def test_truncate_sends_half_the_promised_body(api: SimulatedApi, client: httpx.Client) -> None:
    api.inject(Fault("truncate", path="heatmap", window="7d"))
    with pytest.raises(httpx.RemoteProtocolError, match=r"complete message body|incomplete"):
        heatmap(client, "7d")
    assert heatmap(client, "7d").status_code == 200


def test_malformed_json_is_a_whole_message_but_not_json(
    api: SimulatedApi, client: httpx.Client
) -> None:
    api.inject(Fault("malformed_json", path="heatmap"))
    response = heatmap(client)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_fault_targets_window_and_skips_after_n(api: SimulatedApi, client: httpx.Client) -> None:
    api.inject(Fault("server_error", path="heatmap", window="24h", after_n=1, times=2))
    assert heatmap(client, "all").status_code == 200  # another window: not matched
    assert heatmap(client, "24h").status_code == 200  # skipped (after_n=1)
    assert heatmap(client, "24h").status_code == 500
    assert client.get(STATUS).status_code == 200  # another path: not matched
    assert heatmap(client, "24h").status_code == 500
    assert heatmap(client, "24h").status_code == 200  # spent
    assert api.faults.pending() == []


def test_probabilistic_faults_replay_with_their_seed(
    api: SimulatedApi, client: httpx.Client
) -> None:
    def pattern() -> list[int]:
        api.clear_faults()
        api.inject(Fault("server_error", path="status", p=0.5, seed=42, status=503))
        return [client.get(STATUS).status_code for _ in range(12)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 503}


def test_schema_drift_on_the_wire(api: SimulatedApi, client: httpx.Client) -> None:
    def drifted(kind: str) -> list[dict]:
        api.inject(Fault(kind, path="heatmap"))
        response = heatmap(client)
        assert response.status_code == 200
        return response.json()["heatmap"]

    clean = heatmap(client).json()["heatmap"]
    body = drifted("extra_field")
    assert all(EXTRA_FIELD in c and all(EXTRA_FIELD in s for s in c["segments"]) for c in body)
    body = drifted("missing_field")
    assert "countShort" not in body[0]["segments"][0]
    assert body[1:] == clean[1:]
    body = drifted("string_numbers")
    assert isinstance(body[0]["totalValue"], str)
    assert float(body[0]["totalValue"]) == clean[0]["totalValue"]
    assert body[0]["segments"][0]["count"] == str(clean[0]["segments"][0]["count"])
    assert drifted("bias_out_of_range")[0]["segments"][0]["bias"] == 1.7
    seg = drifted("negative_count")[0]["segments"][0]
    assert seg["countShort"] < 0
    assert seg["count"] == seg["countLong"] + seg["countShort"]
    body = drifted("duplicate_coin")
    assert [c["coin"] for c in body].count(clean[0]["coin"]) == 2
    assert drifted("empty_heatmap") == []
    assert heatmap(client).json()["heatmap"] == clean  # drift is per request


def test_unknown_segment_is_valid_otherwise(api: SimulatedApi, client: httpx.Client) -> None:
    api.inject(Fault("unknown_segment", path="heatmap", window="30d"))
    response = heatmap(client, "30d")
    payload = parse_heatmap(response.content, "30d", str(response.url))  # raises if invalid
    assert payload.unknown_segment_ids == {UNKNOWN_SEGMENT_ID}
    for coin in payload.coins:
        extra = [s for s in coin["segments"] if s["segmentId"] == UNKNOWN_SEGMENT_ID]
        assert len(extra) == 1
        assert 0 < extra[0]["count"] <= coin["count"]


def test_drift_only_targets_heatmaps() -> None:
    with pytest.raises(ValueError, match="heatmap"):
        Fault("extra_field", path="segments")
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("meteor_strike")
    assert Fault("slow", p=0.1).times is None  # probabilistic faults do not run out
    assert Fault("slow").times == 1


def test_advance_state_moves_the_clock_mid_fetch(api: SimulatedApi, client: httpx.Client) -> None:
    before = client.get(STATUS).json()["lastUpdate"]
    all_before = heatmap(client, "all").content
    api.inject(Fault("advance_state", path="heatmap", window="24h"))
    assert heatmap(client, "24h").status_code == 200
    after = client.get(STATUS).json()["lastUpdate"]
    assert after > before
    assert api.last_update == datetime.fromisoformat(after.replace("Z", "+00:00"))
    assert heatmap(client, "all").content != all_before


# --- the clock ---------------------------------------------------------------------------------


def test_clock_steps_through_states(api: SimulatedApi) -> None:
    k = api.state_index
    when = api.advance_to_next_state()
    assert api.state_index == k + 1
    assert api.last_update == when == api.now
    api.advance(timedelta(seconds=1))
    assert api.state_index == k + 1
    api.set_time(NOW - timedelta(days=30))  # before the market: its first state
    assert api.state_index == 0


def test_unfrozen_clock_follows_the_wall_clock() -> None:
    server = SimulatedApi(seed=1, start=datetime(2026, 1, 1, tzinfo=UTC))
    assert not server.frozen
    assert abs(server.now - datetime.now(UTC)) < timedelta(minutes=1)
    server.set_time(datetime(2026, 1, 2, tzinfo=UTC))
    assert server.frozen
    server.follow_wall_clock()
    assert not server.frozen
    assert server.now >= datetime(2026, 1, 2, tzinfo=UTC)


def test_a_compressed_clock_runs_faster_than_the_wall_clock() -> None:
    server = SimulatedApi(seed=1, start=datetime(2026, 1, 1, tzinfo=UTC))
    server.set_time(datetime(2026, 1, 2, tzinfo=UTC))
    server.follow_wall_clock(speed=60)
    before, wall = server.now, time.monotonic()
    time.sleep(0.5)
    moved = (server.now - before).total_seconds()
    assert 60 * 0.5 <= moved <= 60 * (time.monotonic() - wall) + 1


def test_control_over_http(api: SimulatedApi, client: httpx.Client) -> None:
    with SimulatorControl(api.base_url) as sim:
        clock = sim.set_time(NOW + timedelta(hours=2))
        assert clock["now"] == "2026-11-03T14:00:00.000Z"
        assert clock["frozen"] is True
        assert api.now == NOW + timedelta(hours=2)
        k = clock["state"]
        moved = sim.next_state()
        assert moved["state"] == k + 1
        assert client.get(STATUS).json()["lastUpdate"] == moved["lastUpdate"]
        assert sim.advance(3600)["now"] > moved["now"]

        pending = sim.inject({"kind": "rate_limit", "path": "heatmap", "retry_after": 5})
        assert pending[0]["kind"] == "rate_limit"
        assert heatmap(client).headers["retry-after"] == "5"
        sim.inject(Fault("server_error", status=502, times=3))
        assert len(sim.faults()) == 1
        sim.clear_faults()
        assert sim.faults() == []
        assert client.get(STATUS).status_code == 200

        logged = sim.requests()
        assert [r["status"] for r in logged[-3:]] == [200, 429, 200]
        assert logged[-2]["fault"] == "rate_limit"
        assert all(not r["path"].startswith("/__sim") for r in logged)

        with pytest.raises(RuntimeError, match="400"):
            sim.inject({"kind": "rate_limit", "bogus": 1})


def test_command_line_serves_until_interrupted() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "simulator", "--port", "0", "--token", "t"]
    cmd += ["--now", "2026-11-03T12:00:00Z"]
    # A child inherits an ignored SIGINT, and Python then installs no Ctrl-C handler: an
    # earlier test in this process may have left SIGINT ignored (an in-process flow run).
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        status = httpx.get(base_url + STATUS, headers={"Authorization": "Bearer t"}, timeout=10)
        assert status.json()["lastUpdate"].startswith("2026-11-03T1")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=120)  # a busy machine may take a while to stop it
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave it running, whatever the test's outcome
            proc.wait()
            raise
    assert code == 0
