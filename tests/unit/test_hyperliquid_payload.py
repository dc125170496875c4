"""The info API's answers through the production parsers: recorded real bodies (the SDK's
cassettes, tests/fixtures/hyperliquid/) and the documented metaAndAssetCtxs shape."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest

from flows.hyperliquid.errors import InfoPayloadError
from flows.hyperliquid.payload import parse_candles, parse_funding, parse_meta_and_asset_ctxs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hyperliquid"


def ctx(**overrides: object) -> dict[str, object]:
    base = {
        "funding": "0.0000125", "openInterest": "12345.67", "prevDayPx": "96100.0",
        "dayNtlVlm": "1234567890.5", "premium": "0.00031774", "oraclePx": "97010.0",
        "markPx": "97000.0", "midPx": "97001.5", "impactPxs": ["97000.0", "97003.0"],
        "dayBaseVlm": "12741.2",
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def body(universe: list[dict[str, object]], ctxs: list[dict[str, object]]) -> bytes:
    return orjson.dumps([{"universe": universe}, ctxs])


BTC = {"name": "BTC", "szDecimals": 5, "maxLeverage": 40}


def test_the_recorded_universe_reads_through_the_meta_half_of_the_parser() -> None:
    meta = orjson.loads((FIXTURES / "meta_universe.json").read_bytes())
    ctxs = [ctx() for _ in meta["universe"]]
    rows = parse_meta_and_asset_ctxs(orjson.dumps([meta, ctxs]), "")
    assert [r["coin"] for r in rows][:3] == ["BTC", "ETH", "ATOM"]
    assert rows[0]["sz_decimals"] == 5
    assert rows[0]["max_leverage"] == 50
    assert "kPEPE" in {r["coin"] for r in rows}


def test_the_documented_shape_parses_decimals_on_purpose() -> None:
    delisted = {"name": "LUNA", "szDecimals": 1, "maxLeverage": 3, "isDelisted": True}
    gone = ctx(midPx=None, premium=None, impactPxs=None, openInterest="0.0", markPx="0.1")
    (btc, luna) = parse_meta_and_asset_ctxs(body([BTC, delisted], [ctx(), gone]), "")
    assert btc == {
        "coin": "BTC", "mark_px": 97000.0, "mid_px": 97001.5, "oracle_px": 97010.0,
        "open_interest": 12345.67, "funding": 0.0000125, "premium": 0.00031774,
        "day_ntl_vlm": 1234567890.5, "prev_day_px": 96100.0, "sz_decimals": 5,
        "max_leverage": 40, "is_delisted": False,
    }  # fmt: skip
    assert luna["is_delisted"]
    assert luna["mid_px"] is None
    assert luna["premium"] is None


@pytest.mark.parametrize("name", ["GOLD", "xyz:GOLD"])
def test_builder_dex_coins_are_named_as_hypertracker_names_them(name: str) -> None:
    (row,) = parse_meta_and_asset_ctxs(body([{**BTC, "name": name}], [ctx()]), "xyz")
    assert row["coin"] == "xyz:GOLD"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (97000.0, "expected a decimal string, got float"),
        ("97,000", "is not a decimal"),
        ("1.2.3", "is not a decimal"),
        ("NaN", "is not a decimal"),
        ("1e400", "out of range"),
        ("", "is not a decimal"),
        (True, "expected a decimal string, got bool"),
    ],
)
def test_a_bad_decimal_is_refused_with_its_path(value: object, reason: str) -> None:
    with pytest.raises(InfoPayloadError) as err:
        parse_meta_and_asset_ctxs(body([BTC], [ctx(markPx=value)]), "")
    assert err.value.reasons == [f"[1][0].markPx: {err.value.reasons[0].split(': ', 1)[1]}"]
    assert reason in err.value.reasons[0]
    assert "\n" not in str(err.value)


def test_missing_fields_and_mismatches_are_each_named() -> None:
    bad = body(
        [{"szDecimals": 5}, {**BTC, "name": "abc:GOLD"}, BTC],
        [ctx(markPx=...), ctx(funding="0.5"), ctx()],
    )
    with pytest.raises(InfoPayloadError) as err:
        parse_meta_and_asset_ctxs(bad, "xyz")
    reasons = "\n".join(err.value.reasons)
    assert "[0].universe[0].name: expected a non-empty string" in reasons
    assert "[1][0].markPx: required decimal string is missing" in reasons
    assert "does not belong to dex 'xyz'" in reasons
    assert "[1][1].funding: 0.5 is beyond" in reasons


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b'{"universe": []}', b"[{}, []]", b"[1, 2, 3]", b'[{"universe": [{}]}, []]'],
)
def test_a_body_of_another_shape_is_refused(raw: bytes) -> None:
    with pytest.raises(InfoPayloadError):
        parse_meta_and_asset_ctxs(raw, "")


def test_the_recorded_candles_parse() -> None:
    rows = parse_candles((FIXTURES / "candle_snapshot_kPEPE_1h.json").read_bytes(), "kPEPE", "1h")
    assert len(rows) == 24
    first = rows[0]
    assert first["open_time"] == 1684699200000
    assert first["close_time"] == first["open_time"] + 3_600_000 - 1
    assert (first["open_px"], first["close_px"]) == (0.001601, 0.001604)
    assert first["trades"] == 709
    assert all(b["open_time"] - a["open_time"] == 3_600_000 for a, b in itertools.pairwise(rows))


def test_candles_of_another_coin_or_broken_bars_are_refused() -> None:
    raw = orjson.loads((FIXTURES / "candle_snapshot_kPEPE_1h.json").read_bytes())
    raw[3]["h"] = "0.000001"  # below its own open and close
    raw[5]["v"] = 5.0  # a number, not a decimal string
    with pytest.raises(InfoPayloadError) as err:
        parse_candles(orjson.dumps(raw), "kPEPE", "1h")
    assert any(r.startswith("[3]: ") and "is not a candle" in r for r in err.value.reasons)
    assert any(r.startswith("[5].v: expected a decimal string") for r in err.value.reasons)
    with pytest.raises(InfoPayloadError, match="not the coin asked for"):
        parse_candles(orjson.dumps(raw[:1]), "BTC", "1h")


@pytest.mark.parametrize(
    "name", ["funding_history_BTC_with_end_time.json", "funding_history_BTC_without_end_time.json"]
)
def test_the_recorded_funding_history_parses(name: str) -> None:
    rows = parse_funding((FIXTURES / name).read_bytes(), "BTC")
    assert rows[0] == {
        "coin": "BTC", "time": 1683849600048, "funding_rate": -0.00061334, "premium": -0.00091334,
    }  # fmt: skip
    assert all(b["time"] > a["time"] for a, b in itertools.pairwise(rows))


def test_funding_out_of_order_or_as_numbers_is_refused() -> None:
    raw = orjson.loads((FIXTURES / "funding_history_BTC_with_end_time.json").read_bytes())
    raw[1]["time"] = raw[0]["time"]
    raw[2]["fundingRate"] = -0.0006
    with pytest.raises(InfoPayloadError) as err:
        parse_funding(orjson.dumps(raw), "BTC")
    assert any("[1].time" in r for r in err.value.reasons)
    assert any("[2].fundingRate: expected a decimal string" in r for r in err.value.reasons)
