"""The simulated Hyperliquid info API's answers (``POST /info``), from the market's prices.

Shapes as documented and as recorded (tests/fixtures/hyperliquid/): decimal strings for
every number, candles keyed ``t T s i o c h l v n``, funding rows ``coin fundingRate
premium time``. What they hold agrees with the heatmap the same market emits:

- ``metaAndAssetCtxs``: a dex's universe (coins listed by now; delisted ones flagged) and
  their contexts at ``now``. ``openInterest`` (coins, one side) is the heatmap's window-all
  long value at the current state divided by that state's mark, so the cohorts' notional is
  their size times the mark; ``dayNtlVlm`` is the last 24 candles' volume at their closes.
- ``candleSnapshot``: candles overlapping ``[startTime, endTime]``, of the newest 5000 up to
  ``now`` (the current one still open), from the coin's first price on.
- ``fundingHistory``: the hourly rates paid in ``[startTime, endTime]``, 500 at most.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import numpy as np
import orjson

from simulator.market import Market
from simulator.prices import HOUR_MS, price_text

INTERVALS_MS: Final = {
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": 24 * HOUR_MS,
}
MAX_CANDLES: Final = 5000
FUNDING_PAGE: Final = 500


class BadInfoRequest(ValueError):
    """A request the real API would refuse (it answers 422 with a plain message)."""


def dexes(market: Market) -> list[str]:
    """The dexes of the market: ``''`` (the main one), then each builder dex."""
    return ["", *sorted({name.split(":")[0] for name in market.coin_names if ":" in name})]


def answer(market: Market, request: Any, now: datetime) -> bytes:
    """The body for one info request at ``now``; BadInfoRequest for what the API refuses."""
    if not isinstance(request, dict) or not isinstance(request.get("type"), str):
        raise BadInfoRequest("Failed to deserialize the JSON body into the target type")
    kind = request["type"]
    if kind == "metaAndAssetCtxs":
        return orjson.dumps(meta_and_asset_ctxs(market, str(request.get("dex", "")), now))
    if kind == "candleSnapshot":
        req = request.get("req")
        if not isinstance(req, dict):
            raise BadInfoRequest("candleSnapshot needs req: {coin, interval, startTime, endTime}")
        return orjson.dumps(
            candles(
                market,
                req.get("coin"),
                req.get("interval"),
                req.get("startTime"),
                req.get("endTime"),
                now,
            )
        )
    if kind == "fundingHistory":
        return orjson.dumps(
            funding_history(
                market, request.get("coin"), request.get("startTime"), request.get("endTime"), now
            )
        )
    if kind == "perpDexs":
        return orjson.dumps([None, *({"name": d} for d in dexes(market)[1:])])
    raise BadInfoRequest(f"Failed to deserialize the JSON body: unknown type {kind!r}")


def _coin_index(market: Market, coin: Any) -> int:
    if not isinstance(coin, str) or coin not in market.coin_names:
        raise BadInfoRequest(f"unknown coin {coin!r}")
    return market.coin_names.index(coin)


def _ms(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInfoRequest(f"{name} must be an integer of epoch milliseconds")
    return value


def meta_and_asset_ctxs(market: Market, dex: str, now: datetime) -> list[Any]:
    """``[{"universe": [...]}, [ctx, ...]]`` of one dex at ``now``."""
    if dex not in dexes(market):
        raise BadInfoRequest(f"unknown dex {dex!r}")
    prices = market.prices
    now_ms = market.ms_of(now)
    k = market.state_index_at(max(now, market.start))
    listed = market._list_ms <= now_ms
    delisted = market._delist_ms <= now_ms
    members = [
        i
        for i, name in enumerate(market.coin_names)
        if listed[i] and (name.split(":")[0] if ":" in name else "") == dex
    ]
    if not members:
        return [{"universe": []}, []]
    marks_now, marks_state, day_ago, day, day_usd, rates = _market_now(market, k, now_ms)
    side = {c["coin"]: c["totalLongValue"] for c in market.heatmap(k, "all")}
    universe, ctxs = [], []
    for i in members:
        name = market.coin_names[i]
        sz = int(prices.sz_decimals[i])
        entry: dict[str, Any] = {
            "szDecimals": sz,
            "name": name,
            "maxLeverage": int(prices.max_leverage[i]),
        }
        if delisted[i]:
            entry["isDelisted"] = True
            gone = prices.marks_at(int(market._delist_ms[i]) - 1)[i]
            ctxs.append(
                {
                    "funding": "0.0",
                    "openInterest": "0.0",
                    "prevDayPx": price_text(gone),
                    "dayNtlVlm": "0.0",
                    "premium": None,
                    "oraclePx": price_text(gone),
                    "markPx": price_text(gone),
                    "midPx": None,
                    "impactPxs": None,
                    "dayBaseVlm": "0.0",
                }
            )
            universe.append(entry)
            continue
        mark = float(marks_now[i])
        rate = float(rates[i, 0])
        premium = rate - 0.0000125
        spread = 2e-4 if i < 25 else 2e-3
        oi = side.get(name, 0.0) / float(marks_state[i])
        ctxs.append(
            {
                "funding": price_text(rate),
                "openInterest": price_text(round(oi, sz), sz or 1),
                "prevDayPx": price_text(float(day_ago[i])),
                "dayNtlVlm": price_text(round(float(day_usd[i]), 2), 2),
                "premium": price_text(round(premium, 8)),
                "oraclePx": price_text(_five(mark * (1 - premium))),
                "markPx": price_text(mark),
                "midPx": price_text(mark),
                "impactPxs": [
                    price_text(_five(mark * (1 - spread))),
                    price_text(_five(mark * (1 + spread))),
                ],
                "dayBaseVlm": price_text(round(float(np.nansum(day.volume[i])), sz), sz or 1),
            }
        )
        universe.append(entry)
    return [{"universe": universe}, ctxs]


def _market_now(market: Market, k: int, now_ms: int) -> tuple[Any, ...]:
    """Every coin's marks, day and funding at ``now_ms`` (one 5-minute grid point), kept for
    the next dex's request at the same point: a capture asks for several at once."""
    key = (k, now_ms // 300_000)
    cached = getattr(market, "_info_now", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    prices = market.prices
    h_now = prices.hour_of(now_ms)
    day = prices.hourly(h_now - 23, h_now + 1, now_ms)
    values = (
        prices.marks_at(now_ms),
        prices.marks_at(market.ms_of(market.state_time(k))),
        prices.marks_at(now_ms - 24 * HOUR_MS),
        day,
        np.nansum(day.volume * np.nan_to_num(day.close), axis=1),
        prices.funding(h_now, h_now + 1)[0],
    )
    market._info_now = (key, values)  # type: ignore[attr-defined]
    return values


def _five(value: float) -> float:
    """Five significant figures, as Hyperliquid rounds prices."""
    return float(f"{value:.5g}")


def candles(
    market: Market, coin: Any, interval: Any, start: Any, end: Any, now: datetime
) -> list[dict[str, Any]]:
    """The candles of one coin overlapping ``[start, end]`` (ms), up to ``now``."""
    i = _coin_index(market, coin)
    if interval != "1h":
        # Only hourly candles are simulated; the real API has more intervals.
        raise BadInfoRequest(f"interval {interval!r} is not simulated: ask for 1h")
    epoch = _epoch_offset(market)
    start_ms, end_ms = _ms(start, "startTime") - epoch, _ms(end, "endTime") - epoch
    return _candle_rows(market, i, start_ms, end_ms, market.ms_of(now))


def _epoch_offset(market: Market) -> int:
    """The market's start in epoch ms: times on the wire are epoch, the model's relative."""
    return int(market.start.timestamp() * 1000)


def _candle_rows(
    market: Market, i: int, start_ms: int, end_ms: int, now_ms: int
) -> list[dict[str, Any]]:
    prices = market.prices
    last_h = prices.hour_of(now_ms)
    first_h = max(last_h - MAX_CANDLES + 1, prices.hour_of(int(prices.begin_ms[i]) - 1) + 1)
    stop = min(prices.hour_of(end_ms), last_h, prices.hour_of(int(market._delist_ms[i]) - 1))
    h0 = max(first_h, prices.hour_of(start_ms))
    if stop < h0:
        return []
    c = market.prices.hourly(h0, stop + 1, now_ms)
    sz = int(prices.sz_decimals[i])
    epoch = _epoch_offset(market)
    coin = market.coin_names[i]
    rows = []
    for j in range(stop + 1 - h0):
        if c.grid_points[i, j] == 0:
            continue
        t = prices.hour_start(h0 + j) + epoch
        rows.append(
            {
                "t": t,
                "T": t + HOUR_MS - 1,
                "s": coin,
                "i": "1h",
                "o": price_text(float(c.open[i, j])),
                "c": price_text(float(c.close[i, j])),
                "h": price_text(float(c.high[i, j])),
                "l": price_text(float(c.low[i, j])),
                "v": price_text(float(c.volume[i, j]), max(sz, 1)),
                "n": int(c.trades[i, j]),
            }
        )
    return rows


def funding_history(
    market: Market, coin: Any, start: Any, end: Any, now: datetime
) -> list[dict[str, Any]]:
    """The funding paid to one coin in ``[start, end]`` (ms; end defaults to now), 500 at most."""
    i = _coin_index(market, coin)
    epoch = _epoch_offset(market)
    now_ms = market.ms_of(now)
    start_ms = _ms(start, "startTime") - epoch
    end_ms = now_ms if end is None else min(_ms(end, "endTime") - epoch, now_ms)
    prices = market.prices
    begin = max(int(prices.begin_ms[i]), start_ms - HOUR_MS)
    stop = min(end_ms, int(market._delist_ms[i]))
    h0, h1 = prices.hour_of(begin), prices.hour_of(stop) + 1
    if h1 <= h0:
        return []
    rows: list[dict[str, Any]] = []
    for block in range(h0, h1, FUNDING_PAGE * 2):
        rates, times = prices.funding(block, min(block + FUNDING_PAGE * 2, h1))
        for rate, t in zip(rates[i].tolist(), times[i].tolist(), strict=True):
            if start_ms <= t <= stop and t >= prices.begin_ms[i]:
                rows.append(
                    {
                        "coin": market.coin_names[i],
                        "fundingRate": price_text(rate),
                        "premium": price_text(round(rate - 0.0000125, 8)),
                        "time": t + epoch,
                    }
                )
                if len(rows) == FUNDING_PAGE:
                    return rows
    return rows
