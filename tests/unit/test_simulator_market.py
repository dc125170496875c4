"""The simulated market emits payloads that look like, and are as consistent as, the real one.

Property-based over seeds and states: every body the simulator emits, in every window, at
every state, passes the production checks (``payload.parse_heatmap``, the strict validator,
and ``lake.normalise``, the bulk checks and the relations across windows) without a single
problem or warning. The payload contract is stated there, once; here only what the simulator
keeps beyond it.
"""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.cohorts import GROUPS
from flows.hypertracker.errors import PayloadError
from flows.hypertracker.payload import (
    Coin,
    CoinSegment,
    HeatmapPayload,
    parse_heatmap,
    parse_segments,
)
from flows.lake.normalise import body_files, normalise, structure_problems
from simulator.faults import DRIFT_KINDS, UNKNOWN_SEGMENT_ID, drift_heatmap
from simulator.market import (
    COHORTS,
    DEFAULT_START,
    SIZE_IDS,
    WINDOWS,
    Market,
)

URL = "http://127.0.0.1/api/external/positions/heatmap"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DAY = 64  # states per day, on average (22.5 minutes apart)
FEW = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def check_conventions(heatmap: list[dict[str, Any]]) -> None:
    """What the simulator keeps beyond the contract, as the real API does.

    The API's field order, segments in segmentId order, no empty row (a cohort without
    positions in a coin is left out), and a side holds value exactly when it holds positions.
    """
    coin_keys, segment_keys = list(Coin.__annotations__), list(CoinSegment.__annotations__)
    for coin in heatmap:
        assert list(coin) == coin_keys, coin["coin"]
        ids = [seg["segmentId"] for seg in coin["segments"]]
        assert ids == sorted(ids), (coin["coin"], ids)
        assert all(list(seg) == segment_keys for seg in coin["segments"]), coin["coin"]
        for row in (coin, *coin["segments"]):
            assert row["count"] > 0, row
            assert (row["countLong"] == 0) == (row["totalLongValue"] == 0.0), row
            assert (row["countShort"] == 0) == (row["totalShortValue"] == 0.0), row


def check_snapshot(snapshot: dict[str, list[dict[str, Any]]]) -> None:
    """One state's four windows through the production checks: nothing may be flagged.

    ``parse_heatmap`` on each body (types, row arithmetic, unique coins and segment ids),
    then ``normalise`` on the four stored bodies: the same row checks in bulk and, across
    windows, 24h <= 7d <= 30d <= all per coin and segment, both ladders partitioning the
    same positions (no more than the coin's), and long == short per coin in window all.
    """
    assert set(snapshot) == set(WINDOWS)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for window in WINDOWS:
            body = orjson.dumps({"heatmap": snapshot[window]})
            payload = parse_heatmap(body, window, f"{URL}?openedWithin={window}")
            assert payload.extra_fields == frozenset(), window
            assert payload.unknown_segment_ids == frozenset(), window
            check_conventions(snapshot[window])
            paths[window] = Path(tmp) / f"{window}.json"
            paths[window].write_bytes(body)
        assert structure_problems(paths) == {w: ([], []) for w in WINDOWS}
        checked = normalise(body_files("sim", datetime(2026, 11, 1), paths))
    assert checked.problems == {}
    assert checked.warnings == {}
    assert checked.unknown_segment_ids == {}


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=7)


@FEW
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(0, 6 * DAY))
def test_every_state_passes_the_production_checks(seed: int, k: int) -> None:
    check_snapshot(Market(seed).snapshot(k))


def test_late_states_pass_the_production_checks(market: Market) -> None:
    # Three weeks in: listings, delistings and jumps have all happened by then.
    for k in (21 * DAY, 21 * DAY + 1):
        check_snapshot(market.snapshot(k))


def test_drift_breaks_the_contract_and_leaves_the_original_alone(market: Market) -> None:
    heatmap = market.heatmap(10)
    before = orjson.dumps(heatmap)

    def parsed(kind: str) -> HeatmapPayload:
        return parse_heatmap(orjson.dumps(drift_heatmap(kind, heatmap)), "all", URL)

    flagged = {"extra_field", "unknown_segment"}  # valid payloads the client keeps and flags
    for kind in sorted(DRIFT_KINDS - flagged):
        with pytest.raises(PayloadError):
            parsed(kind)
    assert parsed("extra_field").extra_fields
    assert parsed("unknown_segment").unknown_segment_ids == {UNKNOWN_SEGMENT_ID}
    assert orjson.dumps(heatmap) == before  # the cached original is untouched by drift


