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

# The lake's tables by name; the warehouse reads each as a view of the same name (schema lake).
TABLES: dict[str, pa.Schema] = {
    "snapshots": SNAPSHOTS,
    "heatmap_coins": HEATMAP_COINS,
    "heatmap_cohorts": HEATMAP_COHORTS,
    "segments": SEGMENTS,
}
# The three tables written once per snapshot (segments is written once per ladder fetch).
SNAPSHOT_TABLES = ("snapshots", "heatmap_coins", "heatmap_cohorts")
