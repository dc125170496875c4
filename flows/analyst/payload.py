"""The data the interactive page holds: one JSON document, compact, read by ``report.js``.

The page keeps every window's board at each held day's close (the day slider), every board
coin's history in every window (the coin picker) and, when the warehouse has them, market
data and the flow/price split. So that a report stays small enough to keep one a day:

- numbers are sent as comma-separated text, rounded to what the page can show (notional to 3
  significant digits, a bias to 1/10000, a change to 0.1pp), an empty field meaning NULL;
- a history series is packed two characters a point (12 bits, a bias to 1/4095), ``..`` a
  missing point;
- cells are listed coin by coin, each coin's 16 cohorts in ladder order (``coin * 16 + i``);
- where a state came from is one character (:data:`SOURCE_CODES`): a day's close and the
  previous day's per window and day (``cs``, ``ps``); a history's backfilled periods are
  ``[first point, last point, code]`` per window and coin (``history.bands``, see
  :func:`bands`); :data:`BACKFILL_LABELS` names the backfilled sources for the page's marks.

Everything the page shows is derived here or in the script from these values alone; the
colours use the ramp and scales of :mod:`flows.analyst.scale`, sent with the data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flows.analyst import data
from flows.analyst.data import Board, DayCell, DayDivergence, FlowPrice, HistoryGrid, MarketRow
from flows.analyst.scale import (
    ABSENT_COLOUR,
    CHANGE_FULL_PP,
    CHANGE_TICKS_PP,
    COHORTS,
    LADDER_ORDER,
    LADDER_TITLES,
    RETAIL_SEGMENTS,
    SHORT_TO_LONG,
    SIZE_FLOOR_USD,
    SIZE_FULL_USD,
    SIZE_MIN_WEIGHT,
    SMART_SEGMENTS,
)

PACK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
PACK_LEVELS = 64 * 64 - 1
PACK_NULL = ".."
SPREAD_RANGE_PP = 100.0  # smart - retail lies in [-100, 100] bias points
STATUS_CODES = {None: ".", "new": "n", "closed": "c", "gap": "g"}
# The marts' `source`, one character each; "." = no state (a point or a day without one).
SOURCE_CODES = {None: ".", data.LIVE: "h", "position_metrics": "p", "segment_metrics_export": "e"}
# What the page calls a backfilled period, by code: the legend, the bands' labels, tooltips.
BACKFILL_LABELS = {
    "p": "backfilled: position metrics (every state)",
    "e": "backfilled: 12-hourly export",
}
BACKFILL_NOTES = {
    "p": "states that ht backfill (deep) reconstructed from HyperTracker's position metrics, "
    "at the live pace",
    "e": "states that ht backfill (quick) reconstructed from HyperTracker's segment-metrics "
    "export, 12 hours apart (in force at 00:00 and 12:00 UTC): a dot is a state, a dashed line "
    "joins two, nothing is known between them",
}


# --------------------------------------------------------------------------- encodings


def compact(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits in the shortest text JavaScript's ``+`` reads.

    ``228_400_000`` -> ``228e6``, ``823.4`` -> ``823``, ``0.0000125`` -> ``125e-7``; None and
    NaN -> ``""`` (NULL).
    """
    if value is None or math.isnan(value):
        return ""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value))) - (digits - 1)
    mantissa = round(value / 10**exponent)
    if abs(mantissa) >= 10**digits:  # 9995 at 3 digits rounds up to 1000
        mantissa = round(mantissa / 10)
        exponent += 1
    while mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    scientific = f"{mantissa}e{exponent}" if exponent else str(mantissa)
    if exponent >= 0:
        plain = str(mantissa * 10**exponent)
    else:
        plain = f"{mantissa * 10.0**exponent:.{-exponent}f}"
    return min(plain, scientific, key=len)


def csv(values: Iterable[str]) -> str:
    return ",".join(values)


