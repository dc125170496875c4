"""The info API's three answers, parsed and checked: decimal strings parsed on purpose.

Hyperliquid sends every number as a decimal string (``"97123.5"``). A parser here reads a
number only from such a string, matched against a plain decimal pattern and then converted:
a JSON number where a string is due, ``"NaN"``, ``"1e400"``, an empty string or a boolean is
an error, never silently coerced. Each function returns plain rows for the lake or raises
:class:`~flows.hyperliquid.errors.InfoPayloadError` listing *every* problem with a JSON path.

- ``metaAndAssetCtxs``: ``[meta, ctxs]``, ``ctxs`` in ``meta.universe``'s order. Coins come
  back named as HyperTracker names them: a builder dex's ``GOLD`` (or ``xyz:GOLD``) is
  ``xyz:GOLD``.
- ``candleSnapshot``: ``[{"t", "T", "s", "i", "o", "c", "h", "l", "v", "n"}, ...]``.
- ``fundingHistory``: ``[{"coin", "fundingRate", "premium", "time"}, ...]``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from flows.hyperliquid.errors import InfoPayloadError

_DECIMAL = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
# Hyperliquid caps funding at 4% an hour; anything beyond is not a rate.
MAX_ABS_FUNDING = 0.04
# A context's decimals: (field, required). Required ones must be present and not null.
CTX_FIELDS = (
    ("markPx", True),
    ("midPx", False),
    ("oraclePx", True),
    ("openInterest", True),
    ("funding", True),
    ("premium", False),
    ("dayNtlVlm", False),
    ("prevDayPx", False),
)
CTX_COLUMNS = {
    "markPx": "mark_px", "midPx": "mid_px", "oraclePx": "oracle_px",
    "openInterest": "open_interest", "funding": "funding", "premium": "premium",
    "dayNtlVlm": "day_ntl_vlm", "prevDayPx": "prev_day_px",
}  # fmt: skip


class _Problems(list[str]):
    """Reasons collected while reading one body."""

    def decimal(self, row: Any, key: str, path: str, *, required: bool = True) -> float | None:
        if not isinstance(row, dict) or key not in row or row[key] is None:
            if required:
                self.append(f"{path}.{key}: required decimal string is missing")
            return None
        value = row[key]
        if not isinstance(value, str):
            self.append(f"{path}.{key}: expected a decimal string, got {type(value).__name__}")
            return None
        if not _DECIMAL.fullmatch(value):
            self.append(f"{path}.{key}: {value[:40]!r} is not a decimal")
            return None
        number = float(value)
        if not math.isfinite(number):
            self.append(f"{path}.{key}: {value[:40]!r} is out of range")
            return None
        return number

    def integer(self, row: Any, key: str, path: str, *, required: bool = True) -> int | None:
        value = row.get(key) if isinstance(row, dict) else None
        if value is None:
            if required:
                self.append(f"{path}.{key}: required integer is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.append(f"{path}.{key}: expected an integer, got {type(value).__name__}")
            return None
        return value

    def text(self, row: Any, key: str, path: str) -> str | None:
        value = row.get(key) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value:
            self.append(f"{path}.{key}: expected a non-empty string")
            return None
        return value

    def raise_if_any(self, what: str) -> None:
        if self:
            raise InfoPayloadError(what, list(self))


def _load(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InfoPayloadError(what, [f"$: not valid JSON ({exc})"]) from None


def coin_name(dex: str, name: str) -> str:
    """A universe name as HyperTracker writes it: builder-dex coins carry ``<dex>:``."""
    return name if not dex or name.startswith(f"{dex}:") else f"{dex}:{name}"


def parse_meta_and_asset_ctxs(body: bytes, dex: str) -> list[dict[str, Any]]:
    """The rows of one dex's ``metaAndAssetCtxs``: one per universe entry, in its order."""
    what = f"metaAndAssetCtxs dex={dex!r}"
    doc = _load(body, what)
    if not (isinstance(doc, list) and len(doc) == 2):
        raise InfoPayloadError(what, ["$: expected [meta, assetCtxs], a list of two"])
    meta, ctxs = doc
    problems = _Problems()
    universe = meta.get("universe") if isinstance(meta, dict) else None
    if not isinstance(universe, list):
        problems.append("[0].universe: expected a list")
    if not isinstance(ctxs, list):
        problems.append("[1]: expected a list of asset contexts")
    problems.raise_if_any(what)
    assert isinstance(universe, list)
    assert isinstance(ctxs, list)
    if len(universe) != len(ctxs):
        problems.append(f"[1]: {len(ctxs)} contexts for {len(universe)} universe entries")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, (asset, ctx) in enumerate(zip(universe, ctxs, strict=False)):
        upath, cpath = f"[0].universe[{i}]", f"[1][{i}]"
        name = problems.text(asset, "name", upath)
        if name is not None:
            if ":" in name and not (dex and name.startswith(f"{dex}:")):
                problems.append(f"{upath}.name: {name!r} does not belong to dex {dex!r}")
            name = coin_name(dex, name)
            if name in seen:
                problems.append(f"{upath}.name: {name!r} appears twice")
            seen.add(name)
        sz = problems.integer(asset, "szDecimals", upath)
        leverage = problems.integer(asset, "maxLeverage", upath, required=False)
        delisted = asset.get("isDelisted", False) if isinstance(asset, dict) else False
        if not isinstance(delisted, bool):
            problems.append(f"{upath}.isDelisted: expected true or false")
        if not isinstance(ctx, dict):
            problems.append(f"{cpath}: expected an object")
            continue
        values = {
            CTX_COLUMNS[key]: problems.decimal(ctx, key, cpath, required=required)
            for key, required in CTX_FIELDS
        }
        for key in ("mark_px", "oracle_px", "mid_px"):
            if values[key] is not None and values[key] <= 0 and not delisted:
                problems.append(f"{cpath}: {key} {values[key]} is not a price")
        for key in ("open_interest", "day_ntl_vlm"):
            if values[key] is not None and values[key] < 0:
                problems.append(f"{cpath}: {key} {values[key]} is negative")
        if values["funding"] is not None and abs(values["funding"]) > MAX_ABS_FUNDING:
            problems.append(f"{cpath}.funding: {values['funding']} is beyond Hyperliquid's cap")
        if sz is not None and not 0 <= sz <= 10:
            problems.append(f"{upath}.szDecimals: {sz} is out of range")
        if leverage is not None and not 1 <= leverage <= 1000:
            problems.append(f"{upath}.maxLeverage: {leverage} is out of range")
        rows.append(
            {"coin": name, **values, "sz_decimals": sz, "max_leverage": leverage,
             "is_delisted": bool(delisted)}
        )  # fmt: skip
    problems.raise_if_any(what)
    return rows


