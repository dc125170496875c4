"""The warehouse: DuckDB reads the Parquet lake where it lies, and records what it has taken in.

``build.duckdb`` is the pipeline's own DuckDB file. It holds no copy of the lake: schema
``lake`` has one view per lake table (``read_parquet`` over that table's files, Hive
partitioned by date), and one small table, ``lake.loads``, with a row per snapshot the
warehouse has taken in: its load id (loads are numbered in order) and its day. dbt's
staging models read the views and join ``lake.loads``, so a snapshot exists for the
warehouse once it is loaded, and every incremental model can ask "what arrived after load
N?" without scanning the lake.

A snapshot is landed (and loadable) when its three lake files are in place; the lake writes
``snapshots`` last as the commit mark. ``lake.publishes`` records the newest load each publish
handed to analysts: the loads above it are what the next build must test and publish.
``lake.held`` lists snapshots set aside because a build with them failed its tests: they
stay in the lake and the archive, out of the warehouse, until ``ht readmit`` takes them back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from flows.lake.archive import day_of
from flows.lake.parquet import lake_path
from flows.lake.tables import BACKFILL_TABLES, SNAPSHOT_TABLES, TABLES
from flows.settings import Settings

log = logging.getLogger(__name__)

LAKE = "lake"
LOADS = f"{LAKE}.loads"
PUBLISHES = f"{LAKE}.publishes"
HELD = f"{LAKE}.held"
ARROW_TO_DUCKDB = {
    pa.string(): "VARCHAR",
    pa.timestamp("ms"): "TIMESTAMP",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.int16(): "SMALLINT",
    pa.bool_(): "BOOLEAN",
    pa.list_(pa.string()): "VARCHAR[]",
}


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def lake_view_sql(lake_dir: Path, table: str) -> str:
    """The SELECT behind ``lake.<table>``: every file of the table, with its ``date`` partition.

    Before the first file of a table exists, a typed empty row set with the same columns,
    so that the models compile and run on an empty installation. Every file of a table has
    the table's schema (flows/lake/tables.py), so the files are read by position: matching
    them by name would open every file's footer at each query.
    """
    schema = TABLES[table]
    folder = lake_dir.resolve() / table
    if any(folder.glob("date=*/*.parquet")):
        files = quote(str(folder / "date=*" / "*.parquet"))
        return f"SELECT * FROM read_parquet({files}, hive_partitioning = true)"
    columns = [f'NULL::{ARROW_TO_DUCKDB[f.type]} AS "{f.name}"' for f in schema]
    return f'SELECT {", ".join(columns)}, NULL::DATE AS "date" WHERE false'


def register_lake(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> None:
    """Create (or refresh) schema ``lake``: one view per lake table, and the load ledger."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {LAKE}")
    for table in TABLES:
        con.execute(f"CREATE OR REPLACE VIEW {LAKE}.{table} AS {lake_view_sql(lake_dir, table)}")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {LOADS} (
            snapshot_id VARCHAR PRIMARY KEY,
            snapshot_date DATE NOT NULL,
            load_id BIGINT NOT NULL,
            loaded_at TIMESTAMP NOT NULL
        )"""
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {PUBLISHES} "
        "(load_id BIGINT NOT NULL, published_at TIMESTAMP NOT NULL)"
    )
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {HELD} (
            snapshot_id VARCHAR PRIMARY KEY,
            held_at TIMESTAMP NOT NULL,
            failed_tests VARCHAR[] NOT NULL,
            detail VARCHAR
        )"""
    )


@dataclass
class LoadResult:
    """What one load took in: the snapshots new to the warehouse, under one load id."""

    load_id: int | None
    snapshot_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


def complete_lake_snapshots(lake_dir: Path) -> list[str]:
    """Snapshot ids whose three lake files are all in place.

    The lake writes ``snapshots`` last, so its file marks a landed snapshot; the other two
    are checked too, in case a file was removed by hand.
    """
    return _complete(lake_dir, "snapshots", SNAPSHOT_TABLES)


def complete_backfill_states(lake_dir: Path) -> list[str]:
    """Backfilled state ids whose three lake files are in place (``backfill_states`` last)."""
    return _complete(lake_dir, "backfill_states", BACKFILL_TABLES)


def _complete(lake_dir: Path, mark: str, tables: tuple[str, ...]) -> list[str]:
    ids = sorted(p.stem for p in (lake_dir / mark).glob("date=*/*.parquet"))
    return [
        sid for sid in ids if all(lake_path(lake_dir, t, sid).exists() for t in tables if t != mark)
    ]