def bands(sources: Sequence[str | None]) -> list[list[int | str]]:
    """The backfilled periods of a series, one per run of points whose states were backfilled
    from one source: ``[first, last, code]``, through the points between them that hold no
    state; a live state (or another source) ends a run. The page shades them."""
    out: list[list[int | str]] = []
    run: list[int | str] | None = None
    for i, source in enumerate(sources):
        if source is None:
            continue
        code = source_code(source)
        if code not in BACKFILL_LABELS:
            run = None
        elif run is not None and run[2] == code:
            run[1] = i
        else:
            run = [i, i, code]
            out.append(run)
    return out


def source_code(source: str | None) -> str:
    """One character for a ``source`` (``.`` for none); an unknown source is ``?``, never
    mistaken for live."""
    return SOURCE_CODES.get(source, "?")


def fixed(value: float | None, scale: float) -> str:
    """``round(value * scale)`` as text, ``""`` for NULL: a bias to 1/10000, a change to 0.1."""
    if value is None or math.isnan(value):
        return ""
    return str(round(value * scale))


def pack(values: Sequence[float | None], low: float = 0.0, high: float = 1.0) -> str:
    """Two characters a value in [low, high] (12 bits); ``..`` for a missing value."""
    out = []
    for v in values:
        if v is None or math.isnan(v):
            out.append(PACK_NULL)
            continue
        level = round((min(high, max(low, v)) - low) / (high - low) * PACK_LEVELS)
        out.append(PACK_ALPHABET[level >> 6] + PACK_ALPHABET[level & 63])
    return "".join(out)


def unpack(text: str, low: float = 0.0, high: float = 1.0) -> list[float | None]:
    """The inverse of :func:`pack` (tests; the page has its own in JavaScript)."""
    out: list[float | None] = []
    for i in range(0, len(text), 2):
        pair = text[i : i + 2]
        if pair == PACK_NULL:
            out.append(None)
            continue
        level = PACK_ALPHABET.index(pair[0]) * 64 + PACK_ALPHABET.index(pair[1])
        out.append(low + level / PACK_LEVELS * (high - low))
    return out


def to_json(document: Mapping[str, object]) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<`` at all (coin names
    come from the API), so no ``</script>`` or ``<!--`` can end the block early."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Held:
    """Everything the page holds, as read from the warehouse."""

    windows: list[str]
    default_window: str
    default_coin: str
    coins: list[str]
    snapshot_id: str
    as_of: dt.datetime
    is_latest: bool
    days: list[dt.date]
    snapshot_boards: Mapping[str, Board]  # the report's own snapshot, per window
    day_cells: Mapping[tuple[dt.date, str, str, int], DayCell]
    day_oi: Mapping[tuple[dt.date, str], float]
    divergence: Mapping[tuple[dt.date, str, str], DayDivergence]
    history: HistoryGrid
    market: Mapping[tuple[dt.date, str], MarketRow] | None
    flow_price: Mapping[tuple[dt.date, str, str, int], FlowPrice] | None
    notes: Mapping[str, str]
    # (day, window) -> (the close's source, the previous close's); empty: not known (an older
    # warehouse), nothing is marked
    day_sources: Mapping[tuple[dt.date, str], tuple[str | None, str | None]] = field(
        default_factory=dict
    )
    snapshot_source: str | None = data.LIVE  # the report's own snapshot's


def _day_views(held: Held) -> list[dict[str, object]]:
    views: list[dict[str, object]] = []
    snapshot_day = held.as_of.date()
    for day in held.days:
        previous = day - dt.timedelta(days=1)
        if day == snapshot_day:
            label = f"{held.as_of:%Y-%m-%d %H:%M} UTC" + (" (newest)" if held.is_latest else "")
            board = f"snapshot {held.as_of:%Y-%m-%d %H:%M} UTC"
            change = (
                f"close of {day:%Y-%m-%d}{' so far' if held.is_latest else ''} "
                f"vs close of {previous:%Y-%m-%d}"
            )
        else:
            label = f"close of {day:%Y-%m-%d}"
            board = label
            change = f"close of {day:%Y-%m-%d} vs close of {previous:%Y-%m-%d}"
        views.append({"day": f"{day:%Y-%m-%d}", "label": label, "board": board, "change": change})
    return views