def parse_candles(body: bytes, coin: str, interval: str) -> list[dict[str, Any]]:
    """The candles of one ``candleSnapshot`` answer, times in epoch ms, oldest first."""
    what = f"candleSnapshot coin={coin} interval={interval}"
    doc = _load(body, what)
    if not isinstance(doc, list):
        raise InfoPayloadError(what, ["$: expected a list of candles"])
    problems = _Problems()
    rows: list[dict[str, Any]] = []
    previous = None
    for i, c in enumerate(doc):
        path = f"[{i}]"
        if not isinstance(c, dict):
            problems.append(f"{path}: expected an object")
            continue
        t, close_t = problems.integer(c, "t", path), problems.integer(c, "T", path)
        n = problems.integer(c, "n", path)
        o, h = problems.decimal(c, "o", path), problems.decimal(c, "h", path)
        low, cl = problems.decimal(c, "l", path), problems.decimal(c, "c", path)
        v = problems.decimal(c, "v", path)
        if c.get("s") != coin:
            problems.append(f"{path}.s: {c.get('s')!r} is not the coin asked for ({coin!r})")
        if c.get("i") != interval:
            problems.append(f"{path}.i: {c.get('i')!r} is not the interval asked for")
        if t is not None and close_t is not None and close_t <= t:
            problems.append(f"{path}: close time T {close_t} is not after open time t {t}")
        if t is not None and previous is not None and t <= previous:
            problems.append(f"{path}.t: {t} does not follow the previous candle's {previous}")
        previous = t if t is not None else previous
        if None not in (o, h, low, cl) and not _is_candle(o, h, low, cl):
            problems.append(f"{path}: o {o} h {h} l {low} c {cl} is not a candle")
        if v is not None and v < 0:
            problems.append(f"{path}.v: {v} is negative")
        if n is not None and n < 0:
            problems.append(f"{path}.n: {n} is negative")
        rows.append(
            {"coin": coin, "candle_interval": interval, "open_time": t, "close_time": close_t,
             "open_px": o, "high_px": h, "low_px": low, "close_px": cl, "volume": v,
             "trades": n}
        )  # fmt: skip
    problems.raise_if_any(what)
    return rows


def parse_funding(body: bytes, coin: str) -> list[dict[str, Any]]:
    """The rows of one ``fundingHistory`` answer (hourly rates), times in epoch ms."""
    what = f"fundingHistory coin={coin}"
    doc = _load(body, what)
    if not isinstance(doc, list):
        raise InfoPayloadError(what, ["$: expected a list of funding rows"])
    problems = _Problems()
    rows: list[dict[str, Any]] = []
    previous = None
    for i, r in enumerate(doc):
        path = f"[{i}]"
        if not isinstance(r, dict):
            problems.append(f"{path}: expected an object")
            continue
        if r.get("coin") != coin:
            problems.append(f"{path}.coin: {r.get('coin')!r} is not the coin asked for")
        time_ms = problems.integer(r, "time", path)
        rate = problems.decimal(r, "fundingRate", path)
        premium = problems.decimal(r, "premium", path, required=False)
        if rate is not None and abs(rate) > MAX_ABS_FUNDING:
            problems.append(f"{path}.fundingRate: {rate} is beyond Hyperliquid's cap")
        if time_ms is not None and previous is not None and time_ms <= previous:
            problems.append(f"{path}.time: {time_ms} does not follow the previous row's")
        previous = time_ms if time_ms is not None else previous
        rows.append({"coin": coin, "time": time_ms, "funding_rate": rate, "premium": premium})
    problems.raise_if_any(what)
    return rows


def _is_candle(o: Any, h: Any, low: Any, c: Any) -> bool:
    return bool(0 < low <= min(o, c) and h >= max(o, c))
