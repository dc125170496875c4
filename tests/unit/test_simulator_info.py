"""The simulated info API: its answers pass the production parsers, and prices, notional,
open interest, candles and funding agree with each other and with the heatmap."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from flows.hyperliquid.payload import parse_candles, parse_funding, parse_meta_and_asset_ctxs
from simulator import Fault, SimulatedApi
from simulator.info import answer, dexes
from simulator.market import Market

START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(days=2, hours=5, minutes=7)
HOUR = 3_600_000


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=7, start=START, history_days=10)


def ask(market: Market, request: dict[str, object], now: datetime = NOW) -> list:
    return orjson.loads(answer(market, request, now))


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def contexts(market: Market, dex: str, now: datetime = NOW) -> dict[str, dict]:
    body = answer(market, {"type": "metaAndAssetCtxs", "dex": dex}, now)
    return {row["coin"]: row for row in parse_meta_and_asset_ctxs(body, dex)}


def test_every_dex_of_the_heatmap_is_served_and_parses(market: Market) -> None:
    k = market.state_index_at(NOW)
    needed = {c["coin"].split(":")[0] for c in market.heatmap(k, "all") if ":" in c["coin"]}
    assert needed <= set(dexes(market))
    for dex in dexes(market):
        rows = contexts(market, dex)
        assert rows
        assert all((":" in coin) == bool(dex) for coin in rows)


def test_price_levels_are_realistic(market: Market) -> None:
    main, xyz = contexts(market, ""), contexts(market, "xyz")
    assert 80_000 < main["BTC"]["mark_px"] < 125_000
    assert 2_200 < main["ETH"]["mark_px"] < 4_500
    assert 2_000 < xyz["xyz:GOLD"]["mark_px"] < 4_500
    assert sum(r["mark_px"] < 1 for r in main.values()) > 50  # plenty of cent coins
    assert all(abs(r["funding"]) < 5e-4 for r in main.values())  # about +-0.01% an hour


def test_notional_is_size_times_mark_and_open_interest_matches_the_heatmap(
    market: Market,
) -> None:
    k = market.state_index_at(NOW)
    at_state = market.state_time(k)
    rows = {**contexts(market, "", at_state), **contexts(market, "xyz", at_state)}
    size_ids = set(range(1, 8)) | {16}
    checked = 0
    for coin in market.heatmap(k, "all"):
        ctx = rows.get(coin["coin"])
        if ctx is None or coin["totalLongValue"] < 1e6:
            continue
        ladder_long = sum(
            s["totalLongValue"] for s in coin["segments"] if s["segmentId"] in size_ids
        )
        oi_usd = ctx["open_interest"] * ctx["mark_px"]
        assert ladder_long == pytest.approx(oi_usd, rel=0.03), coin["coin"]
        checked += 1
    assert checked > 30


def test_the_mark_lies_in_its_candle_and_closed_candles_never_change(market: Market) -> None:
    btc = contexts(market, "")["BTC"]
    req = {"coin": "BTC", "interval": "1h", "startTime": epoch_ms(NOW) - 30 * HOUR,
           "endTime": epoch_ms(NOW)}  # fmt: skip
    first = parse_candles(answer(market, {"type": "candleSnapshot", "req": req}, NOW), "BTC", "1h")
    assert len(first) == 31
    current = first[-1]
    assert current["open_time"] <= epoch_ms(NOW) <= current["close_time"]
    assert current["low_px"] <= btc["mark_px"] <= current["high_px"]
    assert current["close_px"] == btc["mark_px"]
    later = NOW + timedelta(hours=3)
    again = parse_candles(
        answer(market, {"type": "candleSnapshot", "req": req}, later), "BTC", "1h"
    )
    assert again[:-1] == first[:-1]  # closed candles are final
    assert again[-1]["close_px"] != current["close_px"] or again[-1] != current


def test_candles_keep_the_newest_5000_and_begin_at_the_history(market: Market) -> None:
    req = {"coin": "ETH", "interval": "1h", "startTime": 0, "endTime": epoch_ms(NOW)}
    rows = ask(market, {"type": "candleSnapshot", "req": req})
    assert rows[0]["t"] == epoch_ms(START - timedelta(days=10))
    assert len(rows) == 10 * 24 + 2 * 24 + 6
    long_market = Market(seed=7, start=START, history_days=400)
    rows = ask(long_market, {"type": "candleSnapshot", "req": req})
    assert len(rows) == 5000


def test_funding_history_pages_by_500_and_matches_the_context(market: Market) -> None:
    rows = parse_funding(
        answer(market, {"type": "fundingHistory", "coin": "SOL", "startTime": 0}, NOW), "SOL"
    )
    assert len(rows) == 10 * 24 + 2 * 24 + 5  # hourly, up to now
    assert all(abs(r["funding_rate"]) < 5e-4 for r in rows)
    page = ask(market, {"type": "fundingHistory", "coin": "SOL", "startTime": 0},
               START + timedelta(days=40))  # fmt: skip
    assert len(page) == 500
    # The rate shown now is the one paid at the end of the hour (the mood unchanged).
    frozen = market.state_time(market.state_index_at(NOW))
    rate_now = contexts(market, "", frozen)["SOL"]["funding"]
    paid = ask(market, {"type": "fundingHistory", "coin": "SOL",
                        "startTime": epoch_ms(frozen)}, frozen + timedelta(hours=1))  # fmt: skip
    if paid and market.state_index_at(frozen + timedelta(hours=1)) == market.state_index_at(frozen):
        assert float(paid[0]["fundingRate"]) == pytest.approx(rate_now)


# --- over HTTP: faults as for HyperTracker -------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[SimulatedApi]:
    with SimulatedApi(seed=7, token="sim-tok-x", start=START, now=NOW, history_days=2) as server:
        yield server


def post(api: SimulatedApi, body: dict[str, object]) -> httpx.Response:
    return httpx.post(api.info_url + "/info", json=body, timeout=10)


META = {"type": "metaAndAssetCtxs", "dex": ""}


def test_the_info_api_is_served_beside_hypertracker_without_a_token(api: SimulatedApi) -> None:
    response = post(api, META)
    assert response.status_code == 200
    assert response.headers["Date"] == "Tue, 03 Nov 2026 05:07:00 GMT"  # the simulated clock
    assert parse_meta_and_asset_ctxs(response.content, "")
    (logged,) = [
        r for r in api.info_requests() if r["query"] == {"type": "metaAndAssetCtxs", "dex": ""}
    ][-1:]
    assert logged["token_seen"] is False
    assert post(api, {"type": "nonsense"}).status_code == 422
    assert httpx.get(api.info_url + "/info").status_code == 405


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault("rate_limit", path="info"), 429),
        (Fault("server_error", path="info", status=502), 502),
        (Fault("malformed_json", path="info"), 200),
        (Fault("bad_decimal", path="info", info_type="metaAndAssetCtxs"), 200),
    ],
    ids=lambda f: getattr(f, "kind", ""),
)
def test_info_faults(api: SimulatedApi, fault: Fault, status: int) -> None:
    api.inject(fault)
    response = post(api, META)
    assert response.status_code == status
    assert fault.fired == 1
    if status == 200:
        with pytest.raises(Exception, match="failed validation"):
            parse_meta_and_asset_ctxs(response.content, "")
    assert post(api, META).status_code == 200  # spent


def test_info_faults_target_a_type_and_a_dex_and_never_hypertracker(api: SimulatedApi) -> None:
    fault = api.inject(Fault("server_error", path="info", dex="xyz"))
    assert post(api, META).status_code == 200
    assert post(api, {"type": "metaAndAssetCtxs", "dex": "xyz"}).status_code == 500
    assert fault.fired == 1
    anywhere = api.inject(Fault("server_error", path="any"))
    assert post(api, META).status_code == 200  # "any" is any HyperTracker endpoint
    api.clear_faults()
    assert anywhere.fired == 0


def test_candles_and_funding_keep_to_utc_hours_whenever_the_market_starts() -> None:
    odd = datetime(2026, 11, 1, 5, 18, 39, 966000, tzinfo=UTC)
    market = Market(seed=3, start=odd, history_days=1)
    now = odd + timedelta(hours=30, minutes=7)
    req = {"coin": "BTC", "interval": "1h", "startTime": 0, "endTime": epoch_ms(now)}
    candles = ask(market, {"type": "candleSnapshot", "req": req}, now)
    assert candles
    assert all(c["t"] % HOUR == 0 and c["T"] == c["t"] + HOUR - 1 for c in candles)
    assert candles[-1]["t"] <= epoch_ms(now) <= candles[-1]["T"]
    funding = ask(market, {"type": "fundingHistory", "coin": "BTC", "startTime": 0}, now)
    assert funding
    assert all(r["time"] % HOUR < 100 for r in funding)  # on the hour, plus a few ms
    mark = contexts(market, "", now)["BTC"]["mark_px"]
    assert float(candles[-1]["l"]) <= mark <= float(candles[-1]["h"])