def _board_day(held: Held, window: str, day: dt.date) -> dict[str, str]:
    """One window's board on one day: the cells' columns as comma-separated text."""
    b, v, n, c, u, s, nc, f, p = [], [], [], [], [], [], [], [], []
    snapshot = held.snapshot_boards.get(window) if day == held.as_of.date() else None
    for coin in held.coins:
        for seg in LADDER_ORDER:
            mart = held.day_cells.get((day, window, coin, seg))
            if snapshot is not None:
                # The report's own snapshot heads the board on its day; the day-over-day
                # change stays the mart's (the day's close so far vs the previous close).
                cell = snapshot.cell(coin, seg)
                bias = None if cell is None else cell.bias
                total = None if cell is None else cell.total_usd
                positions = None if cell is None else cell.positions
            else:
                bias = None if mart is None else mart.bias
                total = None if mart is None else mart.total_usd
                positions = None if mart is None else mart.positions
            b.append(fixed(bias, 10_000))
            v.append(compact(total))
            n.append("" if positions is None else str(positions))
            c.append(fixed(None if mart is None else mart.change_pp, 10))
            u.append(compact(None if mart is None else mart.usd_change))
            s.append("-" if mart is None else STATUS_CODES[mart.status])
            if held.flow_price is not None:
                split = held.flow_price.get((day, window, coin, seg))
                nc.append(compact(None if split is None else split.net_usd_change))
                f.append(compact(None if split is None else split.net_flow_usd))
                p.append(compact(None if split is None else split.net_price_effect_usd))
    if snapshot is not None:
        oi = [snapshot.open_interest.get(coin) for coin in held.coins]
    else:
        oi = [held.day_oi.get((day, coin)) for coin in held.coins]
    out = {
        "oi": csv(compact(x) for x in oi),
        "b": csv(b),
        "v": csv(v),
        "n": csv(n),
        "c": csv(c),
        "u": csv(u),
        "s": "".join(s),
    }
    if held.flow_price is not None:
        out["nc"] = csv(nc)
        out["f"] = csv(f)
        out["p"] = csv(p)
    # Where D's close and D-1's came from (the day-over-day board); an older warehouse that
    # does not say is taken as live: nothing marked.
    unknown = (None, None) if held.day_sources else (data.LIVE, data.LIVE)
    close, previous = held.day_sources.get((day, window), unknown)
    out["cs"] = source_code(close)
    out["ps"] = source_code(previous)
    if snapshot is not None:
        out["bs"] = source_code(held.snapshot_source)  # the bias board's own snapshot
    return out


def _divergence_day(held: Held, window: str, day: dt.date) -> dict[str, str]:
    rows = [held.divergence.get((day, window, coin)) for coin in held.coins]
    return {
        "sb": csv(fixed(r and r.smart_bias, 10_000) for r in rows),
        "rb": csv(fixed(r and r.retail_bias, 10_000) for r in rows),
        "sv": csv(compact(r and r.smart_usd) for r in rows),
        "rv": csv(compact(r and r.retail_usd) for r in rows),
        "sp": csv(fixed(r and r.spread_pp, 10) for r in rows),
        "dc": csv(fixed(r and r.spread_change_pp, 10) for r in rows),
    }


def _market_day(held: Held, day: dt.date) -> dict[str, str]:
    assert held.market is not None
    rows = [held.market.get((day, coin)) for coin in held.coins]
    return {
        "px": csv(compact(r and r.mark_price, 6) for r in rows),
        "oi": csv(compact(r and r.open_interest_usd) for r in rows),
        "fr": csv(compact(r and r.funding_rate_hourly) for r in rows),
    }


