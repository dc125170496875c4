"""The Parquet lake: checked heatmap payloads as typed, normalized tables.

One file per snapshot per table, Hive-partitioned by the snapshot's UTC date (never by
coin: coin names come from outside and hold ``:``)::

    lake/heatmap_cohorts/date=YYYY-MM-DD/<snapshot_id>.parquet
    lake/heatmap_coins/date=YYYY-MM-DD/<snapshot_id>.parquet
    lake/market_fetches/date=YYYY-MM-DD/<snapshot_id>.parquet  the market, or why there is none
    lake/market_contexts/date=YYYY-MM-DD/<snapshot_id>.parquet
    lake/snapshots/date=YYYY-MM-DD/<snapshot_id>.parquet      written last: the commit mark
    lake/segments/date=YYYY-MM-DD/<fetched_at id>.parquet

Each file is written under a temporary name and renamed, so a crash leaves a whole file or
none; a snapshot counts as landed once its ``snapshots`` file exists. Landing a snapshot
that is already there changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from flows import atomic
from flows.lake.archive import SnapshotManifest, day_of, parse_iso, snapshot_id_for
from flows.lake.tables import MARKET_TABLES, SEGMENTS, SNAPSHOT_TABLES, SNAPSHOTS, TABLES

# Besides strings and timestamps, the columns whose values repeat a lot.
DICTIONARY_COLUMNS = frozenset({"bias", "segment_id", "is_known_segment", "http_status"})


def _naive(ts: datetime | None) -> datetime | None:
    return None if ts is None else ts.replace(tzinfo=None)


def lake_path(lake_dir: Path, table: str, key: str) -> Path:
    return lake_dir / table / f"date={day_of(key)}" / f"{key}.parquet"


def snapshots_table(manifest: SnapshotManifest, coins: pa.Table) -> pa.Table:
    """One row per window: what was fetched, from where, how it looked, how many coins."""
    sid = manifest.snapshot_id
    windows = sorted(manifest.bodies)
    coin_counts = Counter(coins.column("window").to_pylist())
    records = [manifest.bodies[w] for w in windows]
    return pa.table(
        {
            "snapshot_id": [sid] * len(windows),
            "last_update": [_naive(manifest.last_update_dt)] * len(windows),
            "window": windows,
            "next_update": [_naive(parse_iso(manifest.next_update))] * len(windows),
            "fetched_at": [_naive(parse_iso(r.fetched_at)) for r in records],
            "url": [r.url for r in records],
            "http_status": [r.http_status for r in records],
            "body_bytes": [r.body_bytes for r in records],
            "body_sha256": [r.body_sha256 for r in records],
            "coin_count": [coin_counts[w] for w in windows],
        },
        schema=SNAPSHOTS,
    )


def segments_table(body: bytes, fetched_at: datetime) -> pa.Table:
    """The cohort ladder as the API described it at ``fetched_at``."""
    items = orjson.loads(body)
    if isinstance(items, dict):  # tolerate a wrapped list, e.g. {"segments": [...]}
        items = next(v for v in items.values() if isinstance(v, list))
    rows = sorted(items, key=lambda s: int(s["id"]))
    return pa.table(
        {
            "fetched_at": [_naive(fetched_at)] * len(rows),
            "segment_id": [int(s["id"]) for s in rows],
            "name": [str(s["name"]) for s in rows],
            "category": [s.get("category") for s in rows],
            "emoji": [s.get("emoji") for s in rows],
            "criteria_json": [
                None if s.get("criteria") is None else orjson.dumps(s["criteria"]).decode()
                for s in rows
            ],
        },
        schema=SEGMENTS,
    )


def write_table(path: Path, table: pa.Table) -> None:
    """Write one lake file atomically: zstd, with dictionaries where values repeat.

    Names, ids, timestamps and the API's 3-decimal ``bias`` (at most 1,001 distinct values)
    repeat, so they are dictionary-encoded; the USD values are full-precision doubles, kept
    as the API sent them, with plain zstd (byte-stream-split made them larger on simulated
    snapshots; bench/ measures the lake's size).
    """
    dict_cols = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type)
        or pa.types.is_timestamp(f.type)
        or f.name in DICTIONARY_COLUMNS
    ]

    def _write(tmp: Path) -> None:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=5,
            use_dictionary=dict_cols,
            write_statistics=True,
        )

    atomic.write_with(path, _write)


def land_snapshot(lake_dir: Path, tables: Mapping[str, pa.Table], snapshot_id: str) -> list[Path]:
    """Write a snapshot's tables; the ``snapshots`` file goes last as the commit mark.

    The market tables are written when given, before the mark, so a landed snapshot has
    its market rows (or its recorded gap). A file already in place is left alone, so landing
    twice changes nothing and a landing that was interrupted is completed by the next one.
    """
    written = []
    market = [t for t in MARKET_TABLES if t in tables]
    for table in (*market, *[t for t in SNAPSHOT_TABLES if t != "snapshots"], "snapshots"):
        path = lake_path(lake_dir, table, snapshot_id)
        if not path.exists():
            write_table(path, tables[table])
            written.append(path)
    return written


def land_segments(lake_dir: Path, body: bytes, fetched_at: datetime) -> Path:
    key = snapshot_id_for(fetched_at)
    path = lake_path(lake_dir, "segments", key)
    if not path.exists():
        write_table(path, segments_table(body, fetched_at))
    return path


def read_lake_rows(lake_dir: Path, table: str) -> pa.Table:
    """Every row of one lake table as the warehouse loads it (for rebuild checks and tests).

    Files are read in name order (snapshot order), rows in file order.
    """
    files = sorted((lake_dir / table).glob("date=*/*.parquet"))
    if not files:
        return TABLES[table].empty_table()
    with duckdb.connect() as con:
        return (
            con.sql(
                "SELECT * FROM read_parquet($files, hive_partitioning = false)",
                params={"files": [str(f) for f in files]},
            )
            .to_arrow_table()
            .cast(TABLES[table])
        )
