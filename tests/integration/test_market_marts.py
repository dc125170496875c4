"""The market marts on real lake files: price beside positioning, flow told apart from price.

A small lake written as the market's landing writes it (flows/lake/tables.py): three days of
snapshots with a gap day, a builder dex whose market fetch failed once, and hourly candles
that stop before the last snapshot's future is known. Two scheduled builds, each published,
and the marts read from analytics.duckdb as an analyst would.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from flows.lake.archive import snapshot_id_for
from flows.lake.parquet import lake_path, write_table
from flows.lake.tables import TABLES
from flows.publish import publish
from flows.settings import Settings, get_settings
from flows.transform import build
from flows.warehouse import load_lake

pytestmark = pytest.mark.integration

MARKET_MARTS = (
    "fct_market_snapshots",
    "cohort_flow_price_daily",
    "fct_forward_returns",
    "fct_price_candles_hourly",
)
START = datetime(2026, 11, 1)


def price(coin: str, at: datetime) -> float:
    """A price path: BTC 100 rising 1 per hour, GOLD 10 rising 0.5 per hour."""
    hours = (at - START).total_seconds() / 3600
    return 100.0 + hours if coin == "BTC" else 10.0 + hours / 2


def put(settings: Settings, table: str, key: str, rows: list[dict[str, object]]) -> None:
    schema = TABLES[table]
    write_table(lake_path(settings.lake_dir, table, key), pa.Table.from_pylist(rows, schema))


def land_snapshot(settings: Settings, at: datetime, *, gold_market: bool = True) -> str:
    """One snapshot: window all, BTC and xyz:GOLD, two cohorts each; its market."""
    sid = snapshot_id_for(at)
    keys = {"snapshot_id": sid, "last_update": at, "window": "all"}
    fetched = at + timedelta(seconds=20)
    counts = {"count": 2, "count_long": 1, "count_short": 1}
    cohorts, coins, contexts = [], [], []
    for coin in ("BTC", "xyz:GOLD"):
        mark = price(coin, at)
        # Shrimp (16) holds 2 coins long and 1 short, growing by 1 coin long a day; Smart
        # Money (9) the same in the PnL ladder: each ladder holds every position once.
        long_coins = 2.0 + (at - START).days
        for segment_id in (16, 9):
            cohorts.append(
                {**keys, "coin": coin, "segment_id": segment_id,
                 "total_value": (long_coins + 1) * mark, "total_long_value": long_coins * mark,
                 "total_short_value": mark, **counts,
                 "bias": round(long_coins / (long_coins + 1), 3), "is_known_segment": True}
            )  # fmt: skip
        side = (long_coins + 1) * mark / 2  # window all: every long has a short
        coins.append(
            {**keys, "coin": coin, "total_value": 2 * side, "total_long_value": side,
             "total_short_value": side, **counts, "segment_count": 2}
        )  # fmt: skip
        if coin == "BTC" or gold_market:
            contexts.append(
                {"snapshot_id": sid, "last_update": at, "dex": "" if coin == "BTC" else "xyz",
                 "coin": coin, "fetched_at": fetched, "mark_px": mark, "mid_px": mark,
                 "oracle_px": mark, "open_interest": (long_coins + 1) / 2, "funding": 1e-5,
                 "premium": 0.0, "day_ntl_vlm": 1e6, "prev_day_px": mark, "sz_decimals": 3,
                 "max_leverage": 20, "is_delisted": False}
            )  # fmt: skip
    fetches = [
        {"snapshot_id": sid, "last_update": at, "dex": dex, "status": status,
         "fetched_at": fetched if status == "ok" else None, "url": "https://hl/info",
         "http_status": 200 if status == "ok" else None, "body_bytes": None,
         "body_sha256": None, "coin_count": None,
         "error": None if status == "ok" else "timed out"}
        for dex, status in (("", "ok"), ("xyz", "ok" if gold_market else "failed"))
    ]  # fmt: skip
    put(settings, "market_fetches", sid, fetches)
    put(settings, "market_contexts", sid, contexts)
    put(settings, "heatmap_cohorts", sid, cohorts)
    put(settings, "heatmap_coins", sid, coins)
    put(
        settings,
        "snapshots",
        sid,
        [{**keys, "next_update": None, "fetched_at": fetched, "url": "http://x/heatmap",
          "http_status": 200, "body_bytes": 1, "body_sha256": "sha", "coin_count": 2}],
    )  # fmt: skip
    return sid


def land_candles(settings: Settings, until: datetime, coin: str = "BTC") -> None:
    """A coin's hourly candles from START to `until` (open times), each fetched once closed."""
    rows, at = [], START
    while at <= until:
        rows.append(
            {"coin": coin, "candle_interval": "1h", "open_time": at,
             "close_time": at + timedelta(hours=1, milliseconds=-1), "open_px": price(coin, at),
             "high_px": price(coin, at + timedelta(hours=1)), "low_px": price(coin, at),
             "close_px": price(coin, at + timedelta(hours=1)), "volume": 1.0, "trades": 1,
             "fetched_at": at + timedelta(hours=1, minutes=2)}
        )  # fmt: skip
        at += timedelta(hours=1)
    for day in sorted({r["open_time"].date() for r in rows}):  # type: ignore[attr-defined]
        key = f"{snapshot_id_for(datetime(day.year, day.month, day.day))}-{coin.replace(':', '_')}"
        put(settings, "candles", key, [r for r in rows if r["open_time"].date() == day])  # type: ignore[attr-defined]