def test_emitted_json_round_trips_with_field_order(market: Market) -> None:
    body = market.heatmap_json(5, "all")
    assert orjson.loads(body) == {"heatmap": market.heatmap(5, "all")}
    assert body.startswith(b'{"heatmap":[{"coin":"')


def test_open_interest_is_heavy_tailed_and_btc_leads(market: Market) -> None:
    for k in (0, 7 * DAY, 20 * DAY):
        heatmap = market.heatmap(k, "all")
        by_name = {coin["coin"]: coin for coin in heatmap}
        btc = by_name["BTC"]
        assert 4e8 < btc["totalValue"] < 3e9
        assert 1e4 < btc["count"] < 6e4
        assert by_name["ETH"]["totalValue"] > 1.5e8
        values = sorted((coin["totalValue"] for coin in heatmap), reverse=True)
        assert values[0] / values[len(values) // 2] > 100  # the median coin is far smaller
        assert values[-1] < 3e4  # the tail goes down to thousands of USD
        assert 300 <= len(heatmap) <= 360


def test_cohort_counts_follow_the_size_ladder(market: Market) -> None:
    btc = next(coin for coin in market.heatmap(100, "all") if coin["coin"] == "BTC")
    seg = {s["segmentId"]: s for s in btc["segments"]}
    # Many small shrimp and fish positions, few big leviathan ones.
    assert seg[16]["count"] > 20 * seg[7]["count"]
    assert seg[1]["count"] > 20 * seg[7]["count"]
    avg = {i: seg[i]["totalValue"] / seg[i]["count"] for i in SIZE_IDS}
    assert avg[16] < avg[1] < avg[2] < avg[4] < avg[7]


def test_empty_cohorts_are_left_out_mostly_in_small_coins(market: Market) -> None:
    heatmap = market.heatmap(50, "all")
    segments = [len(coin["segments"]) for coin in heatmap]
    assert all(n == 16 for n in segments[:5])  # the majors have every cohort
    assert sum(n < 16 for n in segments) > len(heatmap) // 5
    assert sum(n < 10 for n in segments) > 10
    assert sum(segments[:50]) > sum(segments[-50:])


def test_hip3_markets_are_present(market: Market) -> None:
    names = {coin["coin"] for coin in market.heatmap(0, "all")}
    hip3 = {name for name in names if ":" in name}
    assert len(hip3) >= 10
    assert {"xyz:GOLD", "xyz:TSLA", "flx:NVDA", "km:SILVER"} <= hip3
    assert "kPEPE" in names  # case matters in coin names


def test_coins_list_and_delist_over_two_weeks(market: Market) -> None:
    before = set(market.coins_at(market.state_index_at(DEFAULT_START + timedelta(hours=1))))
    after = set(market.coins_at(market.state_index_at(DEFAULT_START + timedelta(days=14))))
    assert len(after - before) >= 4
    assert len(before - after) >= 4
    # A coin appears exactly at its listing time, and is absent from the heatmap before.
    schedule = market.listing_schedule()
    coin = sorted(after - before, key=lambda name: schedule[name][0] or DEFAULT_START)[0]
    listed_at = schedule[coin][0]
    assert listed_at is not None
    k = market.state_index_at(listed_at)
    names = {c["coin"] for c in market.heatmap(k, "all")}
    names_next = {c["coin"] for c in market.heatmap(k + 1, "all")}
    assert coin not in names or market.state_time(k) == listed_at
    assert coin in names_next
    # A young coin's positions are all recent: window 7d holds all of them.
    young = next(c for c in market.heatmap(k + 1, "7d") if c["coin"] == coin)
    old = next(c for c in market.heatmap(k + 1, "all") if c["coin"] == coin)
    assert young["count"] == old["count"]


def test_same_seed_same_market_whatever_the_order_of_calls() -> None:
    forward = Market(seed=3)
    body_a = forward.heatmap_json(300, "24h")
    body_b = forward.heatmap_json(260, "24h")  # back: replays from a checkpoint
    fresh = Market(seed=3)
    assert fresh.heatmap_json(260, "24h") == body_b
    assert fresh.heatmap_json(300, "24h") == body_a
    assert Market(seed=4).heatmap_json(300, "24h") != body_a


def test_biases_move_day_over_day_and_cohorts_disagree(market: Market) -> None:
    def biases(k: int) -> dict[tuple[str, int], float]:
        return {
            (coin["coin"], seg["segmentId"]): seg["bias"]
            for coin in market.heatmap(k, "all")[:30]
            for seg in coin["segments"]
        }

    today, tomorrow, next_week = biases(10 * DAY), biases(11 * DAY), biases(17 * DAY)
    common = today.keys() & tomorrow.keys()
    changes = [abs(today[key] - tomorrow[key]) for key in common]
    assert sum(changes) / len(changes) > 0.02
    assert max(abs(today[key] - next_week[key]) for key in today.keys() & next_week.keys()) > 0.2
    # Smart money and retail do not move as one: they sit apart on some coins.
    gaps = [
        abs(today[(coin, 8)] - today[(coin, 16)])
        for coin in {c for c, _ in today}
        if (coin, 8) in today and (coin, 16) in today
    ]
    assert max(gaps) > 0.2
    losers = [today[key] for key in today if key[1] in GROUPS["losers"]]
    smart = [today[key] for key in today if key[1] in GROUPS["smart_money"]]
    assert sum(losers) / len(losers) > sum(smart) / len(smart)


def test_windows_differ_from_each_other(market: Market) -> None:
    snapshot = market.snapshot(200)
    btc = {w: next(c for c in snapshot[w] if c["coin"] == "BTC") for w in WINDOWS}
    assert btc["24h"]["count"] < btc["7d"]["count"] < btc["30d"]["count"] < btc["all"]["count"]
    assert btc["24h"]["totalLongValue"] != btc["24h"]["totalShortValue"]


@FEW
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(0, 20_000))
def test_state_times_are_15_to_30_minutes_apart(seed: int, k: int) -> None:
    market = Market(seed)
    t_k, t_next = market.state_time(k), market.next_state_time(k)
    assert timedelta(minutes=15) <= t_next - t_k <= timedelta(minutes=30)
    assert market.state_index_at(t_k) == k
    assert market.state_index_at(t_next - timedelta(milliseconds=1)) == k
    assert market.state_index_at(t_next) == k + 1
    status = market.status(k)
    assert list(status) == ["lastUpdate", "nextUpdate", "nextUpdateThreshold"]
    assert all(ISO_MS.match(value) for value in status.values())
    last = datetime.fromisoformat(status["lastUpdate"].replace("Z", "+00:00"))
    assert last == t_k
    threshold = datetime.fromisoformat(status["nextUpdateThreshold"].replace("Z", "+00:00"))
    assert t_next <= threshold


def test_no_state_before_the_start() -> None:
    with pytest.raises(ValueError, match="before the market's start"):
        Market().state_index_at(DEFAULT_START - timedelta(seconds=1))
    assert Market(start=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)).start.microsecond == (
        123000
    )


def test_segments_are_the_16_cohorts_in_ladder_order() -> None:
    segments = Market.segments()
    parsed = parse_segments(orjson.dumps(segments), URL)
    assert [s.id for s in parsed] == [c.segment_id for c in COHORTS]
    assert [s["id"] for s in segments] == [16, 1, 2, 3, 4, 5, 6, 7, *range(8, 16)]
    assert segments[0] == {
        "id": 16,
        "name": "Shrimp",
        "category": "size",
        "emoji": "🦐",
        "criteria": {"minEquity": 0, "maxEquity": 250},
    }
    by_id = {s["id"]: s for s in segments}
    assert by_id[7]["criteria"] == {"minEquity": 5_000_000, "maxEquity": None}
    assert by_id[8]["name"] == "Money Printer"
    assert by_id[8]["criteria"] == {"minPnl": 1_000_000, "maxPnl": None}
    assert by_id[15]["criteria"] == {"minPnl": None, "maxPnl": -1_000_000}