def load_lake(settings: Settings, *, con: duckdb.DuckDBPyConnection | None = None) -> LoadResult:
    """Take in every landed snapshot the warehouse does not have yet, under a new load id.

    Idempotent: a snapshot already in ``lake.loads`` is never taken in again. The cost is a
    listing of the lake's snapshot files and one insert, whatever the history.
    """
    started = time.perf_counter()
    own = con is None
    con = con or connect(settings.build_db_path)
    try:
        register_lake(con, settings.lake_dir)
        known = {
            r[0]
            for r in con.execute(
                f"SELECT snapshot_id FROM {LOADS} UNION ALL SELECT snapshot_id FROM {HELD}"
            ).fetchall()
        }
        # Backfilled states load as snapshots do (their ids are state times too, and a live
        # snapshot of the same state has another id: staging matches them by time).
        lake_ids = complete_lake_snapshots(settings.lake_dir)
        lake_ids += complete_backfill_states(settings.lake_dir)
        new_ids = sorted({s for s in lake_ids if s not in known})
        if not new_ids:
            return LoadResult(load_id=None, seconds=time.perf_counter() - started)
        row = con.execute(f"SELECT coalesce(max(load_id), 0) + 1 FROM {LOADS}").fetchone()
        load_id = int(row[0]) if row else 1
        now = datetime.now(UTC).replace(tzinfo=None)
        con.executemany(
            f"INSERT INTO {LOADS} VALUES (?, ?, ?, ?)",
            [(sid, day_of(sid), load_id, now) for sid in new_ids],
        )
        result = LoadResult(load_id, new_ids, time.perf_counter() - started)
        log.info("load %s: %d snapshots in %.2fs", load_id, len(new_ids), result.seconds)
        return result
    finally:
        if own:
            con.close()


def unpublished_loads(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(newest load, newest published load): the loads between them await a tested publish."""
    row = con.execute(
        f"SELECT (SELECT coalesce(max(load_id), 0) FROM {LOADS}), "
        f"(SELECT coalesce(max(load_id), 0) FROM {PUBLISHES})"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def hold_unpublished(
    con: duckdb.DuckDBPyConnection, failed_tests: list[str], detail: str
) -> list[str]:
    """Set aside every snapshot loaded since the newest publish; return their ids.

    They leave ``lake.loads`` (so no model sees them) for ``lake.held`` (so no load takes
    them in again), with the tests that failed.
    """
    _, published = unpublished_loads(con)
    ids = [
        r[0]
        for r in con.execute(
            f"SELECT snapshot_id FROM {LOADS} WHERE load_id > ? ORDER BY snapshot_id", [published]
        ).fetchall()
    ]
    now = datetime.now(UTC).replace(tzinfo=None)
    con.execute("BEGIN TRANSACTION")
    con.executemany(
        f"INSERT OR REPLACE INTO {HELD} VALUES (?, ?, ?, ?)",
        [(sid, now, failed_tests, detail[:2000]) for sid in ids],
    )
    con.execute(f"DELETE FROM {LOADS} WHERE load_id > ?", [published])
    con.execute("COMMIT")
    return ids


def held_snapshots(con: duckdb.DuckDBPyConnection) -> list[tuple[str, datetime, list[str]]]:
    """(snapshot id, when held, failed tests) of every held snapshot, oldest first."""
    return [
        (sid, at, list(tests))
        for sid, at, tests in con.execute(
            f"SELECT snapshot_id, held_at, failed_tests FROM {HELD} ORDER BY snapshot_id"
        ).fetchall()
    ]


def readmit(con: duckdb.DuckDBPyConnection, snapshot_ids: list[str] | None = None) -> list[str]:
    """Take held snapshots (all, or those named) back: the next load takes them in."""
    if snapshot_ids is None:
        rows = con.execute(f"DELETE FROM {HELD} RETURNING snapshot_id").fetchall()
    else:
        rows = con.execute(
            f"DELETE FROM {HELD} WHERE list_contains(?, snapshot_id) RETURNING snapshot_id",
            [snapshot_ids],
        ).fetchall()
    return sorted(r[0] for r in rows)


def wipe_warehouse(settings: Settings) -> None:
    """Remove the build database (the archive and the lake are never touched).

    The marts' Parquet files stay: a reader may hold the current ``analytics.duckdb``, whose
    views name them. The next build writes new files and the next publish retires the old
    ones, which are deleted once the grace period has passed.
    """
    for path in (settings.build_db_path, Path(str(settings.build_db_path) + ".wal")):
        path.unlink(missing_ok=True)