def build_and_publish(settings: Settings) -> None:
    load_lake(settings)
    outcome = build(settings)
    assert outcome.success, [f"{f['name']}: {f['message']}" for f in outcome.failures]
    assert not outcome.warnings, [f"{w['name']}: {w['message']}" for w in outcome.warnings]
    publish(settings)


def rows(settings: Settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_market_marts_price_positioning_and_split_flow_from_price(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data")
    land_snapshot(settings, datetime(2026, 11, 1, 23, 0))
    land_snapshot(settings, datetime(2026, 11, 2, 12, 0))
    land_candles(settings, until=datetime(2026, 11, 2, 22, 0))
    build_and_publish(settings)

    # A later close for Nov 2, whose xyz market failed; then Nov 4 after a gap day.
    late = land_snapshot(settings, datetime(2026, 11, 2, 22, 30), gold_market=False)
    land_snapshot(settings, datetime(2026, 11, 4, 10, 0))
    build_and_publish(settings)

    published = dict(
        rows(
            settings,
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'marts'",
        )
    )
    assert {m: published.get(m) for m in MARKET_MARTS} == dict.fromkeys(MARKET_MARTS, "VIEW")

    # The failed dex: no market, NULL prices, never the earlier snapshot's.
    gold = rows(
        settings,
        "SELECT has_market, market_fetch_status, mark_price, coverage_ratio "
        f"FROM marts.fct_market_snapshots WHERE snapshot_id = '{late}' AND coin = 'xyz:GOLD'",
    )
    assert gold == [(False, "failed", None, None)]
    # Coverage: one side of the size ladder (Shrimp alone here) over open interest at mark.
    for (coverage,) in rows(
        settings, "SELECT coverage_ratio FROM marts.fct_market_snapshots WHERE has_market"
    ):
        assert math.isclose(coverage, 1.0, rel_tol=1e-9)

    # The split, day by day, window all, Shrimp: Nov 2 against Nov 1 (its later close, 22:30);
    # Nov 4 follows a gap.
    split = rows(
        settings,
        "SELECT snapshot_date::varchar, coin, has_previous_day, has_prices, long_usd_change, "
        "long_flow_usd, long_price_effect_usd, net_flow_usd + net_price_effect_usd - "
        "net_usd_change FROM marts.cohort_flow_price_daily WHERE segment_id = 16 ORDER BY ALL",
    )
    by_key = {(r[0], r[1]): r[2:] for r in split}
    assert set(by_key) == {
        (day, coin) for day in ("2026-11-01", "2026-11-02", "2026-11-04")
        for coin in ("BTC", "xyz:GOLD")
    }  # fmt: skip
    # BTC: 2 coins long at 123 (Nov 1 23:00) -> 3 coins long at 146.5 (Nov 2 22:30).
    has_previous, has_prices, change, flow, effect, net_error = by_key[("2026-11-02", "BTC")]
    assert (has_previous, has_prices) == (True, True)
    assert flow == pytest.approx(1 * 123.0)  # one more coin, at Nov 1's price
    assert effect == pytest.approx(3 * (146.5 - 123.0))  # three coins, repriced
    assert change == pytest.approx(3 * 146.5 - 2 * 123.0)
    assert abs(net_error) < 1e-9
    # GOLD's Nov 2 close had no market: the change is known, the split is not.
    gold_change = 3 * (10 + 46.5 / 2) - 2 * (10 + 23 / 2)
    assert by_key[("2026-11-02", "xyz:GOLD")][:4] == (True, False, pytest.approx(gold_change), None)
    for coin in ("BTC", "xyz:GOLD"):
        assert by_key[("2026-11-04", coin)] == (False, False, None, None, None, None)

    # Forward returns: entered at the first hourly close at or after the snapshot; NULL once
    # the candles run out.
    returns = rows(
        settings,
        "SELECT snapshot_at::varchar, entry_price, return_1h, return_4h, return_24h "
        "FROM marts.fct_forward_returns WHERE coin = 'BTC' ORDER BY snapshot_at",
    )
    assert [r[0] for r in returns] == [
        "2026-11-01 23:00:00", "2026-11-02 12:00:00", "2026-11-02 22:30:00", "2026-11-04 10:00:00"
    ]  # fmt: skip
    expected = [
        (123.0, 1 / 123, 4 / 123, 24 / 123),  # 24h: the candle that closed Nov 2 23:00
        (136.0, 1 / 136, 4 / 136, None),  # 24h not known yet
        (147.0, None, None, None),  # enters at 23:00, the last close known; 1h not yet
        (None, None, None, None),  # no candle at all
    ]
    for got, want in zip(returns, expected, strict=True):
        assert got[1:] == tuple(None if w is None else pytest.approx(w) for w in want), got
    assert rows(
        settings, "SELECT count(*) FROM marts.fct_forward_returns WHERE coin = 'xyz:GOLD' "
        "AND entry_price IS NULL"
    ) == [(4,)]  # fmt: skip

    # GOLD's candles land later, with no new snapshot: the next build reprices Nov 2 from the
    # close of the hour before its 22:30 close (the 21:00 candle's, at 22:00), so the split
    # appears without a full rebuild; Nov 1 (its close had a mark) keeps its file.
    files_before = split_files(settings)
    land_candles(settings, until=datetime(2026, 11, 2, 21, 0), coin="xyz:GOLD")
    build_and_publish(settings)
    gold = rows(
        settings,
        "SELECT has_prices, price_source, price, previous_price_source, long_usd_change, "
        "long_flow_usd + long_price_effect_usd FROM marts.cohort_flow_price_daily "
        "WHERE segment_id = 16 AND coin = 'xyz:GOLD' AND snapshot_date = '2026-11-02'",
    )
    assert gold == [
        (True, "candle", pytest.approx(price("xyz:GOLD", datetime(2026, 11, 2, 22, 0))), "mark",
         pytest.approx(gold_change), pytest.approx(gold_change))
    ]  # fmt: skip
    files_after = split_files(settings)
    assert files_after["2026-11-01"] == files_before["2026-11-01"]
    assert files_after["2026-11-02"] != files_before["2026-11-02"]


def split_files(settings: Settings) -> dict[str, str]:
    """Day -> the Parquet file the published cohort_flow_price_daily view reads for it."""
    (sql,) = rows(
        settings,
        "SELECT sql FROM duckdb_views() "
        "WHERE schema_name = 'marts' AND view_name = 'cohort_flow_price_daily'",
    )[0]
    paths = [part for part in sql.split("'")[1::2] if part.endswith(".parquet")]
    return {p.split("snapshot_date=")[1][:10]: p for p in paths if "snapshot_date=" in p}
