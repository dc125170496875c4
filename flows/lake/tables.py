"""The Parquet lake's tables: their names, columns and types, declared once.

The lake is a faithful, typed copy of the archive: API field names in snake_case, numbers
as numbers, nothing derived but the keys that every row needs (snapshot id, state time).
Renaming for analysts happens in dbt staging. All timestamps are UTC, stored without a
zone so that a reader's local time zone can never shift a snapshot onto another day.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("ms")

SNAPSHOT_KEYS = [
    pa.field("snapshot_id", pa.string(), nullable=False),
    pa.field("last_update", TS, nullable=False),
    pa.field("window", pa.string(), nullable=False),
]

POSITION_MEASURES = [
    pa.field("total_value", pa.float64(), nullable=False),
    pa.field("total_long_value", pa.float64(), nullable=False),
    pa.field("total_short_value", pa.float64(), nullable=False),
    pa.field("count", pa.int64(), nullable=False),
    pa.field("count_long", pa.int64(), nullable=False),
    pa.field("count_short", pa.int64(), nullable=False),
]

# One row per (snapshot, window): what was fetched, from where, and how it looked on the wire.
SNAPSHOTS = pa.schema(
    [
        *SNAPSHOT_KEYS,
        pa.field("next_update", TS, nullable=True),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("http_status", pa.int16(), nullable=False),
        pa.field("body_bytes", pa.int64(), nullable=False),
        pa.field("body_sha256", pa.string(), nullable=False),
        pa.field("coin_count", pa.int32(), nullable=False),
    ]
)

# One row per (snapshot, window, coin): the coin object without its segments.
HEATMAP_COINS = pa.schema(
    [
        *SNAPSHOT_KEYS,
        pa.field("coin", pa.string(), nullable=False),
        *POSITION_MEASURES,
        pa.field("segment_count", pa.int16(), nullable=False),
    ]
)

# One row per (snapshot, window, coin, segment) the API returned. A cohort with no position
# in a coin is absent here, as in the API; dbt's intermediate layer makes the zero explicit.
HEATMAP_COHORTS = pa.schema(
    [
        *SNAPSHOT_KEYS,
        pa.field("coin", pa.string(), nullable=False),
        pa.field("segment_id", pa.int16(), nullable=False),
        *POSITION_MEASURES,
        pa.field("bias", pa.float64(), nullable=False),
        pa.field("is_known_segment", pa.bool_(), nullable=False),
    ]
)

# One row per cohort per /segments fetch: the ladder as the API described it that day.
SEGMENTS = pa.schema(
    [
        pa.field("fetched_at", TS, nullable=False),
        pa.field("segment_id", pa.int16(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=True),
        pa.field("emoji", pa.string(), nullable=True),
        pa.field("criteria_json", pa.string(), nullable=True),
    ]
)

# Hyperliquid's market (the info API), captured with each snapshot. Prices and sizes are the
# API's decimal strings parsed on purpose into float64; NULL where the API sent none.
#
# One row per (snapshot, dex) the snapshot needed: what was fetched, or why nothing was
# (status 'ok', 'failed', 'quarantined', or 'not_captured': the run stopped between archiving
# the snapshot and asking, or the snapshot was landed before the market was captured; its
# url is ''). A snapshot with no 'ok' row for a dex has no market for that dex's coins: a
# recorded gap, never a made-up price.
MARKET_FETCHES = pa.schema(
    [
        pa.field("snapshot_id", pa.string(), nullable=False),
        pa.field("last_update", TS, nullable=False),
        pa.field("dex", pa.string(), nullable=False),  # '' is the main dex, as in the API
        pa.field("status", pa.string(), nullable=False),
        pa.field("fetched_at", TS, nullable=True),
        pa.field("url", pa.string(), nullable=False),
        pa.field("http_status", pa.int16(), nullable=True),
        pa.field("body_bytes", pa.int64(), nullable=True),
        pa.field("body_sha256", pa.string(), nullable=True),
        pa.field("coin_count", pa.int32(), nullable=True),
        pa.field("error", pa.string(), nullable=True),
    ]
)

# One row per (snapshot, coin) of a fetched dex: metaAndAssetCtxs' universe entry and context.
# `coin` is named as HyperTracker names it (`BTC`, `xyz:GOLD`).
MARKET_CONTEXTS = pa.schema(
    [
        pa.field("snapshot_id", pa.string(), nullable=False),
        pa.field("last_update", TS, nullable=False),
        pa.field("dex", pa.string(), nullable=False),
        pa.field("coin", pa.string(), nullable=False),
        pa.field("fetched_at", TS, nullable=False),
        pa.field("mark_px", pa.float64(), nullable=True),
        pa.field("mid_px", pa.float64(), nullable=True),
        pa.field("oracle_px", pa.float64(), nullable=True),
        pa.field("open_interest", pa.float64(), nullable=True),  # coins, one side
        pa.field("funding", pa.float64(), nullable=True),  # the current hourly rate
        pa.field("premium", pa.float64(), nullable=True),
        pa.field("day_ntl_vlm", pa.float64(), nullable=True),
        pa.field("prev_day_px", pa.float64(), nullable=True),
        pa.field("sz_decimals", pa.int16(), nullable=False),
        pa.field("max_leverage", pa.int16(), nullable=True),
        pa.field("is_delisted", pa.bool_(), nullable=False),
    ]
)

# Hourly candles (candleSnapshot, interval 1h), fetched incrementally for the coins on the
# board. A candle may be fetched again (the open one, or an overlap): staging keeps the row
# fetched last per (coin, open_time). Partitioned by the UTC date of open_time.
CANDLES = pa.schema(
    [
        pa.field("coin", pa.string(), nullable=False),
        pa.field("candle_interval", pa.string(), nullable=False),
        pa.field("open_time", TS, nullable=False),
        pa.field("close_time", TS, nullable=False),
        pa.field("open_px", pa.float64(), nullable=False),
        pa.field("high_px", pa.float64(), nullable=False),
        pa.field("low_px", pa.float64(), nullable=False),
        pa.field("close_px", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("trades", pa.int64(), nullable=False),
        pa.field("fetched_at", TS, nullable=False),
    ]
)

# Hourly funding (fundingHistory), fetched incrementally like the candles; partitioned by the
# UTC date of `time`; staging keeps the row fetched last per (coin, time).
FUNDING_RATES = pa.schema(
    [
        pa.field("coin", pa.string(), nullable=False),
        pa.field("time", TS, nullable=False),
        pa.field("funding_rate", pa.float64(), nullable=False),
        pa.field("premium", pa.float64(), nullable=True),
        pa.field("fetched_at", TS, nullable=False),
    ]
)

# Backfilled states (flows/backfill/): HyperTracker's history endpoints mapped to heatmap
# rows, in their own tables so the heatmap tables stay a faithful copy of the live archive.
# `source` says which endpoint: 'position_metrics' or 'segment_metrics_export'. The history
# endpoints give no coin totals: backfill_coins holds the size ladder's sums, flagged
# `totals_derived`. The position-metrics extras are NULL for export rows.
BACKFILL_SOURCE = pa.field("source", pa.string(), nullable=False)
BACKFILL_COHORTS = pa.schema(
    [
        *HEATMAP_COHORTS,
        BACKFILL_SOURCE,
        pa.field("total_size", pa.float64(), nullable=True),
        pa.field("total_long_size", pa.float64(), nullable=True),
        pa.field("total_funding", pa.float64(), nullable=True),
        pa.field("total_unrealized_pnl", pa.float64(), nullable=True),
    ]
)
BACKFILL_COINS = pa.schema(
    [*HEATMAP_COINS, BACKFILL_SOURCE, pa.field("totals_derived", pa.bool_(), nullable=False)]
)
# One row per backfilled state and window: the commit mark (written last, as `snapshots`).
BACKFILL_STATES = pa.schema(
    [
        *SNAPSHOT_KEYS,
        pa.field("first_row_at", TS, nullable=False),
        BACKFILL_SOURCE,
        pa.field("coin_count", pa.int32(), nullable=False),
        pa.field("cohort_rows", pa.int32(), nullable=False),
        pa.field("unfit_rows", pa.int32(), nullable=False),
        pa.field("pages_sha256", pa.list_(pa.string()), nullable=False),
    ]
)

# The lake's tables by name; the warehouse reads each as a view of the same name (schema lake).
TABLES: dict[str, pa.Schema] = {
    "snapshots": SNAPSHOTS,
    "heatmap_coins": HEATMAP_COINS,
    "heatmap_cohorts": HEATMAP_COHORTS,
    "segments": SEGMENTS,
    "market_fetches": MARKET_FETCHES,
    "market_contexts": MARKET_CONTEXTS,
    "candles": CANDLES,
    "funding_rates": FUNDING_RATES,
    "backfill_cohorts": BACKFILL_COHORTS,
    "backfill_coins": BACKFILL_COINS,
    "backfill_states": BACKFILL_STATES,
}
# The three tables written once per snapshot (segments is written once per ladder fetch).
SNAPSHOT_TABLES = ("snapshots", "heatmap_coins", "heatmap_cohorts")
# Written with a snapshot, before its `snapshots` commit mark, from the snapshot's market archive.
MARKET_TABLES = ("market_fetches", "market_contexts")
# Written by the incremental price-history fetch, independent of snapshots.
PRICE_HISTORY_TABLES = ("candles", "funding_rates")
# Written by landing backfilled states; backfill_states last, the commit mark.
BACKFILL_TABLES = ("backfill_cohorts", "backfill_coins", "backfill_states")
