"""Heatmap and segments payloads: the seed example passes, every kind of drift is named."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.hypertracker.errors import PayloadError
from flows.hypertracker.payload import HeatmapPayload, parse_heatmap, parse_segments

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "seed_heatmap_btc.json"
URL = "http://127.0.0.1:8000/api/external/positions/heatmap?openedWithin=all"


def seed_doc() -> dict[str, Any]:
    return orjson.loads(SEED.read_bytes())


def parse(doc: Any, window: str = "all") -> HeatmapPayload:
    return parse_heatmap(orjson.dumps(doc), window, URL)


def reasons_for(doc: Any) -> list[str]:
    with pytest.raises(PayloadError) as info:
        parse(doc)
    assert info.value.window == "all"
    assert info.value.url == URL
    return info.value.reasons


def edited(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    doc = seed_doc()
    edit(doc)
    return doc


def btc(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["heatmap"][0]


def seg(doc: dict[str, Any], j: int) -> dict[str, Any]:
    return doc["heatmap"][0]["segments"][j]


# --- the seed example ----------------------------------------------------------------------
def test_seed_example_parses_and_passes() -> None:
    payload = parse_heatmap(SEED.read_bytes(), "all", URL)
    assert (payload.window, payload.url) == ("all", URL)
    assert [c["coin"] for c in payload.coins] == ["BTC"]
    coin = payload.by_coin()["BTC"]
    assert coin["count"] == 23755
    assert coin["totalValue"] == 1243320305.98032
    assert [s["segmentId"] for s in coin["segments"]] == list(range(1, 17))
    assert payload.extra_fields == frozenset()
    assert payload.unknown_segment_ids == frozenset()


def test_an_int_is_accepted_where_a_float_is_due() -> None:
    doc = edited(lambda d: seg(d, 0).update(totalValue=100, totalLongValue=61, totalShortValue=39))
    seg(doc, 0)["bias"] = 0.61
    payload = parse(doc)
    assert payload.coins[0]["segments"][0]["totalValue"] == 100.0


# --- drift that is tolerated ---------------------------------------------------------------
def test_extra_fields_are_tolerated_and_reported() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["generatedAt"] = "2026-11-24T15:30:00Z"
        btc(d)["markPrice"] = 97000.5
        seg(d, 3)["avgLeverage"] = 4.2

    payload = parse(edited(edit))
    assert payload.extra_fields == {
        "generatedAt",
        "heatmap[].markPrice",
        "heatmap[].segments[].avgLeverage",
    }
    assert "markPrice" not in payload.coins[0]  # rows keep the known schema only


def test_unknown_segment_id_is_kept_and_flagged() -> None:
    doc = seed_doc()
    extra = copy.deepcopy(seg(doc, 0))
    extra["segmentId"] = 17
    btc(doc)["segments"].append(extra)
    payload = parse(doc)
    assert payload.unknown_segment_ids == {17}
    assert payload.coins[0]["segments"][-1]["segmentId"] == 17


def test_values_within_tolerance_pass() -> None:
    def edit(d: dict[str, Any]) -> None:
        seg(d, 0)["totalValue"] += 0.005  # half a cent off: float/printing noise
        seg(d, 0)["bias"] = 0.615  # exact share 0.61406: one rounding step away

    parse(edited(edit))


# --- drift that is rejected, each with its path --------------------------------------------
CASES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("missing coin field", lambda d: btc(d).pop("countShort"), "heatmap[0].countShort"),
    ("missing segment field", lambda d: seg(d, 3).pop("bias"), "heatmap[0].segments[3].bias"),
    ("missing segments", lambda d: btc(d).pop("segments"), "heatmap[0].segments"),
    (
        "string number",
        lambda d: seg(d, 2).update(totalLongValue="33190292.6874"),
        "heatmap[0].segments[2].totalLongValue",
    ),
    ("string count", lambda d: btc(d).update(count="23755"), "heatmap[0].count"),
    ("float count", lambda d: seg(d, 5).update(countLong=66.0), "heatmap[0].segments[5].countLong"),
    (
        "bool count",
        lambda d: seg(d, 5).update(countShort=True),
        "heatmap[0].segments[5].countShort",
    ),
    ("null value", lambda d: btc(d).update(totalValue=None), "heatmap[0].totalValue"),
    (
        "string segment id",
        lambda d: seg(d, 4).update(segmentId="5"),
        "heatmap[0].segments[4].segmentId",
    ),
    ("bias above 1", lambda d: seg(d, 12).update(bias=1.2), "heatmap[0].segments[12].bias"),
    ("bias below 0", lambda d: seg(d, 12).update(bias=-0.1), "heatmap[0].segments[12].bias"),
    ("bias not long/total", lambda d: seg(d, 0).update(bias=0.386), "heatmap[0].segments[0].bias"),
    (
        "negative count",
        lambda d: seg(d, 6).update(countLong=-1, countShort=52),
        "heatmap[0].segments[6].countLong",
    ),
    (
        "negative value",
        lambda d: seg(d, 6).update(totalShortValue=-1.0),
        "heatmap[0].segments[6].totalShortValue",
    ),
    (
        "count mismatch",
        lambda d: seg(d, 2).update(count=457),
        "heatmap[0].segments[2].count: 457 != countLong + countShort (253 + 203)",
    ),
    ("coin count mismatch", lambda d: btc(d).update(countLong=12047), "heatmap[0].count"),
    (
        "value sum mismatch",
        lambda d: btc(d).update(totalValue=1243321305.98032),
        "heatmap[0].totalValue",
    ),
    (
        "segment value sum mismatch",
        lambda d: seg(d, 9).update(totalValue=69308012.6),
        "heatmap[0].segments[9].totalValue",
    ),
    (
        "duplicate coin",
        lambda d: d["heatmap"].append(copy.deepcopy(btc(d))),
        "heatmap[1].coin: duplicate coin 'BTC'",
    ),
    (
        "duplicate segment id",
        lambda d: btc(d)["segments"].append(copy.deepcopy(seg(d, 7))),
        "heatmap[0].segments[16].segmentId: duplicate segment id 8",
    ),
    (
        "segment of another coin",
        lambda d: seg(d, 1).update(coin="ETH"),
        "heatmap[0].segments[1].coin",
    ),
    ("empty coin name", lambda d: btc(d).update(coin=""), "heatmap[0].coin"),
    ("coin is not an object", lambda d: d["heatmap"].append([1, 2]), "heatmap[1]"),
    (
        "empty heatmap",
        lambda d: d.update(heatmap=[]),
        "heatmap: empty heatmap: the API returned no",
    ),
    ("no heatmap key", lambda d: d.pop("heatmap"), "heatmap: expected a list of coins"),
    ("heatmap not a list", lambda d: d.update(heatmap={"BTC": {}}), "heatmap: expected a list"),
]


@pytest.mark.parametrize(("edit", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_drift_is_rejected_with_its_path(edit: Callable, path: str) -> None:
    reasons = reasons_for(edited(edit))
    assert any(r.startswith(path) for r in reasons), reasons


def test_every_reason_is_reported_not_just_the_first() -> None:
    def edit(d: dict[str, Any]) -> None:
        seg(d, 0)["bias"] = "0.614"  # type
        seg(d, 2)["count"] = 457  # arithmetic
        seg(d, 9)["coin"] = "ETH"  # consistency
        btc(d)["segments"].append(copy.deepcopy(seg(d, 4)))  # duplicate id

    reasons = reasons_for(edited(edit))
    assert len(reasons) == 4, reasons
    for path in (
        "heatmap[0].segments[0].bias",
        "heatmap[0].segments[2].count",
        "heatmap[0].segments[9].coin",
        "heatmap[0].segments[16].segmentId",
    ):
        assert any(r.startswith(path) for r in reasons), (path, reasons)


def test_not_json_and_not_an_object() -> None:
    for body in (b"", b"<html>502 Bad Gateway</html>", b'{"heatmap": [', b"[1, 2]"):
        with pytest.raises(PayloadError) as info:
            parse_heatmap(body, "24h", URL)
        assert info.value.reasons
        assert info.value.reasons[0].startswith("$")
        assert "window 24h" in str(info.value)


def test_message_lists_ten_reasons_then_a_count() -> None:
    reasons = [f"heatmap[{i}].count: bad" for i in range(15)]
    message = str(PayloadError("7d", URL, reasons))
    assert "15 problem(s)" in message
    assert "heatmap[9].count" in message
    assert "heatmap[10].count" not in message
    assert "and 5 more" in message
    assert URL in message


# --- a payload of realistic size, and generated payloads -----------------------------------
def synthetic_heatmap(n_coins: int, n_segments: int, seed: int = 7) -> dict[str, Any]:
    """A valid heatmap: rows consistent, ladders balanced as in the real API."""
    rng = random.Random(seed)
    coins = []
    for i in range(n_coins):
        name = f"xyz:C{i}" if i % 25 == 0 else f"COIN{i}"
        segs = []
        for sid in sorted(rng.sample(range(1, 17), n_segments)):
            long_v, short_v = round(rng.uniform(0, 1e8), 5), round(rng.uniform(0, 1e8), 5)
            c_long, c_short = rng.randint(0, 5000), rng.randint(0, 5000)
            segs.append(
                {
                    "segmentId": sid,
                    "coin": name,
                    "totalValue": long_v + short_v,
                    "totalLongValue": long_v,
                    "totalShortValue": short_v,
                    "count": c_long + c_short,
                    "countLong": c_long,
                    "countShort": c_short,
                    "bias": round(long_v / (long_v + short_v), 3) if long_v + short_v else 0.5,
                }
            )
        long_v = sum(s["totalLongValue"] for s in segs)
        short_v = sum(s["totalShortValue"] for s in segs)
        c_long = sum(s["countLong"] for s in segs)
        c_short = sum(s["countShort"] for s in segs)
        coins.append(
            {
                "coin": name,
                "totalValue": long_v + short_v,
                "totalLongValue": long_v,
                "totalShortValue": short_v,
                "count": c_long + c_short,
                "countLong": c_long,
                "countShort": c_short,
                "segments": segs,
            }
        )
    return {"heatmap": coins}


def test_a_full_size_payload_parses() -> None:
    doc = synthetic_heatmap(330, 14)
    body = orjson.dumps(doc)
    assert len(body) > 800_000  # about the size of one real window
    payload = parse_heatmap(body, "all", URL)
    assert len(payload.coins) == 330
    assert sum(len(c["segments"]) for c in payload.coins) == 330 * 14


def test_many_errors_in_a_full_size_payload_are_all_found() -> None:
    doc = synthetic_heatmap(330, 14)
    for coin in doc["heatmap"][::10]:  # 33 coins
        coin["segments"][0]["count"] += 1
    reasons = reasons_for(doc)
    assert len(reasons) == 33


@settings(max_examples=40, deadline=None)
@given(
    n_coins=st.integers(1, 6),
    n_segments=st.integers(0, 16),
    seed=st.integers(0, 10_000),
)
def test_generated_valid_payloads_parse(n_coins: int, n_segments: int, seed: int) -> None:
    doc = synthetic_heatmap(n_coins, n_segments, seed)
    payload = parse(doc)
    assert sum(len(c["segments"]) for c in payload.coins) == n_coins * n_segments
    assert [c["count"] for c in payload.coins] == [c["count"] for c in doc["heatmap"]]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    field=st.sampled_from(["count", "countLong", "countShort"]),
    delta=st.integers(1, 1000),
)
def test_any_broken_count_is_caught(seed: int, field: str, delta: int) -> None:
    doc = synthetic_heatmap(3, 5, seed)
    doc["heatmap"][1]["segments"][2][field] += delta
    reasons = reasons_for(doc)
    assert any(r.startswith("heatmap[1].segments[2].count") for r in reasons), reasons


# --- the cohort ladder ---------------------------------------------------------------------
SEGMENTS_URL = "http://127.0.0.1:8000/api/external/segments"
LADDER = [
    {
        "id": 16,
        "name": "Shrimp",
        "category": "size",
        "emoji": "🦐",
        "criteria": {"minEquity": 0, "maxEquity": 250},
    },
    {
        "id": 8,
        "name": "Money Printer",
        "category": "pnl",
        "emoji": "🖨️",
        "criteria": {"minPnl": 1_000_000, "maxPnl": None},
        "description": "new field",
    },
]


@pytest.mark.parametrize("shape", ["bare", "envelope"])
def test_parse_segments(shape: str) -> None:
    doc: Any = LADDER if shape == "bare" else {"segments": LADDER}
    segments = parse_segments(orjson.dumps(doc), SEGMENTS_URL)
    assert [(s.id, s.name) for s in segments] == [(16, "Shrimp"), (8, "Money Printer")]
    assert segments[1].criteria == {"minPnl": 1_000_000, "maxPnl": None}
    assert segments[0].emoji == "🦐"


def test_parse_segments_minimal_items() -> None:
    segments = parse_segments(b'[{"id": 1, "name": "Fish"}]', SEGMENTS_URL)
    assert segments[0].category is None
    assert segments[0].criteria is None


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([{"id": "1", "name": "Fish"}], "$[0].id"),
        ([{"name": "Fish"}], "$[0].id: required field is missing"),
        ({"segments": [{"id": 1}]}, "segments[0].name"),
        ([{"id": 1, "name": "Fish"}, {"id": 1, "name": "Fish again"}], "$[1].id: duplicate"),
        ([], "$: the API returned no segments"),
        ({"cohorts": 3}, "$: expected a list of segments"),
    ],
)
def test_parse_segments_rejects(doc: Any, expected: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_segments(orjson.dumps(doc), SEGMENTS_URL)
    assert info.value.window is None
    assert any(r.startswith(expected) for r in info.value.reasons), info.value.reasons
