"""The market's lake pieces without HTTP: which dexes a snapshot needs, safe file names, a
recorded gap's rows, and price-history day files that merge idempotently."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from flows.lake.market_archive import dex_file_stem
from flows.lake.price_lake import day_path, land_rows
from flows.lake.tables import MARKET_CONTEXTS, MARKET_FETCHES
from flows.market import NOT_CAPTURED, market_rows, needed_dexes, one_line

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_the_main_dex_and_every_builder_dex_with_a_coin_are_needed() -> None:
    assert needed_dexes(["BTC", "xyz:GOLD", "km:US500", "xyz:TSLA"]) == ["", "km", "xyz"]
    assert needed_dexes([]) == [""]


def test_dex_names_from_outside_never_become_paths_as_they_are() -> None:
    assert dex_file_stem("") == "dex-main"
    assert dex_file_stem("xyz") == "dex-xyz"
    for odd in ("../etc", "a/b", "main", "x" * 40, "ü"):
        stem = dex_file_stem(odd)
        assert stem.startswith("dex-")
        assert stem[4:].isalnum()
        assert stem != "dex-main"


def test_a_market_never_captured_is_a_gap_per_dex_and_no_price() -> None:
    tables = market_rows("S1", AT, ["", "xyz"], None, lambda r: b"")
    assert tables["market_fetches"].schema == MARKET_FETCHES
    assert tables["market_contexts"].schema == MARKET_CONTEXTS
    rows = tables["market_fetches"].to_pylist()
    assert [(r["dex"], r["status"], r["url"]) for r in rows] == [
        ("", "not_captured", ""),
        ("xyz", "not_captured", ""),
    ]
    assert rows[0]["error"] == NOT_CAPTURED
    assert tables["market_contexts"].num_rows == 0


def test_errors_are_one_line() -> None:
    assert one_line(ValueError("first\nsecond   third")) == "ValueError: first second third"


def candle(coin: str, hour: int, fetched_hour: int) -> dict[str, object]:
    open_time = datetime(2026, 11, 1, hour)
    return {
        "coin": coin, "candle_interval": "1h", "open_time": open_time,
        "close_time": open_time.replace(minute=59, second=59, microsecond=999000),
        "open_px": 1.0, "high_px": 2.0, "low_px": 0.5, "close_px": 1.5, "volume": 10.0,
        "trades": 3, "fetched_at": datetime(2026, 11, 1, fetched_hour),
    }  # fmt: skip


def test_day_files_merge_as_a_set_in_a_fixed_order(tmp_path: Path) -> None:
    first = [candle("ETH", 3, 5), candle("BTC", 3, 5), candle("BTC", 22, 23)]
    assert land_rows(tmp_path, {"candles": first}) == {"candles": 3}
    path = day_path(tmp_path, "candles", "2026-11-01")
    before = path.stat().st_mtime_ns
    assert land_rows(tmp_path, {"candles": first[:2]}) == {"candles": 0}  # again: no change
    assert path.stat().st_mtime_ns == before
    land_rows(tmp_path, {"candles": [candle("BTC", 4, 6), candle("BTC", 3, 9)]})
    rows = pq.read_table(path).to_pylist()
    assert [(r["coin"], r["open_time"].hour, r["fetched_at"].hour) for r in rows] == [
        ("BTC", 3, 5), ("BTC", 3, 9), ("BTC", 4, 6), ("BTC", 22, 23), ("ETH", 3, 5),
    ]  # fmt: skip
    assert [p.name for p in (tmp_path / "candles").rglob("*.parquet")] == ["day.parquet"]