def _history(held: Held) -> dict[str, object]:
    grid = held.history
    series: dict[str, dict[str, str]] = {}
    closes: dict[str, dict[str, list[list[float | None]]]] = {}
    empty = [None] * grid.points
    for window in held.windows:
        series[window] = {}
        closes[window] = {}
        for coin in held.coins:
            by_segment = grid.bias.get((window, coin), {})
            packed = "".join(pack(by_segment.get(s, empty)) for s in LADDER_ORDER)
            spread = grid.spread_pp.get((window, coin), empty)
            series[window][coin] = packed + pack(spread, -SPREAD_RANGE_PP, SPREAD_RANGE_PP)
            closes[window][coin] = [
                [i, None if pp is None else round(pp, 2)]
                for i, pp in grid.closes.get((window, coin), [])
            ]
    return {
        "start": f"{grid.start:%Y-%m-%dT%H:%M:%S}Z",
        "bucket": grid.bucket_minutes,
        "points": grid.points,
        "first": None if grid.first_at is None else f"{grid.first_at:%Y-%m-%d %H:%M}",
        "last": None if grid.last_at is None else f"{grid.last_at:%Y-%m-%d %H:%M}",
        "series": series,
        "closes": closes,
        "price": (
            {coin: csv(compact(x, 6) for x in grid.price.get(coin, [])) for coin in held.coins}
            if held.market is not None
            else None
        ),
        "bands": {
            w: {c: b for c in held.coins if (b := bands(grid.sources.get((w, c), [])))}
            for w in held.windows
        },
    }


def document(held: Held) -> dict[str, object]:
    """The page's JSON document (see the module docstring for the encodings)."""
    return {
        "snapshot": {
            "id": held.snapshot_id,
            "when": f"{held.as_of:%Y-%m-%d %H:%M} UTC",
            "latest": held.is_latest,
        },
        "windows": held.windows,
        "window": held.default_window,
        "coin": held.default_coin,
        "coins": held.coins,
        "cohorts": [[c.segment_id, c.name, c.ladder] for c in COHORTS],
        "ladders": LADDER_TITLES,
        "smart": list(SMART_SEGMENTS),
        "retail": list(RETAIL_SEGMENTS),
        "ramp": list(SHORT_TO_LONG),
        "absent": ABSENT_COLOUR,
        "size": {"floor": SIZE_FLOOR_USD, "full": SIZE_FULL_USD, "min": SIZE_MIN_WEIGHT},
        "change": {"full": CHANGE_FULL_PP, "ticks": list(CHANGE_TICKS_PP)},
        "pack": {"alphabet": PACK_ALPHABET, "levels": PACK_LEVELS, "spread": SPREAD_RANGE_PP},
        "days": _day_views(held),
        "boards": {w: [_board_day(held, w, d) for d in held.days] for w in held.windows},
        "divergence": {w: [_divergence_day(held, w, d) for d in held.days] for w in held.windows},
        "market": None if held.market is None else [_market_day(held, d) for d in held.days],
        "flow": held.flow_price is not None,
        "backfill": BACKFILL_LABELS,
        "backfill_notes": BACKFILL_NOTES,
        "history": _history(held),
        "notes": dict(held.notes),
    }


MARKET_COLUMNS = {"snapshot_id", "snapshot_at", "coin", "mark_price", "open_interest_usd"}
MARKET_COLUMNS |= {"funding_rate_hourly", "has_market"}
FLOW_COLUMNS = {"snapshot_date", "window", "coin", "segment_id", "net_usd_change"}
FLOW_COLUMNS |= {"net_flow_usd", "net_price_effect_usd"}
MARKET_NOTE = (
    f"No market data in this warehouse (marts.{data.MARKET} is not there or holds no price "
    "yet): no price line, open interest or funding."
)
FLOW_NOTE = (
    f"No flow/price split in this warehouse (marts.{data.FLOW_PRICE} is not there or holds "
    "no split yet): notional changes are shown whole."
)
