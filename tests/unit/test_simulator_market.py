"""The simulated market emits payloads that look like, and are as consistent as, the real one.

Property-based over seeds and states: every invariant the seed document's example obeys
must hold exactly on every row the simulator emits, in every window, at every state.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.hypertracker.simulator.faults import DRIFT_KINDS, drift_heatmap
from flows.hypertracker.simulator.market import (
    COHORTS,
    DEFAULT_START,
    PNL_IDS,
    SIZE_IDS,
    WINDOWS,
    Market,
)

COIN_KEYS = [
    "coin",
    "totalValue",
    "totalLongValue",
    "totalShortValue",
    "count",
    "countLong",
    "countShort",
    "segments",
]
SEGMENT_KEYS = [
    "segmentId",
    "coin",
    "totalValue",
    "totalLongValue",
    "totalShortValue",
    "count",
    "countLong",
    "countShort",
    "bias",
]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DAY = 64  # states per day, on average (22.5 minutes apart)
FEW = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def check_row(row: dict[str, Any]) -> None:
    """The per-row invariants, shared by coin and segment rows."""
    for key in ("count", "countLong", "countShort"):
        assert type(row[key]) is int, (key, row)
        assert row[key] >= 0, (key, row)
    for key in ("totalValue", "totalLongValue", "totalShortValue"):
        assert type(row[key]) is float, (key, row)
        assert row[key] >= 0.0, (key, row)
    assert row["count"] == row["countLong"] + row["countShort"], row
    assert row["totalValue"] == row["totalLongValue"] + row["totalShortValue"], row
    assert row["count"] > 0, row
    # A side without positions holds no value, and a side with positions holds some.
    assert (row["countLong"] == 0) == (row["totalLongValue"] == 0.0), row
    assert (row["countShort"] == 0) == (row["totalShortValue"] == 0.0), row


def check_heatmap(heatmap: list[dict[str, Any]], window: str) -> None:
    """Every invariant of one window's payload."""
    names = [coin["coin"] for coin in heatmap]
    assert len(names) == len(set(names)), "duplicate coin"
    for coin in heatmap:
        assert list(coin) == COIN_KEYS
        check_row(coin)
        if window == "all":
            assert coin["totalLongValue"] == coin["totalShortValue"], coin["coin"]
        ids = [seg["segmentId"] for seg in coin["segments"]]
        assert ids == sorted(set(ids)), (coin["coin"], ids)
        assert set(ids) <= set(range(1, 17)), ids
        for seg in coin["segments"]:
            assert list(seg) == SEGMENT_KEYS
            assert seg["coin"] == coin["coin"]
            check_row(seg)
            assert type(seg["bias"]) is float
            assert seg["bias"] == round(seg["totalLongValue"] / seg["totalValue"], 3), seg
            assert 0.0 <= seg["bias"] <= 1.0
        by_id = {seg["segmentId"]: seg for seg in coin["segments"]}
        size = [by_id[i] for i in SIZE_IDS if i in by_id]
        pnl = [by_id[i] for i in PNL_IDS if i in by_id]
        # Both ladders partition the same positions, just under the coin's totals.
        for key in ("count", "countLong", "countShort"):
            assert sum(s[key] for s in size) == sum(s[key] for s in pnl), (coin["coin"], key)
            assert sum(s[key] for s in size) <= coin[key]
        for key in ("totalValue", "totalLongValue", "totalShortValue"):
            size_sum, pnl_sum = sum(s[key] for s in size), sum(s[key] for s in pnl)
            assert size_sum == pytest.approx(pnl_sum, rel=1e-9, abs=1e-6), (coin["coin"], key)
            assert max(size_sum, pnl_sum) <= coin[key] * (1 + 1e-12) + 1e-6, (coin["coin"], key)


def check_nesting(snapshot: dict[str, list[dict[str, Any]]]) -> None:
    """24h <= 7d <= 30d <= all for every coin and segment, counts and values, exactly."""
    keys = ("totalValue", "totalLongValue", "totalShortValue", "count", "countLong", "countShort")
    for inner, outer in (("24h", "7d"), ("7d", "30d"), ("30d", "all")):
        outer_coins = {coin["coin"]: coin for coin in snapshot[outer]}
        for coin in snapshot[inner]:
            big = outer_coins.get(coin["coin"])
            assert big is not None, f"{coin['coin']} in {inner} but not in {outer}"
            for key in keys:
                assert coin[key] <= big[key], (inner, outer, coin["coin"], key)
            big_segs = {seg["segmentId"]: seg for seg in big["segments"]}
            for seg in coin["segments"]:
                other = big_segs.get(seg["segmentId"])
                assert other is not None, (inner, outer, coin["coin"], seg["segmentId"])
                for key in keys:
                    assert seg[key] <= other[key], (inner, outer, coin["coin"], seg, other)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=7)


@FEW
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(0, 6 * DAY))
def test_every_state_satisfies_the_invariants(seed: int, k: int) -> None:
    snapshot = Market(seed).snapshot(k)
    assert set(snapshot) == set(WINDOWS)
    for window, heatmap in snapshot.items():
        check_heatmap(heatmap, window)
    check_nesting(snapshot)


def test_late_states_satisfy_the_invariants(market: Market) -> None:
    # Three weeks in: listings, delistings and jumps have all happened by then.
    for k in (21 * DAY, 21 * DAY + 1):
        snapshot = market.snapshot(k)
        for window, heatmap in snapshot.items():
            check_heatmap(heatmap, window)
        check_nesting(snapshot)


def test_the_checker_rejects_broken_payloads(market: Market) -> None:
    heatmap = market.heatmap(10)
    before = orjson.dumps(heatmap)
    for kind in ("missing_field", "bias_out_of_range", "negative_count", "duplicate_coin"):
        with pytest.raises((AssertionError, KeyError)):
            check_heatmap(drift_heatmap(kind, heatmap)["heatmap"], "all")
    for kind in DRIFT_KINDS:
        drift_heatmap(kind, heatmap)
    check_heatmap(heatmap, "all")  # the cached original is untouched by drift
    assert orjson.dumps(heatmap) == before


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
    losers = [today[key] for key in today if key[1] in (12, 13, 14, 15)]
    smart = [today[key] for key in today if key[1] in (8, 9)]
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
    assert len({c.name for c in COHORTS}) == 16
